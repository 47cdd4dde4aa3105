"""Batch transforms: how a collated batch becomes a method's ``forward`` keyword arguments.

Every method draws randomness per batch: SimCLR's two views, DINO's multi-crop, BERT's masks,
BART's noise, word2vec's windows and subsampling. The trainer (:class:`hfssl.training.TransformTrainer`)
draws it inside the training step, never in the DataLoader: accelerate's DataLoader fetches one
batch ahead, so draws made there for batch n + 1 would happen before checkpoint n saves the RNG
state, and a resumed run would draw differently. Drawn in the step, they come after it, and
resuming reproduces the uninterrupted run exactly.

A batch transform is any callable ``transform(batch) -> dict`` of ``forward`` keyword arguments;
:class:`BatchTransform` is its base class, whose two class attributes tell the trainer how to run it:

* ``takes_examples``: False (the default): the DataLoader collates tensors (uint8 images, token ids),
  which the trainer moves to the device before the transform runs there. True: the DataLoader only
  lists the examples and the transform collates them on the CPU (padding and masking in one pass,
  as transformers' collators do); the trainer moves its output to the device.
* ``seeds_per_process``: False: every process draws from the same stream (the trainer seeds all
  processes alike) and the transform keeps its share of the global batch's draws, as
  :class:`hfssl.augment.ViewGenerator` does, so N processes draw what one process would for the
  concatenated batch. True: the trainer seeds process i with ``seed + i`` at the start of training,
  for transforms (collators) that draw per example from the global RNG.

``hfssl.METHODS[name].batch_transform(model, processing_class)`` builds a method's transform from
its config (and the tokenizer or image processor), so a checkpoint records how it was trained.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from . import distributed


def uniform_draws_of_this_process(rows: int, columns: int, device: torch.device | str) -> torch.Tensor:
    """(rows, columns) uniform draws in [0, 1): this process's share of the draws for the global batch.

    Every process draws ``world_size * rows`` rows from the same stream (the trainer seeds all processes alike)
    and keeps its own: processes get different draws, the ones a single process would make for the concatenated
    batch (equal per-process batches)."""
    draws = torch.rand(distributed.world_size() * rows, columns, device=device, dtype=torch.float32)
    process = distributed.rank()
    return draws[process * rows : (process + 1) * rows]


_SMALLEST_DRAW = 1e-7  # keeps the inverse normal CDF finite at a draw of exactly 0


def normal_from_uniform(draws: torch.Tensor) -> torch.Tensor:
    """Standard normal values from uniform draws in [0, 1), by the inverse CDF (so Gaussian noise can come from
    :func:`uniform_draws_of_this_process` too)."""
    return math.sqrt(2) * torch.erfinv(2 * draws.clamp(_SMALLEST_DRAW, 1 - _SMALLEST_DRAW) - 1)


class BatchTransform:
    """Base class of batch transforms: ``__call__(batch) -> dict`` of ``forward`` keyword arguments."""

    takes_examples: bool = False
    seeds_per_process: bool = False

    def __call__(self, batch: Any) -> dict[str, Any]:
        raise NotImplementedError


def takes_examples(transform: Callable | None) -> bool:
    """Whether ``transform`` collates example lists itself (plain callables: no)."""
    return bool(getattr(transform, "takes_examples", False))


def seeds_per_process(transform: Callable | None) -> bool:
    """Whether ``transform`` wants a different seed in every process (plain callables: no)."""
    return bool(getattr(transform, "seeds_per_process", False))


class MultiViewTransform(BatchTransform):
    """Joint-embedding methods: ``{"pixel_values": uint8 (B, C, H, W), ...}`` -> ``{"views": [V x (B, C', S_v, S_v)]}``.

    Args:
        view_generator: uint8 images -> list of normalised float views on the batch's device
            (:class:`hfssl.augment.ViewGenerator`; views may differ in size, e.g. multi-crop).
    """

    def __init__(self, view_generator: torch.nn.Module):
        self.view_generator = view_generator

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        return {"views": self.view_generator(batch["pixel_values"])}


class PixelTransform(BatchTransform):
    """Replace ``pixel_values`` by ``transform(pixel_values)`` and keep the other fields (e.g. ``labels``):
    supervised fine-tuning on uint8 batches, with random augmentation in training and the deterministic
    eval transform in evaluation."""

    def __init__(self, transform: Callable[[torch.Tensor], torch.Tensor]):
        self.transform = transform

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        return {**batch, "pixel_values": self.transform(batch["pixel_values"])}


class CollateInStep(BatchTransform):
    """A collator that pads and draws (BERT's masks, BART's noise) run as the batch transform: the
    DataLoader lists the examples, and ``collator(examples)`` runs at the start of the training step.

    Args:
        collator: list of examples -> dict of CPU tensors, drawing from the global torch RNG (or its
            own seeded generator).
    """

    takes_examples = True
    seeds_per_process = True

    def __init__(self, collator: Callable[[Sequence[Any]], dict[str, Any]]):
        self.collator = collator

    def __call__(self, examples: Sequence[Any]) -> dict[str, Any]:
        return self.collator(examples)


class MaskedImageTransform(BatchTransform):
    """Masked image modelling (MAE): ``{"pixel_values": uint8 (B, C, H, W), ...}`` -> ``{"pixel_values": (B, C', S, S),
    "noise": (B, N)}``: one augmented view of every image and uniform noise per patch, whose largest values pick
    the masked patches (:func:`hfssl.patches.patch_mask_from_noise`); drawn from the global batch's stream
    (:func:`uniform_draws_of_this_process`), so N processes mask what one process would.

    Args:
        view_generator: uint8 images -> a list of one normalised view (:class:`hfssl.augment.ViewGenerator`).
        num_patches: N, the patches of a view.
    """

    def __init__(self, view_generator: torch.nn.Module, num_patches: int):
        self.view_generator = view_generator
        self.num_patches = num_patches

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        (view,) = self.view_generator(batch["pixel_values"])
        noise = uniform_draws_of_this_process(view.shape[0], self.num_patches, view.device)
        return {"pixel_values": view, "noise": noise}


class ImageTextTransform(BatchTransform):
    """Image-text methods (CLIP): ``{"pixel_values": uint8 (B, C, H, W), "input_ids": (B, L), "attention_mask": (B, L)}``
    -> the same keys with ``pixel_values`` one augmented, normalised view (B, C', S, S) of every image; the
    captions pass through as tokenised by the collator.

    Args:
        view_generator: uint8 images -> a list of one normalised view (:class:`hfssl.augment.ViewGenerator`).
    """

    def __init__(self, view_generator: torch.nn.Module):
        self.view_generator = view_generator

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        (view,) = self.view_generator(batch["pixel_values"])
        return {"pixel_values": view, "input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}


def keep_examples(examples: list) -> list:
    """A DataLoader ``collate_fn`` that leaves the examples as they are (for ``takes_examples`` transforms)."""
    return list(examples)
