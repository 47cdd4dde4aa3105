"""The image processor saved beside every vision checkpoint, and the on-device transform it implies.

Training and evaluation preprocess on the device (:class:`hfssl.augment.EvalTransform`); the
saved processor does the same on PIL images/arrays for users of the checkpoint:
``AutoImageProcessor.from_pretrained(dir)`` resizes to the training size, rescales to [0, 1],
normalises with the training statistics and, for three-channel backbones, converts greyscale to
RGB.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from transformers import AutoImageProcessor
from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

from .augment import EvalTransform, default_normalization


def make_image_processor(
    image_size: int, num_channels: int = 3, mean: Sequence[float] | None = None, std: Sequence[float] | None = None
) -> ViTImageProcessorPil:
    """A transformers image processor equivalent to ``EvalTransform(image_size, num_channels, mean, std)``."""
    default_mean, default_std = default_normalization(num_channels)
    return ViTImageProcessorPil(
        do_resize=True,
        size={"height": image_size, "width": image_size},
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=list(mean or default_mean),
        image_std=list(std or default_std),
        do_convert_rgb=num_channels == 3,
    )


def eval_transform_from_pretrained(
    model_dir: str | os.PathLike, num_channels: int, image_size: int | None = None
) -> EvalTransform:
    """The on-device :class:`EvalTransform` matching the image processor saved in ``model_dir``.

    Without a saved processor, ``image_size`` is required and the default normalisation is used.
    """
    try:
        processor = AutoImageProcessor.from_pretrained(model_dir)
    except (OSError, ValueError):
        if image_size is None:
            raise ValueError(
                f"{model_dir} has no image processor (preprocessor_config.json); pass --image_size."
            ) from None
        return EvalTransform(image_size, num_channels)
    size = processor.size
    side = image_size or size.get("height") or size.get("shortest_edge")
    return EvalTransform(side, num_channels, processor.image_mean, processor.image_std)
