"""Images as sequences of patches, and random patch masks (MAE; He et al. 2022, "Masked Autoencoders
Are Scalable Vision Learners").

Patch order is row-major over the grid, pixels inside a patch row-major with the channels last, as
in MAE's code and transformers' ``ViTMAEForPreTraining.patchify``, so a patch's index is the index of
the ViT token that embeds it.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

# MAE's code: (target - mean) / (var + 1e-6) ** 0.5, var the unbiased variance of the patch's pixels.
PATCH_NORM_EPS = 1e-6


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, p * p * C), N = (H / p) * (W / p); H and W must be multiples of p."""
    batch, channels, height, width = images.shape
    if height % patch_size or width % patch_size:
        raise ValueError(f"Image sides ({height}, {width}) must be multiples of the patch size {patch_size}.")
    rows, columns = height // patch_size, width // patch_size
    patches = images.reshape(batch, channels, rows, patch_size, columns, patch_size)
    return patches.permute(0, 2, 4, 3, 5, 1).reshape(batch, rows * columns, patch_size * patch_size * channels)


def unpatchify(patches: torch.Tensor, patch_size: int, channels: int, height: int, width: int) -> torch.Tensor:
    """(B, N, p * p * C) -> (B, C, H, W): the inverse of :func:`patchify`."""
    batch = patches.shape[0]
    rows, columns = height // patch_size, width // patch_size
    if rows * columns != patches.shape[1]:
        raise ValueError(
            f"{patches.shape[1]} patches do not tile a {height}x{width} image in {patch_size}-px patches."
        )
    images = patches.reshape(batch, rows, columns, patch_size, patch_size, channels)
    return images.permute(0, 5, 1, 3, 2, 4).reshape(batch, channels, height, width)


class PatchStatistics(NamedTuple):
    """Per-patch mean and standard deviation, each (B, N, 1), of :func:`normalize_patches`."""

    mean: torch.Tensor
    std: torch.Tensor


def normalize_patches(patches: torch.Tensor, eps: float = PATCH_NORM_EPS) -> tuple[torch.Tensor, PatchStatistics]:
    """MAE's ``norm_pix_loss`` target: each patch minus its mean over its pixels, divided by
    ``sqrt(var + eps)`` (unbiased variance, as MAE's code). (B, N, P) -> ((B, N, P), statistics); a
    prediction of the normalised target becomes pixels again by :func:`denormalize_patches` with the
    same statistics."""
    mean = patches.mean(dim=-1, keepdim=True)
    std = (patches.var(dim=-1, keepdim=True) + eps) ** 0.5
    return (patches - mean) / std, PatchStatistics(mean, std)


def denormalize_patches(normalized: torch.Tensor, statistics: PatchStatistics) -> torch.Tensor:
    """The inverse of :func:`normalize_patches`: each patch times its own std plus its own mean."""
    return normalized * statistics.std + statistics.mean


class PatchMask(NamedTuple):
    """A random patch mask in MAE's form (sort the noise, keep the first ``N - num_masked``).

    Attributes:
        ids_keep: (B, N - M) indices of the visible patches, in shuffled order.
        ids_restore: (B, N) the permutation that puts ``[visible, masked]`` tokens back in grid order.
        mask: (B, N) float, 1 for a masked (hidden) patch, 0 for a visible one.
    """

    ids_keep: torch.Tensor
    ids_restore: torch.Tensor
    mask: torch.Tensor


def num_masked_patches(num_patches: int, mask_ratio: float) -> int:
    """round(mask_ratio x num_patches), halves rounded up: the patches hidden in every image."""
    return int(mask_ratio * num_patches + 0.5)


def patch_mask_from_noise(noise: torch.Tensor, num_masked: int) -> PatchMask:
    """The mask that hides the ``num_masked`` patches of largest ``noise`` (B, N) in each image (MAE's
    ``random_masking``; uniform noise gives a uniformly random subset per image)."""
    num_patches = noise.shape[1]
    if not 0 <= num_masked <= num_patches:
        raise ValueError(f"Cannot hide {num_masked} of {num_patches} patches.")
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, : num_patches - num_masked]
    mask = torch.ones_like(noise, dtype=torch.float32)
    mask[:, : num_patches - num_masked] = 0
    return PatchMask(ids_keep, ids_restore, torch.gather(mask, 1, ids_restore))


def keep_tokens(tokens: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor:
    """(B, N, D) tokens -> the (B, K, D) rows ``ids_keep`` (B, K) of each image."""
    return torch.gather(tokens, 1, ids_keep.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
