"""Batched view generation on the device, with kornia.

The DataLoader yields uint8 images (B, C, H, W); everything here runs where the model runs, on
the whole batch at once. A :class:`ViewRecipe` describes the random augmentation of one view;
:class:`ViewGenerator` turns a uint8 batch into normalised float views for the backbone, and
:class:`EvalTransform` is its deterministic counterpart for evaluation (resize + normalise), the
same preprocessing as the image processor saved beside every checkpoint.

Channel rule: colour operations run on three channels (greyscale input is repeated); the result
is converted to the backbone's ``num_channels`` (3 -> 1 by luminance, 1 -> 3 by repetition).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import kornia.augmentation as K
import torch
import torch.nn.functional as F
from kornia.color import rgb_to_grayscale
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
GREYSCALE_MEAN = (0.5,)
GREYSCALE_STD = (0.5,)


@dataclass(frozen=True)
class ViewRecipe:
    """Random augmentation of one view. Probabilities are per image."""

    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_probability: float = 0.5
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    color_jitter_probability: float = 0.8
    grayscale_probability: float = 0.2
    blur_probability: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_probability: float = 0.0


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


def default_normalization(num_channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """ImageNet statistics for 3-channel backbones, 0.5/0.5 for single-channel ones."""
    return (IMAGENET_MEAN, IMAGENET_STD) if num_channels == 3 else (GREYSCALE_MEAN * num_channels, GREYSCALE_STD * num_channels)


def to_unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, C, H, W) in [0, 255] -> float32 in [0, 1]; float input is assumed to be in [0, 1]."""
    if images.dim() != 4:
        raise ValueError(f"Expected a batch of images (B, C, H, W), got shape {tuple(images.shape)}.")
    return images.float() / 255.0 if images.dtype == torch.uint8 else images.float()


def match_channels(images: torch.Tensor, num_channels: int) -> torch.Tensor:
    """Convert (B, C, H, W) to ``num_channels`` channels: 1 -> 3 repeats, 3 -> 1 takes luminance."""
    channels = images.shape[1]
    if channels == num_channels:
        return images
    if channels == 1:
        return images.expand(-1, num_channels, -1, -1)
    if channels == 3 and num_channels == 1:
        return rgb_to_grayscale(images)
    raise ValueError(f"Cannot feed {channels}-channel images to a {num_channels}-channel backbone; set num_channels in --backbone_config_overrides.")


class _Normalize(nn.Module):
    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.mean) / self.std


def _build_augmentation(recipe: ViewRecipe, image_size: int) -> K.AugmentationSequential:
    """The kornia pipeline of one view; operations whose probability is 0 are left out (they cost time)."""
    kernel_size = max(3, int(0.1 * image_size) // 2 * 2 + 1)  # odd, ~10% of the side
    steps = [
        (1.0, K.RandomResizedCrop((image_size, image_size), scale=recipe.crop_scale, ratio=recipe.crop_ratio)),
        (recipe.flip_probability, K.RandomHorizontalFlip(p=recipe.flip_probability)),
        (
            recipe.color_jitter_probability,
            K.ColorJitter(recipe.brightness, recipe.contrast, recipe.saturation, recipe.hue, p=recipe.color_jitter_probability),
        ),
        (recipe.grayscale_probability, K.RandomGrayscale(p=recipe.grayscale_probability)),
        (recipe.blur_probability, K.RandomGaussianBlur((kernel_size, kernel_size), recipe.blur_sigma, p=recipe.blur_probability)),
        # thresholds=0, additions=0: the threshold is fixed at 0.5 as in BYOL
        (recipe.solarize_probability, K.RandomSolarize(thresholds=0.0, additions=0.0, p=recipe.solarize_probability)),
    ]
    return K.AugmentationSequential(*(step for probability, step in steps if probability > 0))


class ViewGenerator(nn.Module):
    """Make one augmented view per recipe from a uint8 batch, on the batch's device.

    Args:
        recipes: one :class:`ViewRecipe` per view (SimCLR: two of :func:`simclr_recipe`).
        image_size: side of the square views.
        num_channels: channels the backbone expects.
        mean, std: per-channel normalisation (defaults: :func:`default_normalization`).

    Call: uint8 (B, C, H, W) with C in {1, 3} -> list of float32 (B, num_channels, S, S), one per
    recipe. Randomness comes from torch's global generator: ``torch.manual_seed`` makes it
    reproducible.
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
        self.image_size = image_size
        self.num_channels = num_channels
        self.augmentations = nn.ModuleList(_build_augmentation(recipe, image_size) for recipe in recipes)
        self.normalize = _Normalize(mean or default_mean, std or default_std)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        colour = match_channels(to_unit_float(images), 3)
        self.normalize.to(images.device)
        return [self.normalize(match_channels(augment(colour).clamp_(0, 1), self.num_channels)) for augment in self.augmentations]


class EvalTransform(nn.Module):
    """Deterministic preprocessing: uint8 (B, C, H, W) -> resized, channel-matched, normalised floats.

    Matches the saved image processor (bilinear resize to ``image_size``, rescale by 1/255,
    normalise with ``mean``/``std``).
    """

    def __init__(self, image_size: int, num_channels: int = 3, mean: Sequence[float] | None = None, std: Sequence[float] | None = None):
        super().__init__()
        default_mean, default_std = default_normalization(num_channels)
        self.image_size = image_size
        self.num_channels = num_channels
        self.normalize = _Normalize(mean or default_mean, std or default_std)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        images = to_unit_float(images)
        if tuple(images.shape[-2:]) != (self.image_size, self.image_size):
            images = F.interpolate(images, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False, antialias=True)
        self.normalize.to(images.device)
        return self.normalize(match_channels(images, self.num_channels))


def simclr_view_generator(image_size: int, num_channels: int = 3, mean=None, std=None, **recipe_overrides) -> ViewGenerator:
    """Two SimCLR views (:func:`simclr_recipe`), with optional recipe field overrides."""
    recipe = replace(simclr_recipe(image_size), **recipe_overrides)
    return ViewGenerator([recipe, recipe], image_size, num_channels, mean, std)
