"""What every vision SSL model shares: a nested transformers backbone, pooled features, export.

A method's config subclasses :class:`VisionSSLConfig` (which nests the backbone's config as
``backbone_config``) and its model subclasses :class:`VisionSSLPreTrainedModel` (which builds
``self.backbone`` from it). One level of inheritance, nothing more.
"""

from __future__ import annotations

import os

import torch
from transformers import AutoConfig, AutoImageProcessor, PreTrainedConfig, PreTrainedModel
from transformers.configuration_utils import SubConfigSpec

from ..augment import default_normalization
from ..backbones import POOLING_CHOICES, backbone_feature_dim, build_backbone, pooled_features
from .checks import CheckedConfig, require_choice, require_int
from .export import saved_preprocessor


class VisionSSLConfig(CheckedConfig):
    """Base config of vision SSL models.

    Args:
        backbone_config: config (or dict with ``model_type``) of any transformers vision encoder;
            defaults to a ViT-Base config.
        pooling: how the backbone's output becomes one (D,) vector per image: ``"auto"``,
            ``"cls"``, ``"mean"`` or ``"pooler"`` (see :mod:`hfssl.backbones`).
        image_size: side of the square training views (the recipe's ``--image_size``); a method's
            batch transform makes its views from it (multi-crop methods derive their local size).
    """

    sub_configs_defaults = {"backbone_config": SubConfigSpec(config_class=AutoConfig, model_type="vit")}

    backbone_config: dict | PreTrainedConfig | None = None
    pooling: str = "auto"
    image_size: int = 224

    def check_ranges(self) -> None:
        """``pooling`` is one of :data:`hfssl.backbones.POOLING_CHOICES`; ``image_size`` an int >= 1."""
        super().check_ranges()
        require_choice(self, "pooling", POOLING_CHOICES)
        require_int(self, "image_size", 1, "the side of the views in pixels")

    @property
    def num_channels(self) -> int:
        """Channels the backbone takes (3 unless its config says otherwise)."""
        return getattr(self.backbone_config, "num_channels", 3)


def image_normalization(image_processor, num_channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The (mean, std) of ``image_processor`` (the one saved beside the checkpoint), else the default
    for ``num_channels`` (:func:`hfssl.augment.default_normalization`)."""
    mean, std = getattr(image_processor, "image_mean", None), getattr(image_processor, "image_std", None)
    if mean is None or std is None:
        return default_normalization(num_channels)
    return tuple(mean), tuple(std)


class VisionSSLPreTrainedModel(PreTrainedModel):
    """Base class: ``self.backbone`` is a plain transformers model built from ``config.backbone_config``."""

    main_input_name = "pixel_values"
    base_model_prefix = "hfssl"
    supports_gradient_checkpointing = True
    accepts_loss_kwargs = False  # forward returns a mean loss; Trainer must not rescale it

    def __init__(self, config: VisionSSLConfig):
        super().__init__(config)
        self.backbone = build_backbone(config.backbone_config, config.pooling)
        self.feature_dim = backbone_feature_dim(config.backbone_config)

    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features of normalised images: (B, C, H, W) -> (B, D)."""
        return pooled_features(self.backbone, pixel_values, self.config.pooling)

    def get_input_embeddings(self) -> None:
        """None: an image model has no token embeddings (accelerate's FSDP2 setup asks for them)."""
        return None

    @property
    def exported_backbone_name(self) -> str:
        """The attribute holding the backbone :meth:`export_backbone` writes: ``"backbone"`` (the trained,
        student network), or ``"teacher_backbone"`` for methods with an EMA teacher whose config sets
        ``export_teacher`` (BYOL, MoCo, DINO: the teacher is a network of the same architecture)."""
        return "teacher_backbone" if getattr(self.config, "export_teacher", False) else "backbone"

    @property
    def exported_network(self) -> str:
        """``"student"`` or ``"teacher"``: which network's backbone is exported (the model card says it)."""
        return "teacher" if self.exported_backbone_name == "teacher_backbone" else "student"

    def export_backbone(self, save_directory: str | os.PathLike, image_processor=None, state_dict=None) -> None:
        """Write the backbone alone (``self.<exported_backbone_name>``) as a plain transformers checkpoint,
        with ``image_processor`` beside it (by default, the one saved in the checkpoint directory this model
        was loaded from): ``transformers.AutoModel.from_pretrained(save_directory)`` loads it in a process that
        never imported hfssl. ``state_dict``: that backbone's full weights when this model's are sharded (FSDP)."""
        getattr(self, self.exported_backbone_name).save_pretrained(save_directory, state_dict=state_dict)
        if image_processor is None:
            image_processor = saved_preprocessor(self, AutoImageProcessor)
        if image_processor is not None:
            image_processor.save_pretrained(save_directory)

    @torch.no_grad()
    def _init_weights(self, module):
        """Heads only: the backbone initialises itself with its own scheme."""
        if isinstance(module, torch.nn.Linear):
            torch.nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, (torch.nn.BatchNorm1d, torch.nn.LayerNorm)):
            if module.weight is not None:
                torch.nn.init.ones_(module.weight)
                torch.nn.init.zeros_(module.bias)
