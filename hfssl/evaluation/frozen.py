"""kNN and linear-probe figures of a frozen encoder, from one pass of feature extraction."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from .features import extract_features
from .knn import knn_accuracy
from .linear_probe import linear_probe_accuracy

FROZEN_PROTOCOLS = ("knn", "linear")


def frozen_feature_metrics(
    encode: Callable[[torch.Tensor], torch.Tensor],
    train_loader,
    eval_loader,
    transform: Callable[[torch.Tensor], torch.Tensor],
    accelerator=None,
    protocols: Sequence[str] = FROZEN_PROTOCOLS,
    knn_k: int = 200,
    knn_temperature: float = 0.1,
    return_eval_features: bool = False,
):
    """Extract features of the labelled train and eval loaders once, then run each protocol.

    Returns ``knn_accuracy`` (weighted kNN, Wu et al. 2018) and/or ``linear_probe_accuracy``
    (logistic regression on standardised features) with ``linear_probe_C``; with
    ``return_eval_features``, ``(metrics, eval_features (N, D), eval_labels (N,))``.
    """
    unknown = set(protocols) - set(FROZEN_PROTOCOLS)
    if unknown:
        raise ValueError(f"Unknown frozen-feature protocols {sorted(unknown)}; choose from {FROZEN_PROTOCOLS}.")
    train_features, train_labels = _features_of_every_row(encode, train_loader, transform, accelerator)
    eval_features, eval_labels = _features_of_every_row(encode, eval_loader, transform, accelerator)
    metrics: dict[str, float] = {"train_samples": len(train_labels), "eval_samples": len(eval_labels)}
    if "knn" in protocols:
        metrics["knn_accuracy"] = knn_accuracy(
            train_features, train_labels, eval_features, eval_labels, k=knn_k, temperature=knn_temperature
        )
    if "linear" in protocols:
        metrics.update(linear_probe_accuracy(train_features, train_labels, eval_features, eval_labels))
    return (metrics, eval_features, eval_labels) if return_eval_features else metrics


def _features_of_every_row(encode, loader, transform, accelerator):
    """Features of the loader's dataset, checked to hold each row exactly once (a dropped last
    batch or padding duplicates across processes would bias every figure)."""
    features, labels = extract_features(encode, loader, transform, accelerator)
    expected = len(loader.dataset) if hasattr(loader.dataset, "__len__") else len(labels)
    if len(labels) != expected:
        raise RuntimeError(
            f"Feature extraction returned {len(labels)} rows for a dataset of {expected}; build the loader "
            "without drop_last (e.g. SSLTrainer.feature_dataloader)."
        )
    return features, labels
