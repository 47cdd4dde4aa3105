"""Inputs and self-made labels of the classic pretext tasks, made on the device inside the training step.

* Rotation prediction (Gidaris et al. 2018, "Unsupervised Representation Learning by Predicting Image
  Rotations"): every image rotated by 0, 90, 180 and 270 degrees, labelled 0-3.
* Relative patch position (Doersch et al. 2015, "Unsupervised Visual Representation Learning by Context
  Prediction"): the centre tile of a 3 x 3 grid and one of its 8 neighbours, labelled by the neighbour's place.
* Jigsaw (Noroozi & Favaro 2016, "Unsupervised Learning of Visual Representations by Solving Jigsaw Puzzles"):
  the 9 tiles of the grid shuffled by one permutation of a fixed set, labelled by the permutation's index.
* Colorization (Zhang et al. 2016, "Colorful Image Colorization"): the lightness L of CIE Lab in, its ab colour
  channels out, as distributions over the in-gamut ab bins.
* Contrastive predictive coding (van den Oord et al. 2018; Henaff et al. 2020 for images): a grid of overlapping
  patches, and which patch lies k rows below which.

The grid: an image of side S is cut into 3 x 3 cells of side ``c = S // 3`` (the grid placed at a random offset
when S is not a multiple of 3) and each tile, of side ``t = round(c * tile_fraction)``, sits inside its cell at
an offset drawn per tile: ``jitter = 0`` centres it (neighbouring tiles then ``c - t`` pixels apart: the gap
that keeps the task from being solved by matching edges), ``jitter = 1`` draws it anywhere in the cell
(Noroozi & Favaro's), values between shrink the range around the centre (Doersch et al.'s 7 px of jitter
beside a 48 px gap is about 0.3). Tiles keep their pixel size: the backbone encodes them as they are.

Every draw comes from :func:`hfssl.transforms.uniform_draws_of_this_process`, so N processes make what one
process would for the concatenated batch, and the trainer draws inside the step, so resuming is exact.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import kornia
import numpy as np
import torch

from .augment import EvalTransform
from .transforms import BatchTransform, normal_from_uniform, uniform_draws_of_this_process

ROTATIONS = 4  # 0, 90, 180, 270 degrees
GRID = 3  # tiles per side of the relative-position and jigsaw grids
CENTRE_CELL = 4  # the middle cell of the 3 x 3 grid, in reading order
NEIGHBOUR_CELLS = (0, 1, 2, 3, 5, 6, 7, 8)  # relative-position label i -> the cell of the neighbour, reading order


# ----------------------------------------------------------------------------- rotation


def rotate_all_four(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, C, S, S) -> every image rotated by k x 90 degrees counter-clockwise for k = 0..3, rotation-major
    (4B, C, S, S), and the labels k (4B,). Gidaris et al. feed all four rotations of an image in one batch."""
    if images.shape[-1] != images.shape[-2]:
        raise ValueError(f"Rotation prediction needs square images, got {tuple(images.shape[-2:])}.")
    rotated = torch.cat([torch.rot90(images, k, dims=(2, 3)) for k in range(ROTATIONS)])
    labels = torch.arange(ROTATIONS, device=images.device).repeat_interleave(images.shape[0])
    return rotated, labels


# ----------------------------------------------------------------------------- the tile grid


def grid_geometry(image_size: int, tile_fraction: float) -> tuple[int, int]:
    """``(cell, tile)``: the side of a grid cell, ``image_size // 3``, and of a tile, ``round(cell * tile_fraction)``
    (at least 1, at most the cell)."""
    cell = image_size // GRID
    return cell, min(max(int(cell * tile_fraction + 0.5), 1), cell)


def tile_corners(
    draws: torch.Tensor, cells: torch.Tensor, image_size: int, tile_fraction: float, jitter: float
) -> torch.Tensor:
    """The top-left pixel (row, column) of each chosen tile of each image: (B, K, 2) long.

    Args:
        draws: (B, 2 + 2K) uniforms: the grid's offset (row, column), then each tile's (row, column) jitter.
        cells: (B, K) the cell of each tile, 0-8 in reading order.
        image_size, tile_fraction, jitter: see the module docstring.
    """
    cell, tile = grid_geometry(image_size, tile_fraction)
    batch, count = cells.shape
    grid_slack = image_size - GRID * cell  # 0, 1 or 2 pixels left over by the grid
    origin = (draws[:, :2] * (grid_slack + 1)).floor().clamp(max=grid_slack)  # (B, 2)
    slack = cell - tile
    low, high = slack / 2 * (1 - jitter), slack / 2 * (1 + jitter)
    offsets = (low + draws[:, 2 : 2 + 2 * count].reshape(batch, count, 2) * (high - low)).round()
    offsets = offsets.clamp(0, slack)
    place = torch.stack([cells // GRID, cells % GRID], dim=-1).to(draws.dtype)  # (B, K, 2) row and column of the cell
    return (origin.unsqueeze(1) + place * cell + offsets).long()


def crop_tiles(images: torch.Tensor, corners: torch.Tensor, tile: int) -> torch.Tensor:
    """The square tiles of side ``tile`` at ``corners`` (B, K, 2): (B, C, S, S) -> (B, K, C, tile, tile)."""
    batch = torch.arange(images.shape[0], device=images.device).view(-1, 1, 1, 1)
    steps = torch.arange(tile, device=images.device)
    rows = corners[..., 0].view(*corners.shape[:2], 1, 1) + steps.view(1, 1, tile, 1)
    columns = corners[..., 1].view(*corners.shape[:2], 1, 1) + steps.view(1, 1, 1, tile)
    return images.permute(0, 2, 3, 1)[batch, rows, columns].permute(0, 1, 4, 2, 3)


def standardize_tiles(tiles: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Each tile (..., C, t, t) shifted and scaled to mean 0 and std 1 over its pixels and channels, so tiles cannot
    be matched by their brightness or contrast (Noroozi & Favaro normalise every tile independently)."""
    mean = tiles.mean(dim=(-3, -2, -1), keepdim=True)
    std = tiles.std(dim=(-3, -2, -1), keepdim=True, unbiased=False)
    return (tiles - mean) / (std + eps)


def drop_channels(tiles: torch.Tensor, kept: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Doersch et al.'s guard against chromatic aberration: of each tile's C channels (normalised), keep one and
    replace the others by ``noise``.

    Args:
        tiles: (N, C, t, t); kept: (N,) the channel each tile keeps; noise: (N, C, t, t) the replacement (the
            paper's: Gaussian noise of 1/100 of the channel's std)."""
    channels = torch.arange(tiles.shape[1], device=tiles.device).view(1, -1, 1, 1)
    return torch.where(channels == kept.view(-1, 1, 1, 1), tiles, noise)


# ----------------------------------------------------------------------------- jigsaw permutations


@functools.lru_cache(maxsize=8)
def hamming_permutation_set(count: int, size: int = GRID * GRID) -> tuple[tuple[int, ...], ...]:
    """``count`` permutations of ``range(size)`` far apart in Hamming distance (the number of places where two
    differ), starting from the identity: each next one is a permutation whose smallest distance to those chosen
    so far is largest (the first such in lexicographic order), so the set is the same on every machine.

    Noroozi & Favaro's Algorithm 1 picks by the largest *average* distance; picking by the smallest distance
    bounds how alike two classes can be: 100 permutations of 9 tiles are at least 6 places apart (the mean
    distance is 8.0). ``count`` <= ``size!``."""
    if not 1 <= count <= math.factorial(size):
        raise ValueError(
            f"A permutation set of {size} tiles has between 1 and {math.factorial(size)} members, got {count}."
        )
    every = np.array(list(itertools.permutations(range(size))), dtype=np.int8)
    chosen = [0]  # the identity
    nearest = (every != every[0]).sum(axis=1)
    for _ in range(count - 1):
        index = int(nearest.argmax())
        chosen.append(index)
        nearest = np.minimum(nearest, (every != every[index]).sum(axis=1))
    return tuple(tuple(int(i) for i in every[index]) for index in chosen)


def min_hamming_distance(permutations: Sequence[Sequence[int]]) -> int:
    """The smallest Hamming distance between two members of ``permutations`` (its size when there is one)."""
    table = np.asarray(permutations)
    if len(table) < 2:
        return table.shape[1]
    distances = (table[:, None, :] != table[None, :, :]).sum(-1)
    np.fill_diagonal(distances, table.shape[1])
    return int(distances.min())


# ----------------------------------------------------------------------------- batch transforms


class RotationTransform(BatchTransform):
    """Rotation prediction: ``{"pixel_values": uint8 (B, C, H, W)}`` -> ``{"pixel_values": (4B, C', S, S),
    "pretext_labels": (4B,)}``: one lightly augmented view of every image (random resized crop and flip), in its
    four rotations (:func:`rotate_all_four`).

    Args:
        view_generator: uint8 images -> a list of one normalised view (:class:`hfssl.augment.ViewGenerator`).
    """

    def __init__(self, view_generator: torch.nn.Module):
        self.view_generator = view_generator

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        (view,) = self.view_generator(batch["pixel_values"])
        rotated, labels = rotate_all_four(view)
        return {"pixel_values": rotated, "pretext_labels": labels}


class _GridTransform(BatchTransform):
    """What the tile tasks share: resize and match channels (``image_transform``), draw the tiles' corners."""

    def __init__(self, image_transform: EvalTransform, tile_fraction: float, jitter: float):
        self.image_transform = image_transform
        self.tile_fraction = tile_fraction
        self.jitter = jitter

    @property
    def tile_size(self) -> int:
        return grid_geometry(self.image_transform.image_size, self.tile_fraction)[1]

    def unit_images(self, batch: Mapping[str, Any]) -> torch.Tensor:
        return self.image_transform.unit_images(batch["pixel_values"])

    def tiles(self, images: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
        """The normalised tiles of ``cells`` (B, K) of ``images`` (B, C, S, S) in [0, 1]: (B, K, C, t, t)."""
        draws = uniform_draws_of_this_process(images.shape[0], 2 + 2 * cells.shape[1], images.device)
        corners = tile_corners(draws, cells, images.shape[-1], self.tile_fraction, self.jitter)
        normalize = self.image_transform.normalize.to(images.device)
        return normalize(crop_tiles(images, corners, self.tile_size).flatten(0, 1)).view(
            *cells.shape, images.shape[1], self.tile_size, self.tile_size
        )


class RelativePositionTransform(_GridTransform):
    """Relative patch position: ``{"pixel_values": uint8 (B, C, H, W)}`` -> ``{"pixel_values": (B, 2, C', t, t)``
    the centre tile and one neighbour of every image, ``"pretext_labels": (B,)`` the neighbour's place, 0-7 (in
    reading order: :data:`NEIGHBOUR_CELLS`)}. With ``channel_dropping`` and colour images, each tile keeps one
    random channel and the others become Gaussian noise of std ``noise_std`` (:func:`drop_channels`)."""

    def __init__(
        self,
        image_transform: EvalTransform,
        tile_fraction: float,
        jitter: float,
        channel_dropping: bool = True,
        noise_std: float = 0.01,
    ):
        super().__init__(image_transform, tile_fraction, jitter)
        self.channel_dropping = channel_dropping
        self.noise_std = noise_std

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        images = self.unit_images(batch)
        size = images.shape[0]
        labels = (uniform_draws_of_this_process(size, 1, images.device)[:, 0] * len(NEIGHBOUR_CELLS)).long()
        labels = labels.clamp(max=len(NEIGHBOUR_CELLS) - 1)
        neighbours = torch.tensor(NEIGHBOUR_CELLS, device=images.device)[labels]
        cells = torch.stack([torch.full_like(neighbours, CENTRE_CELL), neighbours], dim=1)
        tiles = self.tiles(images, cells)  # (B, 2, C, t, t)
        if self.channel_dropping and tiles.shape[2] > 1:
            tiles = self.drop_channels(tiles)
        return {"pixel_values": tiles, "pretext_labels": labels}

    def drop_channels(self, tiles: torch.Tensor) -> torch.Tensor:
        flat = tiles.flatten(0, 1)  # (2B, C, t, t)
        rows = tiles.shape[0]
        kept = (uniform_draws_of_this_process(rows, 2, flat.device).reshape(-1) * flat.shape[1]).long()
        noise = normal_from_uniform(uniform_draws_of_this_process(rows, 2 * flat[0].numel(), flat.device))
        noise = self.noise_std * noise.view_as(flat)
        return drop_channels(flat, kept.clamp(max=flat.shape[1] - 1), noise).view_as(tiles)


class JigsawTransform(_GridTransform):
    """Jigsaw: ``{"pixel_values": uint8 (B, C, H, W)}`` -> ``{"pixel_values": (B, 9, C', t, t)`` the shuffled tiles,
    ``"pretext_labels": (B,)`` the permutation's index in ``permutations``}. Place i of the shuffled puzzle holds
    the tile of cell ``permutations[label][i]``. With ``standardize``, every tile is standardised on its own
    (:func:`standardize_tiles`)."""

    def __init__(
        self,
        image_transform: EvalTransform,
        tile_fraction: float,
        jitter: float,
        permutations: Sequence[Sequence[int]],
        standardize: bool = False,
    ):
        super().__init__(image_transform, tile_fraction, jitter)
        self.permutations = torch.tensor(permutations, dtype=torch.long)
        self.standardize = standardize

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        images = self.unit_images(batch)
        draws = uniform_draws_of_this_process(images.shape[0], 1, images.device)[:, 0]
        labels = (draws * len(self.permutations)).long().clamp(max=len(self.permutations) - 1)
        cells = self.permutations.to(images.device)[labels]  # (B, 9): place i shows cell cells[:, i]
        tiles = self.tiles(images, cells)
        if self.standardize:
            tiles = standardize_tiles(tiles)
        return {"pixel_values": tiles, "pretext_labels": labels}


# ----------------------------------------------------------------------------- colorization

AB_RANGE = 110.0  # |a|, |b| of sRGB colours in CIE Lab stay below this (Zhang et al. 2016, sec. 2.1)
_GAMUT_SAMPLES = 64  # sRGB cube samples per axis when finding the in-gamut ab bins


def rgb_to_lab(images: torch.Tensor) -> torch.Tensor:
    """sRGB (B, 3, H, W) in [0, 1] -> CIE Lab (D65): L in [0, 100], a and b within about +-110 (kornia's)."""
    return kornia.color.rgb_to_lab(images)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """CIE Lab (B, 3, H, W) -> sRGB in [0, 1] (clipped)."""
    return kornia.color.lab_to_rgb(lab, clip=True)


@functools.lru_cache(maxsize=4)
def in_gamut_ab_bins(bin_size: float) -> torch.Tensor:
    """(Q, 2) the centres of the ab bins that sRGB colours fall in: a grid of step ``bin_size`` over
    [-110, 110]^2 (Zhang et al.'s quantisation), kept where some colour of a dense sample of the sRGB cube (64 steps
    per channel) lands in the bin: Q = 261 at 10 (the paper's gamut gives 313). Rows in (a, b) order; the same on every machine."""
    steps = torch.linspace(0, 1, _GAMUT_SAMPLES)
    cube = torch.stack(torch.meshgrid(steps, steps, steps, indexing="ij")).reshape(3, -1, 1)  # (3, N, 1)
    ab = rgb_to_lab(cube.unsqueeze(0))[0, 1:, :, 0].T  # (N, 2)
    per_axis = int(2 * AB_RANGE / bin_size) + 1
    cells = ((ab + AB_RANGE) / bin_size).round().clamp(0, per_axis - 1).long()
    occupied = torch.unique(cells[:, 0] * per_axis + cells[:, 1])
    return torch.stack([occupied // per_axis, occupied % per_axis], dim=1).float() * bin_size - AB_RANGE


def soft_encode(ab: torch.Tensor, bins: torch.Tensor, neighbours: int = 5, sigma: float = 5.0) -> torch.Tensor:
    """Zhang et al.'s soft encoding of ab values as distributions over the bins: each (N, 2) value spreads over its
    ``neighbours`` nearest bin centres with Gaussian weights of std ``sigma`` (ab units), normalised: (N, Q)."""
    distances = torch.cdist(ab.float(), bins.to(ab.device))  # (N, Q)
    nearest, index = distances.topk(min(neighbours, bins.shape[0]), dim=1, largest=False)
    weights = torch.exp(-(nearest**2) / (2 * sigma**2))
    weights = weights / weights.sum(dim=1, keepdim=True)
    return torch.zeros_like(distances).scatter_(1, index, weights)


def rebalancing_weights(
    bin_counts: torch.Tensor, bins: torch.Tensor, mix: float = 0.5, sigma: float = 5.0
) -> torch.Tensor:
    """Zhang et al.'s class rebalancing (eq. 3-4): the empirical bin distribution ``bin_counts`` (Q,) smoothed by a
    Gaussian of std ``sigma`` over the ab plane, mixed with the uniform one (``mix``, the paper's lambda 0.5),
    inverted and normalised so its expectation under the smoothed distribution is 1: (Q,) weights. Before any count
    (an evaluation before training), every weight is 1."""
    if not bin_counts.sum() > 0:
        return torch.ones(bins.shape[0], device=bin_counts.device)
    distribution = bin_counts.double() / bin_counts.sum().clamp(min=1)
    kernel = torch.exp(-(torch.cdist(bins.double(), bins.double()) ** 2) / (2 * sigma**2)).to(distribution.device)
    smoothed = kernel @ distribution
    smoothed = smoothed / smoothed.sum()
    weights = 1 / ((1 - mix) * smoothed + mix / bins.shape[0])
    return (weights / (smoothed * weights).sum()).float()


def annealed_mean(logits: torch.Tensor, bins: torch.Tensor, temperature: float = 0.38) -> torch.Tensor:
    """Zhang et al.'s point estimate of a pixel's colour (eq. 5): the mean of the bin centres under the predicted
    distribution sharpened by ``temperature`` (0.38). ``logits`` (B, Q, h, w) -> ab (B, 2, h, w)."""
    probabilities = torch.softmax(logits.float() / temperature, dim=1)
    return torch.einsum("bqhw,qc->bchw", probabilities, bins.to(logits.device))


class ColorizationTransform(BatchTransform):
    """Colorization: ``{"pixel_values": uint8 (B, 3, H, W)}`` -> ``{"pixel_values": (B, 1, S, S)`` the lightness L / 100,
    normalised, ``"ab": (B, 2, S, S)`` the colour to predict, in Lab units}, after a random resized crop and flip
    (``view_generator``, which must leave pixels in [0, 1]: mean 0 and std 1). A greyscale batch is refused: its
    colour is all zero, nothing to learn.

    Args:
        view_generator: uint8 images -> a list of one unnormalised 3-channel view (:class:`hfssl.augment.ViewGenerator`).
        normalize: normalises the L channel (the 1-channel image processor's mean and std).
    """

    def __init__(self, view_generator: torch.nn.Module, normalize: torch.nn.Module):
        self.view_generator = view_generator
        self.normalize = normalize

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        pixels = batch["pixel_values"]
        if pixels.shape[1] != 3:
            raise ValueError(
                f"Colorization needs colour (RGB) images: this batch has {pixels.shape[1]} channel(s), so there is "
                "no colour to predict. Train it on a colour data set (e.g. ../shared/data/emoji-captions)."
            )
        (view,) = self.view_generator(pixels)
        lab = rgb_to_lab(view.clamp(0, 1))
        lightness = self.normalize.to(view.device)(lab[:, :1] / 100)
        return {"pixel_values": lightness, "ab": lab[:, 1:]}


# ----------------------------------------------------------------------------- contrastive predictive coding


def patch_grid_geometry(image_size: int, grid_size: int) -> tuple[int, int]:
    """``(patch, stride)`` of a ``grid_size`` x ``grid_size`` grid of patches overlapping by half (Henaff et al.
    2020: 64 px patches every 32 px of a 256 px image, a 7 x 7 grid): ``stride = image_size // (grid_size + 1)``,
    ``patch = 2 * stride``. The grid covers ``(grid_size + 1) * stride`` pixels from the top left."""
    stride = image_size // (grid_size + 1)
    return 2 * stride, stride


def overlapping_patches(images: torch.Tensor, grid_size: int) -> torch.Tensor:
    """(B, C, S, S) -> (B, G * G, C, p, p): the patches of :func:`patch_grid_geometry`, in reading order
    (patch ``i * G + j`` starts at pixel ``(i * stride, j * stride)``)."""
    patch, stride = patch_grid_geometry(images.shape[-1], grid_size)
    batch, channels = images.shape[:2]
    grid = images.unfold(2, patch, stride).unfold(3, patch, stride)[:, :, :grid_size, :grid_size]  # (B, C, G, G, p, p)
    return grid.permute(0, 2, 3, 1, 4, 5).reshape(batch, grid_size * grid_size, channels, patch, patch)


def cpc_positive_indices(batch: int, grid_size: int, steps: int, device=None) -> torch.Tensor:
    """The index, among the B * G * G patches in reading order, of the patch ``steps`` rows below each patch that has
    one: (B * (G - steps) * G,) for the sources ``(b, i, j)``, i < G - steps, in that order; the source's own index
    minus these is ``-steps * G``."""
    b = torch.arange(batch, device=device).view(-1, 1, 1)
    i = torch.arange(grid_size - steps, device=device).view(1, -1, 1)
    j = torch.arange(grid_size, device=device).view(1, 1, -1)
    return (b * grid_size * grid_size + (i + steps) * grid_size + j).flatten()


class PatchGridTransform(BatchTransform):
    """CPC: ``{"pixel_values": uint8 (B, C, H, W)}`` -> ``{"pixel_values": (B, G * G, C', p, p)}``, the overlapping
    patches (:func:`overlapping_patches`) of one lightly augmented view of every image (random resized crop, flip).

    Args:
        view_generator: uint8 images -> a list of one normalised view (:class:`hfssl.augment.ViewGenerator`).
        grid_size: G, patches per side.
    """

    def __init__(self, view_generator: torch.nn.Module, grid_size: int):
        self.view_generator = view_generator
        self.grid_size = grid_size

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        (view,) = self.view_generator(batch["pixel_values"])
        return {"pixel_values": overlapping_patches(view, self.grid_size)}
