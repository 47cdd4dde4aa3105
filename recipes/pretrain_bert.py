#!/usr/bin/env python
"""Pretrain BERT with masked language modelling and next-sentence prediction.

    accelerate launch --config_file accelerate_config.yaml recipes/pretrain_bert.py \
        --train_file ../shared/data/corpus/train.jsonl.gz --validation_file ../shared/data/corpus/validation.jsonl.gz \
        --backbone_config_overrides "hidden_size=256,num_hidden_layers=4,num_attention_heads=4,intermediate_size=1024" \
        --max_seq_length 128 --whole_word_mask --output_dir runs/bert

Trains a WordPiece tokenizer on the training text (or takes --tokenizer_name), builds
next-sentence pairs as Google's create_pretraining_data does (hfssl.data.nsp), masks them anew
for every batch (80/10/10 at --mlm_probability, optionally whole words), and trains BERT with the
MLM head computed only at the masked positions. Writes to --output_dir: the model and tokenizer,
``backbone/`` (a plain transformers ``BertForPreTraining`` with its tokenizer: ``AutoModel`` loads
the encoder), ``all_results.json`` (``eval_loss``, ``eval_mlm_accuracy``, ``eval_nsp_accuracy``
on the validation text, masked with a fixed seed) and a model card; ``--push_to_hub`` pushes it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import transformers
from transformers import set_seed

from hfssl import METHODS
from hfssl.data import TextDataArguments, load_text_datasets, shuffle_stream
from hfssl.data.nsp import build_nsp_examples, check_nsp_pairs
from hfssl.evaluation.metric_modules import compute_accuracy
from hfssl.models.bert import bert_collator
from hfssl.training import PretrainingArguments, SSLTrainer, parse_recipe_arguments
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
class BertArguments:
    max_seq_length: int = field(default=128, metadata={"help": "Tokens per sentence pair, [CLS] and [SEP]s included."})
    mlm_probability: float = field(
        default=0.15, metadata={"help": "Share of the tokens selected for the masked-LM loss."}
    )
    whole_word_mask: bool = field(
        default=False, metadata={"help": "Select whole words (a token and its ## pieces) for masking."}
    )
    short_seq_prob: float = field(
        default=0.1, metadata={"help": "Probability of a shorter target length for a pair (Google's default)."}
    )
    dupe_factor: int = field(
        default=1, metadata={"help": "Passes over each document when building pairs (different splits each)."}
    )
    next_sentence_prediction: bool = field(
        default=True,
        metadata={
            "help": "Train the next-sentence head too (False: the masked-LM loss alone, on the same sentence pairs)."
        },
    )


def bert_metrics(eval_prediction) -> dict[str, float]:
    """MLM accuracy over masked positions and (with NSP) NSP accuracy, through the packaged accuracy
    metric. Trainer hands over a tuple when the model returns several outputs, an array when one."""
    predictions, label_ids = eval_prediction.predictions, eval_prediction.label_ids
    mlm_predictions, nsp_logits = predictions if isinstance(predictions, tuple) else (predictions, None)
    labels, next_sentence_label = label_ids if isinstance(label_ids, tuple) else (label_ids, None)
    masked = labels != -100
    metrics = {"mlm_accuracy": compute_accuracy(mlm_predictions[masked], labels[masked])}
    if nsp_logits is not None:
        metrics["nsp_accuracy"] = compute_accuracy(nsp_logits.argmax(-1), next_sentence_label)
    return metrics


def main(argv=None):
    bert_args, model_args, data_args, training_args = parse_recipe_arguments(
        (BertArguments, LanguageModelArguments, TextDataArguments, PretrainingArguments), argv
    )
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        level=logging.INFO if training_args.should_log else logging.WARNING,
    )
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())
    set_seed(training_args.seed)
    training_args.label_names = ["labels", "next_sentence_label"] if bert_args.next_sentence_prediction else ["labels"]
    training_args.remove_unused_columns = False  # starts_word and special_tokens_mask feed the collator

    with training_args.main_process_first(desc="resolving the dataset"):
        data = load_text_datasets(data_args)
    tokenizer = build_tokenizer(model_args, training_args, data.train, "wordpiece", "bert")
    masking = dict(mlm_probability=bert_args.mlm_probability, whole_word_mask=bert_args.whole_word_mask)
    model = build_language_model(
        METHODS["bert"],
        model_args,
        tokenizer,
        bert_args.max_seq_length,
        next_sentence_prediction=bert_args.next_sentence_prediction,
        **masking,
    )
    options = dict(
        tokenizer=tokenizer, max_seq_length=bert_args.max_seq_length, short_seq_prob=bert_args.short_seq_prob,
        num_proc=model_args.preprocessing_num_workers,
    )  # fmt: skip
    with training_args.main_process_first(desc="building next-sentence pairs"):
        train_pairs = build_nsp_examples(
            data.train, dupe_factor=bert_args.dupe_factor, seed=training_args.seed, **options
        )
        train_pairs = shuffle_stream(train_pairs, data_args.shuffle_buffer_size, training_args.seed)
        eval_pairs = (
            None if data.eval is None else build_nsp_examples(data.eval, seed=training_args.seed + 1, **options)
        )
    for split, pairs in (("train", train_pairs), ("eval", eval_pairs)):
        if pairs is not None:
            check_nsp_pairs(pairs, split, labels_used=bert_args.next_sentence_prediction)
    trainer = SSLTrainer(
        model=model,
        args=training_args,
        train_dataset=train_pairs,
        eval_dataset=eval_pairs,
        batch_transform=METHODS["bert"].batch_transform(model, tokenizer),
        eval_data_collator=bert_collator(model.config, tokenizer, seed=training_args.seed, worker_seed_from_id=True),
        processing_class=tokenizer,
        compute_metrics=bert_metrics,
    )
    metrics = train_and_evaluate(trainer, training_args, eval_pairs is not None)
    objective = "masked language modelling" + (
        " and next-sentence prediction" if bert_args.next_sentence_prediction else ""
    )
    export_backbone(trainer, model, tokenizer)
    card = lambda write: write_language_model_card(
        training_args.output_dir,
        model,
        "bert",
        objective,
        "Devlin et al. 2019",
        data.description,
        tokenizer,
        training_summary(training_args),
        metrics,
        repo_id=training_args.hub_model_id,
        write=write,
    )  # noqa: E731
    finish_run(trainer, card)
    return metrics


if __name__ == "__main__":
    main()
