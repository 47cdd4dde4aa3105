"""Text linear probe: hfssl's standardised logistic regression (:mod:`.linear_probe`) on frozen pooled features."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .linear_probe import _fit, choose_C
from .metric_modules import _to_numpy
from .text_classification import ClassificationResult, classification_metrics
from .text_features import extract_text_features


def linear_probe_predictions(
    train_features,
    train_labels,
    eval_features,
    C: float | Sequence[float] = (0.1, 1.0, 10.0),
    max_iter: int = 100,
    seed: int = 0,
) -> tuple[np.ndarray, float]:
    """(eval predictions (M,), chosen C) of hfssl's linear probe (see ``linear_probe_accuracy``) on
    features (N, D) and (M, D), with train class ids (N,).

    With several ``C`` the choice needs a stratified held-out share of the train rows; when a class
    is too rare for one (common with many classes and few rows) the middle candidate is used, logged.
    """
    train_x, train_y = _to_numpy(train_features).astype(np.float32), _to_numpy(train_labels)
    Cs = [float(c) for c in np.atleast_1d(C)]
    chosen_C = choose_C(train_x, train_y, Cs, max_iter, seed)
    model = _fit(train_x, train_y, chosen_C, max_iter)
    return model.predict(_to_numpy(eval_features).astype(np.float32)), chosen_C


def linear_probe_text_classifier(
    encoder: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train_texts: Sequence[str],
    train_labels: np.ndarray,
    eval_texts: Sequence[str],
    eval_labels: np.ndarray,
    pooling: str,
    max_length: int,
    batch_size: int = 32,
    seed: int = 0,
) -> ClassificationResult:
    """Linear probe on frozen pooled features: ``linear_probe_accuracy``, ``linear_probe_macro_f1``, ``linear_probe_C``."""
    train_features = extract_text_features(encoder, tokenizer, train_texts, pooling, max_length, batch_size)
    eval_features = extract_text_features(encoder, tokenizer, eval_texts, pooling, max_length, batch_size)
    predictions, chosen_C = linear_probe_predictions(train_features, train_labels, eval_features, seed=seed)
    return ClassificationResult(
        {**classification_metrics(predictions, eval_labels, "linear_probe"), "linear_probe_C": chosen_C}, predictions
    )
