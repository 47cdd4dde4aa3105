"""End-to-end fine-tuning evaluation: a backbone plus a linear head trained with ``transformers.Trainer``."""

import dataclasses
from collections.abc import Callable
from typing import Optional

import numpy as np
import torch
from torch import nn
from transformers import EvalPrediction, TrainingArguments
from transformers.modeling_outputs import ImageClassifierOutput

from ..training.transform_trainer import TransformTrainer
from ..transforms import PixelTransform
from .metric_modules import compute_accuracy


class ImageClassifier(nn.Module):
    """``feature_extractor`` (B, C, H, W) -> (B, feature_dim) followed by a linear head to (B, num_labels)."""

    def __init__(self, feature_extractor: nn.Module, feature_dim: int, num_labels: int):
        super().__init__()
        self.feature_extractor = feature_extractor
        self.classifier = nn.Linear(feature_dim, num_labels)

    def forward(self, pixel_values: torch.Tensor, labels: Optional[torch.Tensor] = None) -> ImageClassifierOutput:
        """Logits (B, num_labels) for float ``pixel_values``; mean cross-entropy ``loss`` given ``labels`` (B,)."""
        logits = self.classifier(self.feature_extractor(pixel_values))
        loss = None if labels is None else nn.functional.cross_entropy(logits, labels)
        return ImageClassifierOutput(loss=loss, logits=logits)


def _accuracy_metrics(prediction: EvalPrediction) -> dict:
    return {"accuracy": compute_accuracy(np.argmax(prediction.predictions, axis=-1), prediction.label_ids)}


def finetune_classifier(
    feature_extractor: nn.Module,
    feature_dim: int,
    num_labels: int,
    train_dataset,
    eval_dataset,
    data_collator,
    train_transform: Callable[[torch.Tensor], torch.Tensor],
    eval_transform: Callable[[torch.Tensor], torch.Tensor],
    training_args: TrainingArguments,
) -> dict:
    """Fine-tune ``feature_extractor`` and a new linear head on ``train_dataset``, then report eval accuracy.

    Args:
        feature_extractor: maps float (B, C', H', W') to (B, feature_dim); trained in place.
        feature_dim, num_labels: head input and output sizes.
        train_dataset, eval_dataset: datasets whose rows ``data_collator`` turns into ``{"pixel_values": uint8
            (B, C, H, W), "labels": int64 (B,)}``.
        train_transform, eval_transform: uint8 (B, C, H, W) on the device -> float (B, C', H', W'), applied
            inside the Trainer's training and prediction steps.
        training_args: used as given, except ``remove_unused_columns=False`` (the collator needs the raw columns).

    Returns:
        ``{"finetune_accuracy": float}``, top-1 accuracy on ``eval_dataset`` after training.
    """
    trainer = TransformTrainer(
        model=ImageClassifier(feature_extractor, feature_dim, num_labels),
        args=dataclasses.replace(training_args, remove_unused_columns=False, dataloader_drop_last=False),
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=data_collator,
        compute_metrics=_accuracy_metrics,
        batch_transform=PixelTransform(train_transform),
        eval_batch_transform=PixelTransform(eval_transform),
    )
    trainer.train()
    return {"finetune_accuracy": trainer.evaluate()["eval_accuracy"]}
