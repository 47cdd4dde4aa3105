"""Frozen-feature extraction over an image DataLoader, optionally across processes with accelerate."""

from collections.abc import Callable
from typing import Optional

import accelerate
import torch
from torch import nn


def _infer_device(encode: Callable, accelerator: Optional[accelerate.Accelerator]) -> torch.device:
    if accelerator is not None:
        return accelerator.device
    if isinstance(encode, nn.Module):
        parameter = next(encode.parameters(), None)
        if parameter is not None:
            return parameter.device
    return torch.device("cpu")


@torch.no_grad()
def extract_features(
    encode: Callable[[torch.Tensor], torch.Tensor],
    dataloader,
    preprocess: Callable[[torch.Tensor], torch.Tensor],
    accelerator: Optional[accelerate.Accelerator] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode every batch of ``dataloader`` as ``encode(preprocess(batch["pixel_values"]))``.

    Args:
        encode: maps a preprocessed batch (B, C', H', W') to features (B, D); outputs with trailing singleton
            dimensions, e.g. ``ResNetModel``'s pooler output (B, D, 1, 1), are flattened to (B, D). An ``nn.Module``
            is switched to eval mode for the pass and restored to its previous mode afterwards.
        dataloader: yields dicts with "pixel_values" uint8 (B, C, H, W) and "labels" int64 (B,); with an
            ``accelerator`` it must have been prepared by it.
        preprocess: maps uint8 (B, C, H, W) on the device to float (B, C', H', W'), e.g. ``lambda x: x.float() / 255``.
        accelerator: when given, features and labels of every process are gathered with
            ``accelerator.gather_for_metrics`` (dropping the samples duplicated to even out the last batches) and
            every process receives the full set.

    Returns:
        ``(features, labels)``: float32 (N, D) and int64 (N,), on CPU, in loader order (also under an accelerator:
        its batch-sharded loaders give process p the batches p, p + P, ..., which the gather puts back in order).

    The device is ``accelerator.device``, else the device of ``encode``'s parameters, else CPU.
    """
    device = _infer_device(encode, accelerator)
    was_training = isinstance(encode, nn.Module) and encode.training
    if isinstance(encode, nn.Module):
        encode.eval()
    features, labels = [], []
    try:
        for batch in dataloader:
            batch_features = encode(preprocess(batch["pixel_values"].to(device))).flatten(1).float()
            batch_labels = batch["labels"].to(device)
            if accelerator is not None:
                batch_features, batch_labels = accelerator.gather_for_metrics((batch_features, batch_labels))
            features.append(batch_features.cpu())
            labels.append(batch_labels.cpu().long())
    finally:
        if was_training:
            encode.train()
    if not features:
        raise ValueError("extract_features got an empty dataloader")
    return torch.cat(features), torch.cat(labels)
