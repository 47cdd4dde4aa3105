"""Batched view generation on the device.

The DataLoader yields uint8 images (B, C, H, W); everything here runs where the model runs, on
the whole batch at once. A :class:`ViewRecipe` describes the random augmentation of one view and
its output size; :class:`ViewGenerator` turns a uint8 batch into normalised float views for the
backbone (views of one size, as SimCLR's and BYOL's, or of several, as the multi-crop of SwAV and
DINO: 2 global + N local crops), and
:class:`EvalTransform` is its deterministic counterpart for evaluation (resize + normalise), the
same preprocessing as the image processor saved beside every checkpoint.

Each operation follows torchvision's definition (the SimCLR pipeline, Chen et al. 2020, appendix A),
with its parameters drawn per image, and runs batched over all images and views at once:

* random resized crop + horizontal flip: torchvision's crop sampling (area fraction uniform in
  ``crop_scale``, log aspect ratio uniform in ``log(crop_ratio)``, 10 tries, then a centre crop),
  vectorised; the crop box and the flip become one bilinear resampling (``grid_sample``) that
  reproduces crop-then-resize (without antialiasing, which matters only for crops larger than the view).
* colour jitter: brightness, contrast, saturation and hue in a random order drawn per image, each
  factor per image, clamped to [0, 1] after each step; hue is the exact HSV hue shift.
* greyscale, Gaussian blur and solarisation run on the images they were drawn for only; an
  operation whose probability is 0 in every recipe of a size group (below) is skipped there. The
  blur kernel is odd and about 10% of the view's side.

Views of several sizes: the recipes are grouped by output size, and each group is made as above,
with one resampling for all its views. All per-image parameters still come from one ``torch.rand``
call for all (image, view) rows, in the row layout of the one-size case.

On the CPU the batch goes through in chunks of a few images, which stay in cache through all the
operations; the result does not depend on the chunking.

Channel rule: colour operations act on three channels; greyscale input stays single-channel, where
they give what they would give on the repeated channels (saturation and hue leave grey unchanged).
The result is converted to the backbone's ``num_channels`` (3 -> 1 by luminance, 1 -> 3 by repetition).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Union

import torch
import torch.nn.functional as F
from kornia.color import rgb_to_grayscale
from kornia.filters import gaussian_blur2d
from torch import nn

from .transforms import uniform_draws_of_this_process

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
GREYSCALE_MEAN = (0.5,)
GREYSCALE_STD = (0.5,)


JitterRange = Union[float, tuple[float, float]]


@dataclass(frozen=True)
class ViewRecipe:
    """Random augmentation of one view. Probabilities are per image.

    The colour jitter strengths follow torchvision's ``ColorJitter``: a number ``x`` draws the factor
    uniformly from ``[max(0, 1 - x), 1 + x]`` (hue: the shift from ``[-x, x]``, in turns, ``x <= 0.5``);
    a ``(min, max)`` pair gives the range directly. ``size`` is the side of the square output view in
    pixels (None: the ``image_size`` of the :class:`ViewGenerator`).
    """

    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_probability: float = 0.5
    brightness: JitterRange = 0.4
    contrast: JitterRange = 0.4
    saturation: JitterRange = 0.4
    hue: JitterRange = 0.1
    color_jitter_probability: float = 0.8
    grayscale_probability: float = 0.2
    blur_probability: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_probability: float = 0.0
    size: int | None = None  # side of the square view in pixels; None: the generator's image_size


def simclr_recipe(image_size: int, color_jitter_strength: float = 1.0) -> ViewRecipe:
    """The SimCLR augmentation (Chen et al. 2020, appendix A), for images of ``image_size`` pixels.

    Random resized crop (scale 0.08-1), flip, colour jitter (0.8s, 0.8s, 0.8s, 0.2s) with p=0.8,
    greyscale with p=0.2, Gaussian blur with p=0.5 and a kernel of 10% of the image side. As in the
    paper's CIFAR-10 setup, images of 32 pixels or less get no blur.
    """
    s = color_jitter_strength
    return ViewRecipe(
        brightness=0.8 * s,
        contrast=0.8 * s,
        saturation=0.8 * s,
        hue=0.2 * s,
        blur_probability=0.5 if image_size > 32 else 0.0,
    )


def crop_and_flip_recipe(min_crop_scale: float, flip_probability: float = 0.5) -> ViewRecipe:
    """Light augmentation: a random resized crop (``min_crop_scale``-1) and a horizontal flip, no colour change;
    the pretext tasks' (rotation, colorization, CPC), whose labels or targets a colour change would spoil or
    whose papers augment no more."""
    return ViewRecipe(
        crop_scale=(min_crop_scale, 1.0),
        flip_probability=flip_probability,
        color_jitter_probability=0.0,
        grayscale_probability=0.0,
        blur_probability=0.0,
    )


def moco_v2_recipe(image_size: int, min_crop_scale: float = 0.2) -> ViewRecipe:
    """MoCo v2's augmentation (Chen et al. 2020, "Improved Baselines with Momentum Contrastive Learning"),
    which SimSiam keeps (Chen & He 2021, appendix A): random resized crop (``min_crop_scale``-1), flip,
    colour jitter (0.4, 0.4, 0.4, 0.1) with p=0.8, greyscale with p=0.2, Gaussian blur (sigma 0.1-2) with
    p=0.5. As :func:`simclr_recipe`, images of 32 pixels or less get no blur (the papers' CIFAR setting)."""
    blurs = _check_size(image_size, "image_size") > 32
    return ViewRecipe(crop_scale=(min_crop_scale, 1.0), blur_probability=0.5 if blurs else 0.0)


# Colour jitter of BYOL (Grill et al. 2020, table 6), which DINO (Caron et al. 2021) keeps.
_BYOL_JITTER = dict(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1)


def byol_recipes(image_size: int) -> list[ViewRecipe]:
    """BYOL's two asymmetric views (Grill et al. 2020, appendix B, table 6), for images of ``image_size`` pixels.

    Both: random resized crop (scale 0.08-1), flip, colour jitter (0.4, 0.4, 0.2, 0.1) with p=0.8,
    greyscale with p=0.2. Gaussian blur with p=1.0 in the first view and 0.1 in the second,
    solarisation with p=0 and 0.2. As :func:`simclr_recipe`, images of 32 pixels or less get no blur.
    The views take the generator's ``image_size``.
    """
    blurs = _check_size(image_size, "image_size") > 32
    return [
        ViewRecipe(**_BYOL_JITTER, blur_probability=1.0 if blurs else 0.0),
        ViewRecipe(**_BYOL_JITTER, blur_probability=0.1 if blurs else 0.0, solarize_probability=0.2),
    ]


def multi_crop_recipes(
    global_size: int,
    local_size: int,
    num_local_crops: int,
    global_crop_scale: tuple[float, float] = (0.4, 1.0),
    local_crop_scale: tuple[float, float] = (0.05, 0.4),
) -> list[ViewRecipe]:
    """Multi-crop views: 2 global crops of ``global_size`` pixels, then ``num_local_crops`` local crops of
    ``local_size`` pixels (multi-crop of SwAV, Caron et al. 2020; the augmentation of DINO, Caron et al. 2021).

    All views: random resized crop (global: ``global_crop_scale``, local: ``local_crop_scale``), flip,
    colour jitter (0.4, 0.4, 0.2, 0.1) with p=0.8, greyscale with p=0.2. Gaussian blur with p=1.0 in the
    first global crop, 0.1 in the second (which is also solarised with p=0.2), 0.5 in the local crops.
    As :func:`simclr_recipe`, views of 32 pixels or less get no blur (decided per view size: CIFAR-sized
    crops, e.g. 32 + 16 px, get none at all). Pass ``global_size`` as the generator's ``image_size``.
    """
    global_size, local_size, num_local_crops = _check_multi_crop(global_size, local_size, num_local_crops)

    def recipe(size: int, crop_scale: tuple[float, float], blur: float, solarize: float = 0.0) -> ViewRecipe:
        return ViewRecipe(
            crop_scale=crop_scale,
            **_BYOL_JITTER,
            blur_probability=blur if size > 32 else 0.0,
            solarize_probability=solarize,
            size=size,
        )

    return [
        recipe(global_size, global_crop_scale, 1.0),
        recipe(global_size, global_crop_scale, 0.1, solarize=0.2),
        *(recipe(local_size, local_crop_scale, 0.5) for _ in range(num_local_crops)),
    ]


def swav_multi_crop_recipes(
    global_size: int,
    local_size: int,
    num_local_crops: int,
    global_crop_scale: tuple[float, float] = (0.14, 1.0),
    local_crop_scale: tuple[float, float] = (0.05, 0.14),
) -> list[ViewRecipe]:
    """SwAV's multi-crop (Caron et al. 2020, sec. 3.2 and their ``main_swav.py``): 2 global crops of ``global_size``
    pixels (area share ``global_crop_scale``), then ``num_local_crops`` local crops of ``local_size`` pixels
    (``local_crop_scale``), all with SimCLR's colour distortion of strength 1 (jitter (0.8, 0.8, 0.8, 0.2) with
    p=0.8, greyscale p=0.2), flip and Gaussian blur with p=0.5 (none in views of 32 pixels or less, as
    :func:`simclr_recipe`); no solarisation. Pass ``global_size`` as the generator's ``image_size``."""
    global_size, local_size, num_local_crops = _check_multi_crop(global_size, local_size, num_local_crops)
    distortion = dict(brightness=0.8, contrast=0.8, saturation=0.8, hue=0.2)

    def recipe(size: int, crop_scale: tuple[float, float]) -> ViewRecipe:
        return ViewRecipe(crop_scale=crop_scale, **distortion, blur_probability=0.5 if size > 32 else 0.0, size=size)

    return [recipe(global_size, global_crop_scale)] * 2 + [recipe(local_size, local_crop_scale)] * num_local_crops


def default_normalization(num_channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """ImageNet statistics for 3-channel backbones, 0.5/0.5 for single-channel ones."""
    return (
        (IMAGENET_MEAN, IMAGENET_STD)
        if num_channels == 3
        else (GREYSCALE_MEAN * num_channels, GREYSCALE_STD * num_channels)
    )


def to_unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, C, H, W) in [0, 255] -> float32 in [0, 1]; float input is assumed to be in [0, 1]."""
    if images.dim() != 4:
        raise ValueError(f"Expected a batch of images (B, C, H, W), got shape {tuple(images.shape)}.")
    return images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()


def match_channels(images: torch.Tensor, num_channels: int) -> torch.Tensor:
    """Convert (B, C, H, W) to ``num_channels`` channels: 1 -> 3 repeats, 3 -> 1 takes luminance."""
    channels = images.shape[1]
    if channels == num_channels:
        return images
    if channels == 1:
        return images.expand(-1, num_channels, -1, -1)
    if channels == 3 and num_channels == 1:
        return rgb_to_grayscale(images)
    raise ValueError(
        f"Cannot feed {channels}-channel images to a {num_channels}-channel backbone; set num_channels in --backbone_config_overrides."
    )


class _Normalize(nn.Module):
    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.mean) / self.std

    def inverse(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised images back to [0, 1] pixels: ``images * std + mean``."""
        return images * self.std + self.mean


# Per-view parameter table: one row per recipe, these columns.
_COLUMNS = (
    "scale_lo",
    "scale_hi",
    "ratio_lo",
    "ratio_hi",
    "flip",
    "jitter",
    "brightness_lo",
    "brightness_hi",
    "contrast_lo",
    "contrast_hi",
    "saturation_lo",
    "saturation_hi",
    "hue_lo",
    "hue_hi",
    "grayscale",
    "blur",
    "sigma_lo",
    "sigma_hi",
    "solarize",
)
_C = {name: index for index, name in enumerate(_COLUMNS)}

# Uniform draws per image, all taken by one torch.rand call: these columns.
_CROP_TRIES = 10  # as torchvision's RandomResizedCrop.get_params
_U_AREA = slice(0, _CROP_TRIES)
_U_LOG_RATIO = slice(_CROP_TRIES, 2 * _CROP_TRIES)
_U_TOP, _U_LEFT, _U_FLIP, _U_JITTER = 20, 21, 22, 23
_U_FACTORS = slice(24, 28)  # brightness, contrast, saturation, hue
_U_ORDER = slice(28, 32)  # sort keys of the jitter order
_U_GRAYSCALE, _U_BLUR, _U_SIGMA, _U_SOLARIZE = 32, 33, 34, 35
_NUM_DRAWS = 36

_BRIGHTNESS, _CONTRAST, _SATURATION, _HUE = range(4)
_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as kornia's and torchvision's rgb_to_grayscale
_CHUNK_ELEMENTS = 2**19  # floats per CPU thread in a chunk of views (2 MB, about a core's L2 cache)
_JITTER_NAMES = ("brightness", "contrast", "saturation", "hue")


def _jitter_range(value: JitterRange, name: str) -> tuple[float, float]:
    """torchvision's ColorJitter range: ``x`` -> [max(0, 1 - x), 1 + x] (hue: [-x, x]); a pair is taken as is."""
    hue = name == "hue"
    if isinstance(value, (int, float)):
        if value < 0 or (hue and value > 0.5):
            raise ValueError(f"ViewRecipe.{name} must be {'in [0, 0.5]' if hue else 'non-negative'}, got {value}.")
        return (-float(value), float(value)) if hue else (max(0.0, 1.0 - value), 1.0 + value)
    low, high = (float(v) for v in value)
    bounds = (-0.5, 0.5) if hue else (0.0, math.inf)
    if not bounds[0] <= low <= high <= bounds[1]:
        raise ValueError(
            f"ViewRecipe.{name} range must satisfy {bounds[0]} <= min <= max <= {bounds[1]}, got {value}."
        )
    return low, high


def _check_multi_crop(global_size, local_size, num_local_crops) -> tuple[int, int, int]:
    """Multi-crop sizes as ints >= 1 and the local-crop count as an int >= 0, or a ValueError naming the argument."""
    if isinstance(num_local_crops, bool) or not isinstance(num_local_crops, numbers.Integral) or num_local_crops < 0:
        raise ValueError(f"num_local_crops must be an int >= 0, got {num_local_crops!r}.")
    return _check_size(global_size, "global_size"), _check_size(local_size, "local_size"), num_local_crops


def _check_size(value, name: str) -> int:
    """``value`` as an int if it is a positive integer (a side in pixels), else a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive int (pixels), got {value!r}.")
    return int(value)


def _blur_kernel_size(size: int) -> int:
    return max(3, int(0.1 * size) // 2 * 2 + 1)  # odd, ~10% of the side


def _recipe_row(recipe: ViewRecipe) -> list[float]:
    for name in (
        "flip_probability",
        "color_jitter_probability",
        "grayscale_probability",
        "blur_probability",
        "solarize_probability",
    ):
        if not 0.0 <= getattr(recipe, name) <= 1.0:
            raise ValueError(f"ViewRecipe.{name} must be in [0, 1], got {getattr(recipe, name)}.")
    for name, low_bound in (("crop_scale", 0.0), ("crop_ratio", 0.0), ("blur_sigma", 0.0)):
        low, high = getattr(recipe, name)
        if not low_bound < low <= high:
            raise ValueError(f"ViewRecipe.{name} must be a range 0 < min <= max, got {(low, high)}.")
    jitter = [bound for name in _JITTER_NAMES for bound in _jitter_range(getattr(recipe, name), name)]
    return [
        *recipe.crop_scale, *recipe.crop_ratio, recipe.flip_probability, recipe.color_jitter_probability, *jitter,
        recipe.grayscale_probability, recipe.blur_probability, *recipe.blur_sigma, recipe.solarize_probability,
    ]  # fmt: skip


def _crop_boxes(draws: torch.Tensor, table: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, ...]:
    """torchvision's ``RandomResizedCrop.get_params`` for every row at once: (top, left, h, w), float, (n,) each.

    Up to 10 tries of (area fraction ~ U(scale), log ratio ~ U(log ratio)); the first crop that fits the
    image wins, with its corner uniform over the valid positions; if none fits, the centre crop of the
    whole image (the ratio clamped into range).
    """
    scale_lo, scale_hi = table[:, _C["scale_lo"], None], table[:, _C["scale_hi"], None]
    ratio_lo, ratio_hi = table[:, _C["ratio_lo"]], table[:, _C["ratio_hi"]]
    log_lo, log_hi = ratio_lo.log()[:, None], ratio_hi.log()[:, None]
    area = (scale_lo + draws[:, _U_AREA] * (scale_hi - scale_lo)) * (height * width)
    aspect = torch.exp(log_lo + draws[:, _U_LOG_RATIO] * (log_hi - log_lo))
    w = torch.sqrt(area * aspect).round()
    h = torch.sqrt(area / aspect).round()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.to(torch.uint8).argmax(1, keepdim=True)  # the first try that fits
    found = fits.any(1)
    w, h = w.gather(1, first).squeeze(1), h.gather(1, first).squeeze(1)
    top = torch.minimum((draws[:, _U_TOP] * (height - h + 1)).floor(), height - h)
    left = torch.minimum((draws[:, _U_LEFT] * (width - w + 1)).floor(), width - w)
    in_ratio = width / height
    fallback_w = torch.where(in_ratio > ratio_hi, (height * ratio_hi).round(), float(width))
    fallback_h = torch.where(in_ratio < ratio_lo, (width / ratio_lo).round(), float(height))
    w, h = torch.where(found, w, fallback_w), torch.where(found, h, fallback_h)
    top = torch.where(found, top, ((height - h) / 2).floor())
    left = torch.where(found, left, ((width - w) / 2).floor())
    return top, left, h, w


def _crop_coordinates(top, left, h, w, flip, size: int, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sampling coordinates of the crops, per row and axis: x (n, size) and y (n, size), normalised to [-1, 1].

    The crop box (and the flip, as a sign) maps the output pixel centres to input coordinates exactly as
    resizing the cropped pixels would (``F.interpolate``, bilinear, ``align_corners=False``: half-pixel
    centres, coordinates clamped to the box's first and last pixel).
    """
    centres = (torch.arange(size, device=top.device, dtype=top.dtype) * 2 + 1) / size - 1  # in [-1, 1]

    def axis(start: torch.Tensor, extent: torch.Tensor, full: int, sign: torch.Tensor | None = None) -> torch.Tensor:
        # output [-1, 1] -> input normalised coordinates of the box [start, start + extent] (pixel edges)
        scale = extent / full if sign is None else torch.where(sign, -extent, extent) / full
        coords = scale[:, None] * centres + ((2 * start + extent) / full - 1)[:, None]
        first, last = (
            (2 * start + 1) / full - 1,
            (2 * (start + extent) - 1) / full - 1,
        )  # box's first/last pixel centres
        return torch.clamp(coords, first[:, None], last[:, None])

    return axis(left, w, width, flip), axis(top, h, height)


def _resized_crops(images: torch.Tensor, grid_x: torch.Tensor, grid_y: torch.Tensor, out: torch.Tensor) -> None:
    """Bilinear crops of ``images`` (B, C, H, W) into ``out`` (B * V, C, S, S), row ``b * V + v`` = view v of image b.

    ``grid_x``/``grid_y`` (B * V, S) from :func:`_crop_coordinates`. One ``grid_sample``: the V grids of an
    image are stacked along the output height, so that the input is not repeated.
    """
    batch, channels = images.shape[:2]
    rows, size = grid_x.shape
    views = rows // batch
    grid = torch.stack(
        torch.broadcast_tensors(grid_x.view(batch, views, 1, size), grid_y.view(batch, views, size, 1)), dim=-1
    )
    crops = F.grid_sample(
        images, grid.view(batch, views * size, size, 2), mode="bilinear", padding_mode="border", align_corners=False
    )
    # bilinear weights sum to 1 only up to rounding: clamp into [0, 1] while moving the views next to each other
    torch.clamp(
        crops.view(batch, channels, views, size, size).transpose(1, 2),
        0,
        1,
        out=out.view(batch, views, channels, size, size),
    )


def _blend_step(
    images: torch.Tensor, factor: torch.Tensor, contrast: torch.Tensor, saturation: torch.Tensor, luma: torch.Tensor
) -> None:
    """In place, per row: ``clamp(f * x + (1 - f) * ref, 0, 1)`` with ref = 0 (brightness), the mean grey
    (contrast) or the grey image (saturation), as torchvision's ``_blend``; rows with ``f = 1`` are unchanged.

    ``contrast`` and ``saturation`` are 0/1 per row, ``luma`` the (1, 1, 3) grey weights.
    """
    rows, channels, height, width = images.shape
    if channels == 1:
        grey = images
    else:  # rgb_to_grayscale as one (1 x 3) @ (3 x HW) product per row: one pass instead of three
        grey = torch.matmul(luma, images.view(rows, channels, height * width)).view(rows, 1, height, width)
    weight = (1 - factor).view(-1, 1, 1, 1)
    ref = torch.addcmul(
        grey.mean((1, 2, 3), keepdim=True) * (weight * contrast.view(-1, 1, 1, 1)),
        grey,
        weight * saturation.view(-1, 1, 1, 1),
    )
    torch.addcmul(ref, images, factor.view(-1, 1, 1, 1), out=images)
    images.clamp_(0, 1)


def _adjust_hue(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """torchvision's ``adjust_hue`` (RGB -> HSV, hue + shift, HSV -> RGB) in closed form, ``shift`` in turns per row.

    The shift keeps each pixel's max and min (HSV value and saturation). The hue ``h`` in sextants comes
    from the channel holding the max (tied maxima give the same hue); HSV -> RGB is the branch-free
    ``channel = max - chroma * clamp(min(k, 4 - k), 0, 1)``, ``k = (n + h) mod 6`` with n = 5, 3, 1 for
    r, g, b, rewritten as ``min - chroma + chroma * clamp(|((h + n + 1) mod 6) - 3|, 1, 2)``. Agrees with
    torchvision's and kornia's ``adjust_hue`` to float rounding (~2e-6) in about half their passes.
    """
    value = images.amax(1, keepdim=True)
    low = images.amin(1, keepdim=True)
    chroma = value - low
    red, green, blue = images[:, 0:1], images[:, 1:2], images[:, 2:3]
    hue_times_chroma = torch.where(
        red == value,
        green - blue,
        torch.where(green == value, torch.add(blue - red, chroma, alpha=2), torch.add(red - green, chroma, alpha=4)),
    )
    hue = torch.addcdiv((6 * shift).view(-1, 1, 1, 1), hue_times_chroma, chroma.clamp_min(1e-20))  # grey: 0 / tiny
    offsets = torch.arange(0, 12, 4, device=images.device, dtype=images.dtype).view(
        1, 3, 1, 1
    )  # n + 1 = 6, 4, 2 (mod 6)
    ramp = (hue + offsets).remainder_(6).sub_(3).abs_().clamp_(1, 2)
    return torch.addcmul(low - chroma, chroma, ramp)


def _gaussian_blur(images: torch.Tensor, sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Per-row Gaussian blur: kornia's ``gaussian_blur2d`` (separable, reflect padding), ``sigma`` (rows,).

    On the CPU the same filter runs as a sum of shifted slices, about twice as fast there as the grouped
    convolution on the few rows of a chunk (see ``ViewGenerator.forward``).
    """
    if images.device.type != "cpu":
        return gaussian_blur2d(images, (kernel_size, kernel_size), sigma[:, None].expand(-1, 2), border_type="reflect")
    taps = torch.arange(kernel_size, device=images.device, dtype=images.dtype) - kernel_size // 2
    weights = torch.exp(-(taps**2) / (2 * sigma[:, None] ** 2))
    weights = (weights / weights.sum(1, keepdim=True)).view(-1, kernel_size, 1, 1, 1)  # as kornia's gaussian kernel
    height, width, pad = images.shape[2], images.shape[3], kernel_size // 2
    padded = F.pad(images, (pad, pad, pad, pad), mode="reflect")
    across = padded[..., :width] * weights[:, 0]
    for tap in range(1, kernel_size):
        across.addcmul_(padded[..., tap : tap + width], weights[:, tap])
    down = across[..., :height, :] * weights[:, 0]
    for tap in range(1, kernel_size):
        down.addcmul_(across[..., tap : tap + height, :], weights[:, tap])
    return down


@dataclass(frozen=True)
class _SizeGroup:
    """The views of one output size (positions in the recipe list) and the operations their recipes apply."""

    size: int
    views: tuple[int, ...]
    blur_kernel_size: int
    jitter_ops: tuple[int, ...]
    grayscales: bool
    blurs: bool
    solarizes: bool


def _applied_operations(recipe_rows: list[list[float]]) -> tuple[tuple[int, ...], bool, bool, bool]:
    """The operations that some of these recipes apply (a jitter op: p > 0 and a range other than identity):
    jitter ops, greyscale, blur, solarisation."""
    identity = (1.0, 1.0, 1.0, 0.0)
    jitter_ops = tuple(
        op for op, name in enumerate(_JITTER_NAMES)
        if any(row[_C["jitter"]] > 0 and (row[_C[f"{name}_lo"]], row[_C[f"{name}_hi"]]) != (identity[op],) * 2 for row in recipe_rows)
    )  # fmt: skip
    return (
        jitter_ops,
        any(row[_C["grayscale"]] > 0 for row in recipe_rows),
        any(row[_C["blur"]] > 0 for row in recipe_rows),
        any(row[_C["solarize"]] > 0 for row in recipe_rows),
    )


def _row_parameters(
    draws: torch.Tensor, table: torch.Tensor, group: _SizeGroup, channels: int
) -> tuple[tuple[int, ...], dict[str, torch.Tensor]]:
    """The jitter ops to run and the per-row parameters of the operations after the crop, from ``draws``
    (n, _NUM_DRAWS) and the recipes' ``table`` rows (n, columns) of a size group's rows."""
    # Saturation and hue leave grey unchanged: a greyscale batch stays single-channel without them.
    jitter_ops = (
        group.jitter_ops if channels == 3 else tuple(op for op in group.jitter_ops if op in (_BRIGHTNESS, _CONTRAST))
    )
    rows = {}
    if jitter_ops:
        rows["jittered"] = draws[:, _U_JITTER] < table[:, _C["jitter"]]
        low = table[:, _C["brightness_lo"] : _C["hue_hi"] + 1 : 2]
        high = table[:, _C["brightness_hi"] : _C["hue_hi"] + 1 : 2]
        # (n, 4): brightness, contrast, saturation, hue
        rows["factors"] = low + draws[:, _U_FACTORS] * (high - low)
        keys = draws[:, _U_ORDER].clone()
        for op in set(range(4)) - set(jitter_ops):
            keys[:, op] = 2.0  # sorts after the draws in [0, 1)
        # (n, k): the operations in a random order per image
        rows["order"] = keys.argsort(dim=1)[:, : len(jitter_ops)]
    if group.grayscales and channels == 3:
        rows["grayscale"] = draws[:, _U_GRAYSCALE] < table[:, _C["grayscale"]]
    if group.blurs:
        rows["blur"] = draws[:, _U_BLUR] < table[:, _C["blur"]]
        sigma_lo, sigma_hi = table[:, _C["sigma_lo"]], table[:, _C["sigma_hi"]]
        rows["sigma"] = sigma_lo + draws[:, _U_SIGMA] * (sigma_hi - sigma_lo)
    if group.solarizes:
        rows["solarize"] = draws[:, _U_SOLARIZE] < table[:, _C["solarize"]]
    return jitter_ops, rows


def _row_groups(masks: list[torch.Tensor]) -> list[torch.Tensor]:
    """Indices of the True rows of each (n,) mask, all found at once (one device synchronisation)."""
    if not masks:
        return []
    stacked = torch.stack(masks)
    counts = stacked.sum(1).tolist()
    return list(stacked.nonzero()[:, 1].split(counts))


class ViewGenerator(nn.Module):
    """Make one augmented view per recipe from a uint8 batch, on the batch's device.

    Args:
        recipes: one :class:`ViewRecipe` per view (SimCLR: two of :func:`simclr_recipe`; BYOL:
            :func:`byol_recipes`; DINO: :func:`multi_crop_recipes`).
        image_size: side of the square views whose recipe has no ``size``.
        num_channels: channels the backbone expects.
        mean, std: per-channel normalisation (defaults: :func:`default_normalization`).

    Call: uint8 (B, C, H, W) with C in {1, 3} -> list of float32 (B, num_channels, S_v, S_v), one per
    recipe, in recipe order (S_v: the recipe's ``size``, else ``image_size``). Randomness comes from
    torch's global generator (of the batch's device): ``torch.manual_seed`` makes it reproducible.

    All views are made together, as one batch of ``len(recipes) * B`` images with per-image
    parameters (see the module docstring for each operation), one resampling (``grid_sample``) per
    output size (per chunk of images on the CPU). On an accelerator a call waits for the device
    once per output size, to find the images that each subset operation applies to (and kornia's
    blur reads its sigmas back).
    """

    def __init__(
        self,
        recipes: Sequence[ViewRecipe],
        image_size: int,
        num_channels: int = 3,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ):
        super().__init__()
        if not recipes:
            raise ValueError("ViewGenerator needs at least one ViewRecipe.")
        default_mean, default_std = default_normalization(num_channels)
        self.recipes = tuple(recipes)
        self.image_size = _check_size(image_size, "image_size")
        self.num_channels = num_channels
        self.view_sizes = tuple(
            self.image_size if recipe.size is None else _check_size(recipe.size, f"ViewRecipe.size (view {view})")
            for view, recipe in enumerate(self.recipes)
        )
        recipe_rows = [_recipe_row(recipe) for recipe in self.recipes]
        self.register_buffer("table", torch.tensor(recipe_rows, dtype=torch.float32), persistent=False)
        self.register_buffer("luma", torch.tensor(_LUMA, dtype=torch.float32).view(1, 1, 3), persistent=False)
        self.normalize = _Normalize(mean or default_mean, std or default_std)
        # Operations that some recipe applies (per size group: those that some recipe of the group applies;
        # the others are skipped there).
        self.jitter_ops, self.grayscales, self.blurs, self.solarizes = _applied_operations(recipe_rows)
        # sizes in order of first appearance
        self.groups = tuple(self._size_group(size, recipe_rows) for size in dict.fromkeys(self.view_sizes))

    def _size_group(self, size: int, recipe_rows: list[list[float]]) -> _SizeGroup:
        views = tuple(view for view, view_size in enumerate(self.view_sizes) if view_size == size)
        operations = _applied_operations([recipe_rows[view] for view in views])
        return _SizeGroup(size, views, _blur_kernel_size(size), *operations)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        if images.dim() != 4:
            raise ValueError(f"Expected a batch of images (B, C, H, W), got shape {tuple(images.shape)}.")
        batch, channels = images.shape[:2]
        match_channels(
            images[:0].float(), 3 if channels not in (1, 3) else self.num_channels
        )  # raises on a channel mismatch
        if self.table.device != images.device:
            self.to(images.device)
        views = len(self.recipes)
        # All parameters are drawn for all (image, view) rows at once; row b * V + v is view v of image b.
        # Every process draws the rows of the whole global batch (same seed, same stream) and keeps its
        # own: processes get different views, the same ones a single process would make for the
        # concatenated batch.
        draws = uniform_draws_of_this_process(batch * views, _NUM_DRAWS, images.device)
        out: list[torch.Tensor | None] = [None] * views
        for group in self.groups:
            if len(group.views) == views:  # one size: every row, as drawn
                group_draws, table = draws, self.table
            else:  # this size's rows b * V + v, in that order
                index = torch.as_tensor(group.views, device=images.device)
                group_draws = draws.view(batch, views, _NUM_DRAWS).index_select(1, index).flatten(0, 1)
                table = self.table.index_select(0, index)
            for view, result in zip(group.views, self._make_views(images, group, group_draws, table.repeat(batch, 1))):
                out[view] = result
        return out

    def _make_views(
        self, images: torch.Tensor, group: _SizeGroup, draws: torch.Tensor, table: torch.Tensor
    ) -> list[torch.Tensor]:
        """The views of one size group: ``draws`` and ``table`` (B * V_g, ...) rows b * V_g + j -> V_g (B, C', S, S)."""
        batch, channels, height, width = images.shape
        views, size = len(group.views), group.size
        top, left, h, w = _crop_boxes(draws, table, height, width)
        grid_x, grid_y = _crop_coordinates(
            top, left, h, w, draws[:, _U_FLIP] < table[:, _C["flip"]], size, height, width
        )

        jitter_ops, rows = _row_parameters(draws, table, group, channels)

        out = torch.empty((views, batch, self.num_channels, size, size), device=images.device, dtype=torch.float32)
        # On the CPU a few images at a time, so that their views stay in cache through all the operations;
        # on an accelerator the whole batch at once.
        step = (
            max(1, _CHUNK_ELEMENTS * torch.get_num_threads() // (views * channels * size * size))
            if images.device.type == "cpu"
            else max(batch, 1)
        )
        crops = torch.empty(
            (min(step, batch) * views, channels, size, size), device=images.device, dtype=torch.float32
        )
        for start in range(0, batch, step):
            stop = min(start + step, batch)
            part, x = slice(start * views, stop * views), crops[: (stop - start) * views]
            _resized_crops(to_unit_float(images[start:stop]), grid_x[part], grid_y[part], x)
            self._augment_rows(
                x, jitter_ops, {name: value[part] for name, value in rows.items()}, group.blur_kernel_size
            )
            self._normalize_into(x, out[:, start:stop])
        return list(out.unbind(0))

    def _augment_rows(
        self, x: torch.Tensor, jitter_ops: tuple[int, ...], rows: dict[str, torch.Tensor], blur_kernel_size: int
    ) -> None:
        """Colour jitter, greyscale, blur and solarisation of the crops ``x`` (rows, C, S, S) in place."""
        masks = []  # the rows of each subset operation, found together (one sync on an accelerator)
        if _HUE in jitter_ops:
            masks += [rows["jittered"] & (rows["order"][:, slot] == _HUE) for slot in range(len(jitter_ops))]
        masks += [rows[name] for name in ("grayscale", "blur", "solarize") if name in rows]
        groups = iter(_row_groups(masks))

        if jitter_ops:
            factors = rows["factors"]
            for slot in range(len(jitter_ops)):
                op = rows["order"][:, slot]
                if jitter_ops != (
                    _HUE,
                ):  # brightness, contrast or saturation on every row whose operation in this slot is one
                    factor = torch.where(
                        rows["jittered"] & (op != _HUE), factors.gather(1, op[:, None]).squeeze(1), 1.0
                    )
                    _blend_step(x, factor, (op == _CONTRAST).to(x.dtype), (op == _SATURATION).to(x.dtype), self.luma)
                if _HUE in jitter_ops:  # hue on the rows whose operation in this slot it is
                    hue_rows = next(groups)
                    if len(hue_rows):
                        x.index_copy_(0, hue_rows, _adjust_hue(x.index_select(0, hue_rows), factors[hue_rows, _HUE]))
        if "grayscale" in rows:
            grey_rows = next(groups)
            if len(grey_rows):
                x.index_copy_(0, grey_rows, rgb_to_grayscale(x.index_select(0, grey_rows)).expand(-1, 3, -1, -1))
        if "blur" in rows:
            blur_rows = next(groups)
            if len(blur_rows):
                x.index_copy_(
                    0,
                    blur_rows,
                    _gaussian_blur(x.index_select(0, blur_rows), rows["sigma"][blur_rows], blur_kernel_size),
                )
        if "solarize" in rows:
            solarize_rows = next(groups)
            if len(solarize_rows):
                picked = x.index_select(0, solarize_rows)
                x.index_copy_(
                    0, solarize_rows, torch.where(picked >= 0.5, 1 - picked, picked)
                )  # threshold 0.5, as in BYOL

    def _normalize_into(self, x: torch.Tensor, out: torch.Tensor) -> None:
        """``(x - mean) / std`` of the rows (b * V + v) into ``out`` (V, b, num_channels, S, S); channels matched."""
        if self.num_channels == 1 and x.shape[1] == 3:
            x = rgb_to_grayscale(x)
        x = x.view(out.shape[1], out.shape[0], *x.shape[1:]).transpose(0, 1)
        inv_std = 1 / self.normalize.std
        torch.addcmul(-self.normalize.mean * inv_std, x, inv_std, out=out)  # 1 -> 3 channels by broadcasting


class EvalTransform(nn.Module):
    """Deterministic preprocessing: uint8 (B, C, H, W) -> resized, channel-matched, normalised floats.

    Matches the saved image processor (bilinear resize to ``image_size``, rescale by 1/255,
    normalise with ``mean``/``std``).
    """

    def __init__(
        self,
        image_size: int,
        num_channels: int = 3,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ):
        super().__init__()
        default_mean, default_std = default_normalization(num_channels)
        self.image_size = image_size
        self.num_channels = num_channels
        self.normalize = _Normalize(mean or default_mean, std or default_std)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.normalize.to(images.device)
        return self.normalize(self.unit_images(images))

    @torch.no_grad()
    def unit_images(self, images: torch.Tensor) -> torch.Tensor:
        """The images before normalisation: resized, channel-matched, in [0, 1] (for methods that change pixels,
        e.g. the denoising autoencoder's corruptions)."""
        images = to_unit_float(images)
        if tuple(images.shape[-2:]) != (self.image_size, self.image_size):
            images = F.interpolate(
                images, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False, antialias=True
            )
        return match_channels(images, self.num_channels)


def simclr_view_generator(
    image_size: int, num_channels: int = 3, mean=None, std=None, color_jitter_strength: float = 1.0, **recipe_overrides
) -> ViewGenerator:
    """Two SimCLR views (:func:`simclr_recipe` at ``color_jitter_strength``), with optional
    :class:`ViewRecipe` field overrides (e.g. ``crop_scale=(0.2, 1.0)``)."""
    recipe = replace(simclr_recipe(image_size, color_jitter_strength), **recipe_overrides)
    return ViewGenerator([recipe, recipe], image_size, num_channels, mean, std)
