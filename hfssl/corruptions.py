"""Image corruptions of the denoising autoencoder (Vincent et al. 2008, "Extracting and Composing Robust
Features with Denoising Autoencoders", sec. 2.3 and 3; Vincent et al. 2010, sec. 4.2), on batches of images with
pixels in [0, 1], drawn on the batch's device.

Each function takes its uniform draws as an argument (one row per image), so the caller decides where they
come from: :class:`hfssl.transforms.CorruptionTransform` takes this process's share of the global batch's draws,
so N processes corrupt what one process would. Counts are exact: "a fraction v of the pixels" hides
``round(v x H x W)`` pixels of every image, all channels of a pixel together.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from .augment import EvalTransform
from .transforms import BatchTransform, normal_from_uniform, uniform_draws_of_this_process

CORRUPTIONS = ("gaussian", "masking", "salt_and_pepper", "erasing")
ERASING_RATIO = (0.3, 3.3)  # aspect ratios of the erased rectangle, as torchvision's RandomErasing


def draws_needed(corruption: str, height: int, width: int) -> int:
    """Uniform draws per image that :func:`corrupt` takes for ``corruption`` on ``height`` x ``width`` images."""
    pixels = height * width
    return {"gaussian": pixels, "masking": pixels, "salt_and_pepper": 2 * pixels, "erasing": 4}[corruption]


def gaussian_noise(images: torch.Tensor, draws: torch.Tensor, std: float) -> torch.Tensor:
    """Additive isotropic Gaussian noise N(0, std^2) on every pixel (the same on its channels), clipped to [0, 1].

    ``draws``: (B, H * W) uniforms, made normal by the inverse CDF."""
    normal = normal_from_uniform(draws)
    return (images + std * normal.view(images.shape[0], 1, *images.shape[2:])).clamp(0, 1)


def chosen_pixels(draws: torch.Tensor, fraction: float) -> torch.Tensor:
    """(B, H * W) bool: the ``round(fraction x H x W)`` pixels of largest draw in each row."""
    count = int(fraction * draws.shape[1] + 0.5)
    chosen = torch.zeros_like(draws, dtype=torch.bool)
    if count:
        chosen.scatter_(1, draws.topk(count, dim=1).indices, True)
    return chosen


def masking_noise(images: torch.Tensor, draws: torch.Tensor, fraction: float) -> torch.Tensor:
    """Masking noise: a random ``fraction`` of each image's pixels forced to 0. ``draws``: (B, H * W)."""
    hidden = chosen_pixels(draws, fraction).view(images.shape[0], 1, *images.shape[2:])
    return images.masked_fill(hidden, 0.0)


def salt_and_pepper_noise(images: torch.Tensor, draws: torch.Tensor, fraction: float) -> torch.Tensor:
    """Salt-and-pepper noise: a random ``fraction`` of each image's pixels set to 0 or 1 by a fair coin.
    ``draws``: (B, 2 * H * W), the pixels' draws then the coins."""
    pixels = images.shape[2] * images.shape[3]
    shape = (images.shape[0], 1, *images.shape[2:])
    hit = chosen_pixels(draws[:, :pixels], fraction).view(shape)
    salt = (draws[:, pixels:] < 0.5).view(shape).to(images.dtype)
    return torch.where(hit, salt, images)


def erasing_boxes(draws: torch.Tensor, height: int, width: int, scale: tuple[float, float]) -> torch.Tensor:
    """(B, 4) ``top, left, box_height, box_width`` of one rectangle per image: area share uniform in ``scale``,
    log aspect ratio uniform in :data:`ERASING_RATIO`, cut to the image, placed uniformly.
    ``draws``: (B, 4) uniforms (area, ratio, top, left)."""
    area = height * width * (scale[0] + (scale[1] - scale[0]) * draws[:, 0])
    log_low, log_high = math.log(ERASING_RATIO[0]), math.log(ERASING_RATIO[1])
    ratio = torch.exp(log_low + (log_high - log_low) * draws[:, 1])
    box_height = (area * ratio).sqrt().round().clamp(1, height)
    box_width = (area / ratio).sqrt().round().clamp(1, width)
    top = (draws[:, 2] * (height - box_height + 1)).floor()
    left = (draws[:, 3] * (width - box_width + 1)).floor()
    return torch.stack([top, left, box_height, box_width], dim=1).long()


def random_erasing(images: torch.Tensor, draws: torch.Tensor, scale: tuple[float, float]) -> torch.Tensor:
    """One random rectangle of each image set to 0 (Zhong et al. 2020's random erasing, as a corruption).
    ``draws``: (B, 4), see :func:`erasing_boxes`."""
    height, width = images.shape[2:]
    top, left, box_height, box_width = erasing_boxes(draws, height, width, scale).unbind(1)
    rows = torch.arange(height, device=images.device).view(1, height, 1)
    columns = torch.arange(width, device=images.device).view(1, 1, width)
    inside_rows = (rows >= top.view(-1, 1, 1)) & (rows < (top + box_height).view(-1, 1, 1))
    inside_columns = (columns >= left.view(-1, 1, 1)) & (columns < (left + box_width).view(-1, 1, 1))
    return images.masked_fill((inside_rows & inside_columns).unsqueeze(1), 0.0)


def corrupt(
    images: torch.Tensor,
    draws: torch.Tensor,
    corruption: str,
    noise_std: float = 0.3,
    fraction: float = 0.25,
    erasing_scale: tuple[float, float] = (0.02, 0.33),
) -> torch.Tensor:
    """``images`` (B, C, H, W) in [0, 1] corrupted by ``corruption`` (one of :data:`CORRUPTIONS`), with
    ``draws`` (B, :func:`draws_needed`) uniforms; the clean images are left as they are."""
    if corruption == "gaussian":
        return gaussian_noise(images, draws, noise_std)
    if corruption == "masking":
        return masking_noise(images, draws, fraction)
    if corruption == "salt_and_pepper":
        return salt_and_pepper_noise(images, draws, fraction)
    if corruption == "erasing":
        return random_erasing(images, draws, erasing_scale)
    raise ValueError(f"Unknown corruption {corruption!r}; one of {CORRUPTIONS}.")


class CorruptionTransform(BatchTransform):
    """The denoising autoencoder's batch transform: ``{"pixel_values": uint8 (B, C, H, W), ...}`` ->
    ``{"pixel_values": normalised corrupted images (B, C', S, S), "clean": the clean images in [0, 1]}``.

    Args:
        image_transform: resizes, matches channels and normalises (:class:`hfssl.augment.EvalTransform`; its
            ``unit_images`` gives the clean images).
        corruption, noise_std, fraction, erasing_scale: see :func:`corrupt`.
    """

    def __init__(
        self,
        image_transform: EvalTransform,
        corruption: str,
        noise_std: float = 0.3,
        fraction: float = 0.25,
        erasing_scale: tuple[float, float] = (0.02, 0.33),
    ):
        if corruption not in CORRUPTIONS:
            raise ValueError(f"Unknown corruption {corruption!r}; one of {CORRUPTIONS}.")
        self.image_transform = image_transform
        self.corruption = corruption
        self.settings = dict(noise_std=noise_std, fraction=fraction, erasing_scale=tuple(erasing_scale))

    def corrupt(self, clean: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Clean images (B, C, S, S) in [0, 1] -> corrupted ones, drawing from this process's share of the
        global batch's stream (:func:`hfssl.transforms.uniform_draws_of_this_process`), or from ``generator``
        (a CPU generator, e.g. seeded for a picture that shows the same corruption each time)."""
        columns = draws_needed(self.corruption, *clean.shape[2:])
        if generator is None:
            draws = uniform_draws_of_this_process(clean.shape[0], columns, clean.device)
        else:
            draws = torch.rand(clean.shape[0], columns, generator=generator).to(clean.device)
        return corrupt(clean, draws, self.corruption, **self.settings)

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        clean = self.image_transform.unit_images(batch["pixel_values"])
        normalize = self.image_transform.normalize.to(clean.device)
        return {"pixel_values": normalize(self.corrupt(clean)), "clean": clean}
