#!/usr/bin/env python
"""Views/s of the view generator: the former kornia ``AugmentationSequential`` pipeline (kept below
as the reference) against :class:`hfssl.augment.ViewGenerator`, measured in the same run.

    python benchmarks/augment_speed.py --device cpu --threads 2
    python benchmarks/augment_speed.py --device cuda --configs 256x32,256x96,256x224
    python benchmarks/augment_speed.py --device cuda --configs 64x224 --views multi_crop --local_size 96

Each call makes the views of a uint8 batch (B, C, S, S): two SimCLR views of S pixels, or with
``--views multi_crop`` DINO's 2 global crops of S pixels and ``--num_local_crops`` local crops of
``--local_size`` pixels (:func:`hfssl.augment.multi_crop_recipes`). Old and new calls alternate so
that both see the same machine load, and the median over ``--repeats`` calls is reported. Prints a
Markdown table.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Sequence

import kornia
import kornia.augmentation as K
import torch
from torch import nn

from hfssl.augment import (
    ViewGenerator,
    ViewRecipe,
    default_normalization,
    match_channels,
    multi_crop_recipes,
    simclr_recipe,
    to_unit_float,
)


# ----------------------------------------------------------------------------------------------
# Reference: the kornia pipeline hfssl.augment used before (one K.AugmentationSequential per view).
def build_kornia_augmentation(recipe: ViewRecipe, image_size: int) -> K.AugmentationSequential:
    kernel_size = max(3, int(0.1 * image_size) // 2 * 2 + 1)  # odd, ~10% of the side
    steps = [
        (1.0, K.RandomResizedCrop((image_size, image_size), scale=recipe.crop_scale, ratio=recipe.crop_ratio)),
        (recipe.flip_probability, K.RandomHorizontalFlip(p=recipe.flip_probability)),
        (
            recipe.color_jitter_probability,
            K.ColorJitter(
                recipe.brightness, recipe.contrast, recipe.saturation, recipe.hue, p=recipe.color_jitter_probability
            ),
        ),
        (recipe.grayscale_probability, K.RandomGrayscale(p=recipe.grayscale_probability)),
        (
            recipe.blur_probability,
            K.RandomGaussianBlur((kernel_size, kernel_size), recipe.blur_sigma, p=recipe.blur_probability),
        ),
        (recipe.solarize_probability, K.RandomSolarize(thresholds=0.0, additions=0.0, p=recipe.solarize_probability)),
    ]
    return K.AugmentationSequential(*(step for probability, step in steps if probability > 0))


class KorniaViewGenerator(nn.Module):
    def __init__(self, recipes: Sequence[ViewRecipe], image_size: int, num_channels: int = 3):
        super().__init__()
        mean, std = default_normalization(num_channels)
        self.num_channels = num_channels
        self.augmentations = nn.ModuleList(
            build_kornia_augmentation(recipe, recipe.size or image_size) for recipe in recipes
        )
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        colour = match_channels(to_unit_float(images), 3)
        return [
            (match_channels(augment(colour).clamp_(0, 1), self.num_channels) - self.mean) / self.std
            for augment in self.augmentations
        ]


# ----------------------------------------------------------------------------------------------
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def alternate(functions: dict, device: torch.device, repeats: int, warmup: int) -> dict[str, float]:
    """Median seconds per call of each function, the calls interleaved so that they share the machine's load."""
    for fn in functions.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, fn in functions.items():
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def local_size(args, size: int) -> int:
    return args.local_size or max(1, round(size * 96 / 224))  # DINO's 96 px local crops of 224 px images


def view_recipes(args, size: int) -> list[ViewRecipe]:
    if args.views == "simclr":
        return [simclr_recipe(size)] * 2
    return multi_crop_recipes(size, local_size(args, size), args.num_local_crops)


def describe(args) -> str:
    if args.views == "simclr":
        return "two SimCLR views"
    local = f"{args.local_size} px" if args.local_size else "96/224 of the size"
    return f"DINO multi-crop views (2 global + {args.num_local_crops} local crops of {local})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--configs", default="256x32,256x96,64x224", help="comma-separated BATCHxSIZE")
    parser.add_argument("--channels", type=int, default=3, choices=[1, 3], help="channels of the uint8 input")
    parser.add_argument("--views", default="simclr", choices=["simclr", "multi_crop"])
    parser.add_argument(
        "--local_size", type=int, default=None, help="multi_crop: local crop side (default: 96/224 of SIZE)"
    )
    parser.add_argument("--num_local_crops", type=int, default=6, help="multi_crop: local crops per image")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    cpu = f"{platform.processor() or platform.machine()}, {args.threads} threads"
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu
    print(
        f"torch {torch.__version__}, kornia {kornia.__version__}, {device_name}; {describe(args)} per call, "
        f"median of {args.repeats} alternating calls\n"
    )
    print(
        "| batch | size | kornia pipeline ms/call | ViewGenerator ms/call | kornia views/s | ViewGenerator views/s | speedup |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for config in args.configs.split(","):
        batch, size = (int(value) for value in config.lower().split("x"))
        recipes = view_recipes(args, size)
        old = KorniaViewGenerator(recipes, size).to(device)
        new = ViewGenerator(recipes, size).to(device)
        images = torch.randint(0, 256, (batch, args.channels, size, size), dtype=torch.uint8, device=device)
        seconds = alternate(
            {"old": lambda: old(images), "new": lambda: new(images)}, device, args.repeats, args.warmup
        )
        views = len(recipes) * batch
        print(
            f"| {batch} | {size} | {seconds['old'] * 1e3:.1f} | {seconds['new'] * 1e3:.1f} | {views / seconds['old']:.0f} | "
            f"{views / seconds['new']:.0f} | {seconds['old'] / seconds['new']:.1f}x |",
            flush=True,
        )


if __name__ == "__main__":
    main()
