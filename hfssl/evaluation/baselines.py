"""Frozen-feature figures beside their baselines: what pretraining bought.

A kNN or linear-probe accuracy alone does not say whether pretraining helped: a randomly
initialised convolutional network already gives useful features on small images, and raw pixels
are a strong baseline on MNIST-like data. So the final evaluation of every image method reports,
with the same protocols on the same splits:

* ``random_init_*``: the same architecture (the model's config) at random initialisation;
* ``raw_pixels_*``: the eval transform's pixels, flattened, for images of at most
  :data:`RAW_PIXELS_MAX_SIDE` pixels a side (larger images make the kNN and the probe slow and
  raw pixels meaningless).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .frozen import frozen_feature_metrics

RAW_PIXELS_MAX_SIDE = 32
BASELINES = {"random_init": "same architecture, random init", "raw_pixels": "raw pixels"}
_PROTOCOL_KEYS = ("knn_accuracy", "linear_probe_accuracy", "linear_probe_C")


def random_init_copy(model, seed: int):
    """A fresh model of ``model``'s class and config, initialised from ``seed`` without touching
    the global RNG stream, on ``model``'s device, in eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = type(model)(model.config)
    return fresh.to(next(model.parameters()).device).eval()


def flattened_pixels(images: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) preprocessed images -> (B, C * H * W) features."""
    return images.flatten(1)


def frozen_metrics_with_baselines(
    model,
    train_loader,
    eval_loader,
    transform,
    accelerator=None,
    protocols: Sequence[str] = ("knn", "linear"),
    knn_k: int = 200,
    knn_temperature: float = 0.1,
    baselines: bool = True,
    seed: int = 0,
):
    """:func:`frozen_feature_metrics` of ``model.get_image_features`` and, with ``baselines``, of its
    baselines (see the module docstring), their keys prefixed ``random_init_`` / ``raw_pixels_``.

    Returns ``(metrics, eval_features (N, D), eval_labels (N,))`` of the pretrained model.
    """
    options = dict(protocols=protocols, knn_k=knn_k, knn_temperature=knn_temperature)
    metrics, eval_features, eval_labels = frozen_feature_metrics(
        model.get_image_features,
        train_loader,
        eval_loader,
        transform,
        accelerator,
        return_eval_features=True,
        **options,
    )
    if not baselines:
        return metrics, eval_features, eval_labels
    encoders = {"random_init": random_init_copy(model, seed).get_image_features}
    if getattr(transform, "image_size", RAW_PIXELS_MAX_SIDE + 1) <= RAW_PIXELS_MAX_SIDE:
        encoders["raw_pixels"] = flattened_pixels
    for name, encode in encoders.items():
        baseline = frozen_feature_metrics(encode, train_loader, eval_loader, transform, accelerator, **options)
        metrics.update({f"{name}_{key}": value for key, value in baseline.items() if key in _PROTOCOL_KEYS})
    return metrics, eval_features, eval_labels
