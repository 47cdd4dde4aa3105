"""Text fine-tuning: ``AutoModelForSequenceClassification`` trained end to end with ``transformers.Trainer``."""

from __future__ import annotations

from collections.abc import Sequence

import datasets
import numpy as np
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    DataCollatorWithPadding,
    PreTrainedTokenizerBase,
    Trainer,
    TrainingArguments,
)

from .text_classification import ClassificationResult, ClassLabels, classification_metrics


def _tokenized_dataset(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], labels: np.ndarray, max_length: int
) -> datasets.Dataset:
    """Token ids (unpadded: the collator pads each batch) and "labels" of each row."""
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length)
    return datasets.Dataset.from_dict({**encoded, "labels": labels.tolist()})


def finetune_text_classifier(
    model_name_or_path: str,
    tokenizer: PreTrainedTokenizerBase,
    train_texts: Sequence[str],
    labels: ClassLabels,
    eval_texts: Sequence[str],
    max_length: int,
    training_args: TrainingArguments,
    random_init: bool = False,
) -> ClassificationResult:
    """Fine-tune ``AutoModelForSequenceClassification`` (the checkpoint plus a new head) on the train
    rows with ``Trainer`` as ``training_args`` say, then predict the eval rows:
    ``finetune_accuracy``, ``finetune_macro_f1``.

    The config's ``pad_token_id`` is set to the tokenizer's: GPT-2-style classifiers read the last
    token that is not padding, and a GPT-2 config has no padding id of its own.
    """
    names = labels.names or [str(i) for i in range(labels.num_labels)]
    config = AutoConfig.from_pretrained(
        model_name_or_path, num_labels=labels.num_labels, id2label=dict(enumerate(names)),
        label2id={name: i for i, name in enumerate(names)}, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    if random_init:
        model = AutoModelForSequenceClassification.from_config(config)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(model_name_or_path, config=config)
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=_tokenized_dataset(tokenizer, train_texts, labels.train, max_length),
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
    )
    trainer.train()
    output = trainer.predict(_tokenized_dataset(tokenizer, eval_texts, labels.eval, max_length))
    logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
    predictions = np.argmax(logits, axis=-1)
    return ClassificationResult(classification_metrics(predictions, labels.eval, "finetune"), predictions)
