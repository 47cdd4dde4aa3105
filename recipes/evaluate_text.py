#!/usr/bin/env python
"""Evaluate a pretrained text encoder or language model on downstream text.

    python recipes/evaluate_text.py --model_name_or_path runs/bert/backbone --protocol linear,finetune \
        --train_file ../shared/data/wordnet-supersenses/train.jsonl.gz \
        --validation_file ../shared/data/wordnet-supersenses/test.jsonl.gz \
        --label_column_name label_name --output_dir runs/bert-eval
    python recipes/evaluate_text.py --model_name_or_path runs/gpt/backbone --protocol perplexity \
        --train_file ../shared/data/corpus/validation.jsonl.gz --output_dir runs/gpt-eval

``--model_name_or_path`` is any transformers text checkpoint with its tokenizer beside the weights
(the ``backbone/`` folder that hfssl's GPT, BERT and BART pretraining export; remote code is never
run). Protocols (comma-separated):

* ``linear``: logistic-regression probe on frozen features pooled by ``--pooling`` (``cls`` for
  BERT-like encoders, ``mean`` for the rest, or ``last``; an encoder-decoder is judged by its encoder);
* ``finetune``: ``AutoModelForSequenceClassification`` trained end to end with ``Trainer`` under the
  usual ``TrainingArguments`` (``--num_train_epochs``, ``--learning_rate``, ...);
* ``perplexity``: sliding-window perplexity of a causal LM (``--block_size``, ``--stride``) on the
  eval split, or on the train split when there is none.

Classification reads labels from ``--label_column_name`` (default ``label``): class names (strings,
numbered in sorted order, names kept in the output) or non-negative class ids. ``--random_init``
evaluates the same architecture with fresh weights: the baseline a pretrained model must beat.
Writes ``all_results.json`` (``*_accuracy``, ``*_macro_f1``, ``perplexity``, ``eval_tokens``) and, for
classification, ``eval_predictions.jsonl`` (each eval row's label and every protocol's prediction)
to ``--output_dir``, and prints a table.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass, field
from typing import Optional

from transformers import AutoConfig, PreTrainedConfig, TrainingArguments, set_seed

from hfssl.data.text import LABEL_COLUMN, TEXT_COLUMN, TextDataArguments, load_text_datasets
from hfssl.evaluation.model_kind import require_model_kind
from hfssl.evaluation.text import (
    TEXT_POOLING_CHOICES,
    ClassificationResult,
    ClassLabels,
    check_causal_lm,
    check_sequence_length,
    check_text_checkpoint,
    encode_class_labels,
    finetune_text_classifier,
    linear_probe_text_classifier,
    load_text_encoder,
    load_text_tokenizer,
    max_positions,
    perplexity,
    resolve_text_pooling,
)
from hfssl.training import parse_recipe_arguments

logger = logging.getLogger(__name__)

CLASSIFICATION_PROTOCOLS = ("linear", "finetune")
PROTOCOLS = (*CLASSIFICATION_PROTOCOLS, "perplexity")
DEFAULT_MAX_SEQ_LENGTH = 128


@dataclass
class TextEvaluationArguments:
    model_name_or_path: str = field(
        metadata={"help": "Transformers text checkpoint (directory or Hub id) with its tokenizer."}
    )
    protocol: str = field(default="linear", metadata={"help": f"Comma-separated protocols among {PROTOCOLS}."})
    pooling: str = field(
        default="auto",
        metadata={
            "help": f"Frozen-feature pooling {TEXT_POOLING_CHOICES}: auto = cls for BERT-like encoders, else mean."
        },
    )
    max_seq_length: Optional[int] = field(
        default=None,
        metadata={
            "help": f"Texts are truncated to this many tokens (linear, finetune); default: {DEFAULT_MAX_SEQ_LENGTH}, or the model's positions if fewer."
        },
    )
    block_size: Optional[int] = field(
        default=None, metadata={"help": "Perplexity window length; default: the model's context length."}
    )
    stride: Optional[int] = field(
        default=None, metadata={"help": "Perplexity window step, at most --block_size; default: half of it."}
    )
    random_init: bool = field(
        default=False, metadata={"help": "Re-initialise the architecture (random-init baseline)."}
    )

    def __post_init__(self):
        self.protocols = [p.strip() for p in self.protocol.split(",") if p.strip()]
        if not self.protocols or set(self.protocols) - set(PROTOCOLS):
            raise ValueError(f"--protocol must list some of {PROTOCOLS}, got {self.protocol!r}.")
        if self.pooling not in TEXT_POOLING_CHOICES:
            raise ValueError(f"--pooling must be one of {TEXT_POOLING_CHOICES}, got {self.pooling!r}.")
        for name in ("max_seq_length", "block_size", "stride"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name} must be a positive number of tokens (or left out), got {value}.")


@dataclass
class TextEvaluationTrainingArguments(TrainingArguments):
    """``TrainingArguments`` for the fine-tuning protocol; evaluation keeps no fine-tuned checkpoints unless asked."""

    save_strategy: str = field(
        default="no",
        metadata={"help": "Checkpoints of the fine-tuned classifier: 'no' (default), 'epoch', 'steps' or 'best'."},
    )


def check_checkpoint(args: TextEvaluationArguments) -> PreTrainedConfig:
    """Fail before any data is read or model trained when the checkpoint cannot run the protocols asked for;
    settle the default --max_seq_length."""
    config = AutoConfig.from_pretrained(args.model_name_or_path, trust_remote_code=False)
    require_model_kind(args.model_name_or_path, "text", "evaluate_text.py", config)
    check_text_checkpoint(config, args.model_name_or_path)
    load_text_tokenizer(args.model_name_or_path, config)
    if "perplexity" in args.protocols:
        check_causal_lm(config, args.model_name_or_path)
    if set(args.protocols) & set(CLASSIFICATION_PROTOCOLS):
        if args.max_seq_length is None:
            args.max_seq_length = min(DEFAULT_MAX_SEQ_LENGTH, max_positions(config) or DEFAULT_MAX_SEQ_LENGTH)
        check_sequence_length(config, args.max_seq_length, "--max_seq_length")
    return config


def load_evaluation_data(args: TextEvaluationArguments, data_args: TextDataArguments):
    """Train/eval datasets; classification needs a label column (default "label") and an eval split."""
    classify = bool(set(args.protocols) & set(CLASSIFICATION_PROTOCOLS))
    if classify and data_args.label_column_name is None:
        data_args = dataclasses.replace(data_args, label_column_name=LABEL_COLUMN)
    if data_args.streaming:
        raise ValueError(
            "Evaluation reads whole splits: drop --streaming (cap the rows with --max_train_samples/--max_eval_samples)."
        )
    data = load_text_datasets(data_args)
    if classify and data.eval is None:
        raise ValueError(
            f"--protocol {','.join(p for p in args.protocols if p in CLASSIFICATION_PROTOCOLS)} scores an eval split and "
            f"{data.description} has none: pass --validation_file, --eval_split or --validation_split_percentage."
        )
    return data


def run_classification(
    args: TextEvaluationArguments, data, config: PreTrainedConfig, training_args: TrainingArguments
) -> tuple[dict, dict[str, ClassificationResult], ClassLabels]:
    """(metrics, results by protocol, labels) of the linear probe and/or fine-tuning on the labelled splits."""
    labels = encode_class_labels(data.train[LABEL_COLUMN], data.eval[LABEL_COLUMN], data.train.features[LABEL_COLUMN])
    train_texts, eval_texts = data.train[TEXT_COLUMN], data.eval[TEXT_COLUMN]
    metrics = {"train_samples": len(train_texts), "eval_samples": len(eval_texts), "num_labels": labels.num_labels}
    results: dict[str, ClassificationResult] = {}
    if "linear" in args.protocols:
        pooling = resolve_text_pooling(config, args.pooling)
        encoder, tokenizer = load_text_encoder(args.model_name_or_path, args.random_init)
        encoder.to(training_args.device)
        results["linear"] = linear_probe_text_classifier(
            encoder, tokenizer, train_texts, labels.train, eval_texts, labels.eval, pooling, args.max_seq_length,
            training_args.per_device_eval_batch_size, training_args.seed,
        )  # fmt: skip
        metrics["pooling"] = pooling
    if "finetune" in args.protocols:
        tokenizer = load_text_tokenizer(args.model_name_or_path, config)
        results["finetune"] = finetune_text_classifier(
            args.model_name_or_path,
            tokenizer,
            train_texts,
            labels,
            eval_texts,
            args.max_seq_length,
            training_args,
            args.random_init,
        )
    for result in results.values():
        metrics.update(result.metrics)
    return metrics, results, labels


def write_predictions(path: str, labels: ClassLabels, results: dict[str, ClassificationResult]) -> None:
    """One JSON line per eval row: its "label" and each protocol's prediction, as class names when there are some."""
    with open(path, "w") as handle:
        for row, label in enumerate(labels.eval):
            predicted = {protocol: labels.name(result.predictions[row]) for protocol, result in results.items()}
            handle.write(json.dumps({"label": labels.name(label), **predicted}) + "\n")


def format_table(metrics: dict) -> str:
    """The accuracy, macro-F1 and perplexity figures, one per line."""
    names = [
        name for name in metrics if name.endswith(("_accuracy", "_macro_f1")) or name in ("perplexity", "eval_tokens")
    ]
    width = max(map(len, names), default=0)
    return "\n".join(
        f"{name:<{width}}  {metrics[name]:.4f}"
        if isinstance(metrics[name], float)
        else f"{name:<{width}}  {metrics[name]}"
        for name in names
    )


def main(argv=None):
    args, data_args, training_args = parse_recipe_arguments(
        (TextEvaluationArguments, TextDataArguments, TextEvaluationTrainingArguments), argv
    )
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    set_seed(training_args.seed)
    config = check_checkpoint(args)
    data = load_evaluation_data(args, data_args)

    metrics: dict = {}
    results: dict[str, ClassificationResult] = {}
    labels = None
    if set(args.protocols) & set(CLASSIFICATION_PROTOCOLS):
        metrics, results, labels = run_classification(args, data, config, training_args)
    if "perplexity" in args.protocols:
        texts = data.eval if data.eval is not None else data.train
        metrics.update(perplexity(
            args.model_name_or_path, texts[TEXT_COLUMN], args.block_size, args.stride,
            training_args.per_device_eval_batch_size, args.random_init, training_args.device,
        ))  # fmt: skip
        metrics["perplexity_split"] = "eval" if data.eval is not None else "train"

    if training_args.process_index == 0:
        os.makedirs(training_args.output_dir, exist_ok=True)
        summary = {
            **metrics, "label_names": labels.names if labels else None, "max_seq_length": args.max_seq_length,
            "model_name_or_path": args.model_name_or_path, "random_init": args.random_init, "data": data.description,
        }  # fmt: skip
        with open(os.path.join(training_args.output_dir, "all_results.json"), "w") as handle:
            json.dump(summary, handle, indent=2)
        if results:
            write_predictions(os.path.join(training_args.output_dir, "eval_predictions.jsonl"), labels, results)
        print(
            f"\n{args.model_name_or_path}{' (random init)' if args.random_init else ''} on {data.description}\n{format_table(metrics)}"
        )
    return metrics


if __name__ == "__main__":
    main()
