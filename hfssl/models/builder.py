"""Build a method's model from recipe arguments (backbone by type or checkpoint, with overrides)."""

from __future__ import annotations

import logging
from typing import NamedTuple

from ..backbones import (
    AUTO_BACKBONE,
    BACKBONE_PRESETS,
    apply_config_overrides,
    build_backbone,
    build_backbone_config,
    choose_auto_backbone,
    is_checkpoint,
)

logger = logging.getLogger(__name__)


class VisionBackboneChoice(NamedTuple):
    """The backbone a vision recipe builds: its name (preset, model type or checkpoint), the side of the
    training views, and the input channels to give it (None: the backbone's own)."""

    backbone: str
    image_size: int
    num_channels: int | None


def resolve_vision_backbone(
    backbone: str,
    image_size: int | None,
    native_image_size: int,
    num_channels: int,
    num_images: int | None,
    vit_only: bool = False,
    backbone_channels: int | None = None,
) -> VisionBackboneChoice:
    """``--backbone`` and ``--image_size`` as given, with ``auto`` (and a missing size) picked from the data
    (:func:`hfssl.backbones.choose_auto_backbone`, logged in one line; ``vit_only`` for methods that need a ViT,
    whose model class says ``needs_vit_backbone``). Presets take the data's channels; model types and checkpoints
    keep their own (``num_channels=1`` in the overrides for greyscale). ``backbone_channels``: the channels a method's
    backbone reads whatever the data's (colorization's L channel: 1, the class's ``backbone_channels``), for presets
    and model types."""
    channels = backbone_channels or num_channels
    choice = choose_auto_backbone(native_image_size, channels, num_images, vit_only=vit_only)
    if backbone == AUTO_BACKBONE:
        logger.info(choice.message if image_size is None else f"{choice.message} (--image_size {image_size} kept)")
        return VisionBackboneChoice(choice.preset, image_size or choice.image_size, choice.num_channels)
    if image_size is None:
        logger.info(
            "--image_size %d picked from the data (%d px images; set --image_size N to change it).",
            choice.image_size,
            native_image_size,
        )
        image_size = choice.image_size
    if backbone_channels is not None and not is_checkpoint(backbone):
        return VisionBackboneChoice(backbone, image_size, backbone_channels)
    return VisionBackboneChoice(backbone, image_size, num_channels if backbone in BACKBONE_PRESETS else None)


def check_method_fits_data(model_class, num_channels: int, description: str = "the data") -> None:
    """Refuse data a method cannot learn from, before anything is built: greyscale images for a method that predicts
    colour (its class says ``needs_colour_images``)."""
    if getattr(model_class, "needs_colour_images", False) and num_channels != 3:
        raise ValueError(
            f"{model_class.__name__} learns by predicting colour, and the training images are greyscale "
            f"({num_channels} channel; {description}): there is no colour to predict. Train it on colour images (RGB; e.g. "
            "--train_dir ../shared/data/emoji-captions), or pick a method that works on greyscale."
        )


def build_vision_ssl_model(
    method,
    backbone: str,
    backbone_config_overrides: str | None = None,
    config_overrides: str | None = None,
    pooling: str = "auto",
    image_size: int | None = None,
    num_channels: int | None = None,
    num_images: int | None = None,
):
    """A fresh ``method.model_class`` whose backbone is ``backbone`` (model type or checkpoint).

    The config takes the method's defaults, then what suits a training set of ``num_images`` images at the
    config's image size (``config.sized_for_data``, logged), then ``config_overrides``, which win. A checkpoint's
    weights are loaded into the backbone; the heads start from their own init.
    """
    backbone_config = build_backbone_config(backbone, backbone_config_overrides, image_size, num_channels)
    extra = {} if image_size is None else {"image_size": image_size}
    config = method.config_class(backbone_config=backbone_config, pooling=pooling, **extra)
    sized = config.sized_for_data(num_images) if hasattr(config, "sized_for_data") else {}
    if sized:
        logger.info(
            "%s sized for the data (%s training images of %d px; --config_overrides sets other values): %s",
            type(config).__name__,
            "unknown" if num_images is None else f"{num_images:,}",
            config.image_size,
            ", ".join(f"{key}={value}" for key, value in sized.items()),
        )
        config = apply_config_overrides(config, sized)
    config = apply_config_overrides(config, config_overrides)
    model = method.model_class(config)
    if is_checkpoint(backbone):
        model.backbone.load_state_dict(
            build_backbone(backbone_config, config.pooling, checkpoint=backbone).state_dict()
        )
    return model
