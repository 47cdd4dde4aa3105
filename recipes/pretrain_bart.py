#!/usr/bin/env python
"""Pretrain BART by denoising: text infilling and sentence permutation.

    accelerate launch --config_file accelerate_config.yaml recipes/pretrain_bart.py \
        --train_file ../shared/data/corpus/train.jsonl.gz --validation_file ../shared/data/corpus/validation.jsonl.gz \
        --backbone_config_overrides "d_model=256,encoder_layers=3,decoder_layers=3,encoder_attention_heads=4,decoder_attention_heads=4,encoder_ffn_dim=1024,decoder_ffn_dim=1024" \
        --max_seq_length 256 --output_dir runs/bart

Trains a byte-level BPE tokenizer with BART's special tokens on the training text (or takes
--tokenizer_name), splits documents into sentences and packs them into examples of at most
--max_seq_length tokens (hfssl.data.denoising), noises every batch anew (Poisson(--poisson_lambda)
spans hiding --mask_ratio of the words, each span one <mask>; all sentences permuted; optional
rotation) and trains the encoder-decoder to reproduce the original. Writes to --output_dir: the
model and tokenizer, ``backbone/`` (a plain ``BartForConditionalGeneration`` with its tokenizer),
``all_results.json`` (``eval_loss``, ``eval_reconstruction_accuracy``: teacher-forced token
accuracy on the validation text, noised with a fixed seed; ``generate_exact_match``: the share of
the --num_reconstructions examples that greedy ``generate`` restores exactly), ``reconstructions.json``
(those noised validation inputs, the model's greedy reconstruction and the original) and a model card.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from dataclasses import dataclass, field

import datasets
import transformers
from transformers import set_seed

from hfssl import METHODS
from hfssl.data import TextDataArguments, load_text_datasets, shuffle_stream
from hfssl.data.denoising import build_denoising_examples
from hfssl.evaluation.metric_modules import compute_accuracy
from hfssl.models.bart import bart_collator
from hfssl.training import PretrainingArguments, SSLTrainer, parse_recipe_arguments
from hfssl.training.argument_checks import require_int_flag
from hfssl.training.finish import export_backbone, finish_run
from hfssl.training.language_models import (
    LanguageModelArguments,
    build_language_model,
    build_tokenizer,
    train_and_evaluate,
)
from hfssl.training.model_card import training_summary, write_language_model_card

logger = logging.getLogger(__name__)


@dataclass
class BartArguments:
    max_seq_length: int = field(
        default=256, metadata={"help": "Tokens per example, <s> and </s> included (BART: 512)."}
    )
    mask_ratio: float = field(
        default=0.3, metadata={"help": "Share of the words hidden by text infilling (BART: 0.3)."}
    )
    poisson_lambda: float = field(
        default=3.5, metadata={"help": "Mean span length of text infilling, in words (BART: 3.5)."}
    )
    random_ratio: float = field(
        default=0.1, metadata={"help": "Share of the masks replaced by a random token instead."}
    )
    permute_sentences: float = field(
        default=1.0, metadata={"help": "Share of each example's sentences shuffled (BART: 1.0)."}
    )
    sentence_separator: str = field(
        default="none",
        metadata={
            "help": "Token appended to every sentence, which travels with it when sentences are permuted: 'none' "
            "(boundaries come from the sentence splitter and stay out of the text, as in the BART paper's plain "
            "input), 'eos' (</s>, as fairseq does for mBART), or any token of the tokenizer."
        },
    )
    rotate_ratio: float = field(
        default=0.0, metadata={"help": "Probability of rotating a document (BART's final recipe: 0)."}
    )
    num_reconstructions: int = field(
        default=4, metadata={"help": "Validation examples reconstructed with generate() for reconstructions.json."}
    )

    def __post_init__(self):
        require_int_flag(self, "num_reconstructions", 0, "validation examples restored with generate(); 0 for none")


def reconstruction_accuracy(eval_prediction) -> dict[str, float]:
    """Teacher-forced accuracy of the predicted next token over the real target tokens."""
    predictions, labels = eval_prediction.predictions, eval_prediction.label_ids
    real = labels != -100
    return {"reconstruction_accuracy": compute_accuracy(predictions[real], labels[real])}


def main(argv=None):
    bart_args, model_args, data_args, training_args = parse_recipe_arguments(
        (BartArguments, LanguageModelArguments, TextDataArguments, PretrainingArguments), argv
    )
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        level=logging.INFO if training_args.should_log else logging.WARNING,
    )
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())
    set_seed(training_args.seed)
    training_args.remove_unused_columns = False  # sentence_lengths feed the collator

    with training_args.main_process_first(desc="resolving the dataset"):
        data = load_text_datasets(data_args)
    tokenizer = build_tokenizer(model_args, training_args, data.train, "byte_level_bpe", "bart")
    noise = dict(
        mask_ratio=bart_args.mask_ratio, poisson_lambda=bart_args.poisson_lambda, random_ratio=bart_args.random_ratio,
        permute_sentences=bart_args.permute_sentences, rotate_ratio=bart_args.rotate_ratio,
        max_seq_length=bart_args.max_seq_length,
    )  # fmt: skip
    model = build_language_model(METHODS["bart"], model_args, tokenizer, bart_args.max_seq_length, **noise)
    with training_args.main_process_first(desc="splitting sentences"):
        options = dict(
            tokenizer=tokenizer, max_seq_length=bart_args.max_seq_length, num_proc=model_args.preprocessing_num_workers,
            sentence_separator_id=separator_id(tokenizer, bart_args.sentence_separator),
        )  # fmt: skip
        train_examples = shuffle_stream(
            build_denoising_examples(data.train, **options), data_args.shuffle_buffer_size, training_args.seed
        )
        eval_examples = None if data.eval is None else build_denoising_examples(data.eval, **options)
    eval_collator = bart_collator(model, tokenizer, seed=training_args.seed, worker_seed_from_id=True)

    trainer = SSLTrainer(
        model=model,
        args=training_args,
        train_dataset=train_examples,
        eval_dataset=eval_examples,
        batch_transform=METHODS["bart"].batch_transform(model, tokenizer),
        eval_data_collator=eval_collator,
        processing_class=tokenizer,
        compute_metrics=reconstruction_accuracy,
        preprocess_logits_for_metrics=lambda logits, labels: logits.argmax(-1),
    )
    metrics = train_and_evaluate(trainer, training_args, eval_examples is not None)
    export_backbone(trainer, model, tokenizer)  # every process: gathered under FSDP, checked finite
    if trainer.is_world_process_zero():
        if eval_examples is not None and bart_args.num_reconstructions > 0:
            rows = reconstruct(
                model,
                tokenizer,
                copy.deepcopy(eval_collator),
                eval_examples,
                bart_args.num_reconstructions,
                bart_args.max_seq_length,
            )
            with open(os.path.join(training_args.output_dir, "reconstructions.json"), "w") as handle:
                json.dump(rows, handle, indent=1)
            exact = {"generate_exact_match": sum(row["exact_match"] for row in rows) / len(rows)}
            trainer.log_metrics("generate", exact)
            trainer.save_metrics("generate", exact)
            metrics.update(exact)
    card = lambda write: write_language_model_card(
        training_args.output_dir,
        model,
        "bart",
        "denoising (text infilling and sentence permutation)",
        "Lewis et al. 2020",
        data.description,
        tokenizer,
        training_summary(training_args),
        metrics,
        repo_id=training_args.hub_model_id,
        write=write,
    )  # noqa: E731
    finish_run(trainer, card)
    return metrics


def separator_id(tokenizer, separator: str) -> int | None:
    """The id of ``--sentence_separator`` ('none', 'eos' or a token of the tokenizer)."""
    if separator == "none":
        return None
    token = tokenizer.eos_token if separator == "eos" else separator
    token_id = tokenizer.convert_tokens_to_ids(token)
    if token_id is None or token_id == tokenizer.unk_token_id:
        raise ValueError(
            f"--sentence_separator {separator!r} is not a token of the tokenizer; pass 'none', 'eos' or one of its tokens."
        )
    return token_id


def reconstruct(model, tokenizer, collator, examples, count: int, max_length: int) -> list[dict[str, str]]:
    """Noise the first ``count`` examples, let the model reconstruct them greedily, and return
    ``{"noised", "reconstructed", "original", "exact_match"}`` rows (texts keep their special tokens)."""
    first = (
        examples.take(count)
        if isinstance(examples, datasets.IterableDataset)
        else examples.select(range(min(count, len(examples))))
    )
    batch = collator(list(first))
    model.eval()
    generated = model.generate(
        input_ids=batch["input_ids"].to(model.device), attention_mask=batch["attention_mask"].to(model.device),
        max_length=max_length + 1, num_beams=1, do_sample=False,
    ).cpu()  # fmt: skip
    generated = generated[
        :, 1:
    ]  # generate() starts every output with the decoder start token, which labels do not hold
    originals = batch["labels"].masked_fill(batch["labels"] == -100, tokenizer.pad_token_id)
    decode = lambda ids: tokenizer.batch_decode(ids, skip_special_tokens=False)  # noqa: E731 (keep <mask> visible)
    clean = lambda texts: [text.replace(tokenizer.pad_token, "").strip() for text in texts]  # noqa: E731
    return [
        {
            "noised": noised,
            "reconstructed": reconstructed,
            "original": original,
            "exact_match": reconstructed == original,
        }
        for noised, reconstructed, original in zip(
            clean(decode(batch["input_ids"])), clean(decode(generated)), clean(decode(originals))
        )
    ]


if __name__ == "__main__":
    main()
