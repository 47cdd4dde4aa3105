#!/usr/bin/env python
"""Pretrain a GPT-style causal language model on text.

    accelerate launch --config_file accelerate_config.yaml recipes/pretrain_gpt.py \
        --train_file ../shared/data/corpus/train.jsonl.gz --validation_file ../shared/data/corpus/validation.jsonl.gz \
        --backbone_config_overrides "n_layer=4,n_embd=256,n_head=4" --block_size 256 --output_dir runs/gpt

Trains a byte-level BPE tokenizer on the training text (or takes --tokenizer_name), packs the
documents into blocks of --block_size tokens with an end-of-text token between documents, and
trains the decoder (GPT-2 by default, any ``AutoModelForCausalLM`` type via --backbone) with the
next-token loss on real tokens. Writes to --output_dir: the model and tokenizer, ``backbone/`` (the
plain transformers causal LM with its tokenizer), ``all_results.json`` (``eval_loss``;
``eval_nll_per_token`` and ``perplexity`` over every predicted validation token), ``generated.txt`` (a greedy continuation of
--generation_prompt) and a model card; ``--push_to_hub`` pushes it.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field

import numpy as np
import torch
import transformers
from transformers import DataCollatorForLanguageModeling, set_seed

from hfssl import METHODS
from hfssl.data import TextDataArguments, load_text_datasets, shuffle_stream
from hfssl.data.packing import pack_documents
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
class GPTArguments:
    block_size: int = field(
        default=256, metadata={"help": "Tokens per training block (documents are packed, separated by end-of-text)."}
    )
    generation_prompt: str = field(
        default="The", metadata={"help": "Prompt of the sample continuation written to generated.txt."}
    )
    generation_max_new_tokens: int = field(default=40, metadata={"help": "Tokens generated for the sample."})

    def __post_init__(self):
        require_int_flag(self, "block_size", 2, "a block of one token has no next token to predict")
        require_int_flag(self, "generation_max_new_tokens", 1, "tokens of the sample continuation")


def main(argv=None):
    gpt_args, model_args, data_args, training_args = parse_recipe_arguments(
        (GPTArguments, LanguageModelArguments, TextDataArguments, PretrainingArguments), argv
    )
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        level=logging.INFO if training_args.should_log else logging.WARNING,
    )
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())
    set_seed(training_args.seed)

    with training_args.main_process_first(desc="resolving the dataset"):
        data = load_text_datasets(data_args)
    tokenizer = build_tokenizer(model_args, training_args, data.train, "byte_level_bpe", "gpt")
    model = build_language_model(METHODS["gpt"], model_args, tokenizer, gpt_args.block_size)
    with training_args.main_process_first(desc="packing the documents"):
        train_blocks = pack_documents(data.train, tokenizer, gpt_args.block_size, model_args.preprocessing_num_workers)
        train_blocks = shuffle_stream(train_blocks, data_args.shuffle_buffer_size, training_args.seed)
        eval_blocks = (
            None
            if data.eval is None
            else pack_documents(data.eval, tokenizer, gpt_args.block_size, model_args.preprocessing_num_workers)
        )

    # --prediction_loss_only and --batch_eval_metrics leave no room for the per-token sums: perplexity then comes from eval_loss
    exact = not (training_args.prediction_loss_only or training_args.batch_eval_metrics)
    trainer = SSLTrainer(
        model=model,
        args=training_args,
        train_dataset=train_blocks,
        eval_dataset=eval_blocks,
        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
        processing_class=tokenizer,
        preprocess_logits_for_metrics=summed_token_nll if exact else None,
        compute_metrics=nll_per_token if exact else None,
    )
    metrics = train_and_evaluate(trainer, training_args, eval_blocks is not None, perplexity)
    export_backbone(trainer, model, tokenizer)  # before the sample: a failing generation cannot cost it
    sample = generate_sample(model, tokenizer, gpt_args.generation_prompt, gpt_args.generation_max_new_tokens)
    logger.info("Greedy continuation of %r: %r", gpt_args.generation_prompt, sample)
    if trainer.is_world_process_zero():
        with open(os.path.join(training_args.output_dir, "generated.txt"), "w") as handle:
            handle.write(sample + "\n")
    card = lambda write: write_language_model_card(
        training_args.output_dir,
        model,
        "gpt",
        "causal language modelling",
        "Radford et al. 2018/2019",
        data.description,
        tokenizer,
        training_summary(training_args),
        metrics,
        repo_id=training_args.hub_model_id,
        write=write,
    )  # noqa: E731
    finish_run(trainer, card)
    return metrics


def summed_token_nll(logits, labels: torch.Tensor) -> torch.Tensor:
    """(B, 2) per block: the summed negative log-likelihood of its predicted tokens (labels[:, 1:]
    other than -100) and their number. Reduces the (B, L, V) logits as they are produced."""
    logits = logits[0] if isinstance(logits, tuple) else logits
    targets = labels[:, 1:]
    real = targets != -100
    nll = torch.nn.functional.cross_entropy(
        logits[:, :-1].float().transpose(1, 2), targets.clamp(min=0), reduction="none"
    )
    return torch.stack([(nll * real).sum(dim=1), real.sum(dim=1).float()], dim=1)


def nll_per_token(eval_prediction) -> dict[str, float]:
    """The mean negative log-likelihood over every predicted validation token.

    The Trainer's ``eval_loss`` averages each batch's mean weighted by its number of blocks, so the
    short last block of a packing batch counts as much as a full one; this does not."""
    rows = np.asarray(eval_prediction.predictions, dtype=np.float64)
    return {"nll_per_token": float(rows[:, 0].sum() / rows[:, 1].sum())}


def perplexity(metrics: dict) -> dict:
    """exp of the mean negative log-likelihood per predicted token (of ``eval_loss`` without it)."""
    nll = metrics.get("eval_nll_per_token", metrics["eval_loss"])
    return {"perplexity": math.exp(nll) if nll < 700 else float("inf")}


def generate_sample(model, tokenizer, prompt: str, max_new_tokens: int) -> str:
    """Greedy continuation of ``prompt`` (the prompt included), within the model's context: past its last
    position embedding a GPT cannot go on, so ``max_new_tokens`` is cut to fit (logged)."""
    encoded = tokenizer(prompt, return_tensors="pt").to(model.device)
    context = getattr(model.backbone.config, "max_position_embeddings", None)
    room = None if context is None else context - encoded["input_ids"].shape[1]
    if room is not None and room <= 0:
        logger.warning(
            "The prompt %r fills the model's context of %d positions: no sample generated.", prompt, context
        )
        return prompt
    if room is not None and max_new_tokens > room:
        logger.warning(
            "--generation_max_new_tokens %d does not fit the model's context of %d positions after the prompt; "
            "generating %d tokens.", max_new_tokens, context, room,
        )  # fmt: skip
        max_new_tokens = room
    model.eval()
    output = model.generate(
        **encoded, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
    )
    return tokenizer.decode(output[0], skip_special_tokens=True)


if __name__ == "__main__":
    main()
