"""Build a method's model from recipe arguments (backbone by type or checkpoint, with overrides)."""

from __future__ import annotations

from ..backbones import apply_config_overrides, build_backbone, build_backbone_config, is_checkpoint


def build_vision_ssl_model(
    method,
    backbone: str,
    backbone_config_overrides: str | None = None,
    config_overrides: str | None = None,
    pooling: str = "auto",
    image_size: int | None = None,
):
    """A fresh ``method.model_class`` whose backbone is ``backbone`` (model type or checkpoint).

    A checkpoint's weights are loaded into the backbone; the heads start from their own init.
    """
    backbone_config = build_backbone_config(backbone, backbone_config_overrides, image_size)
    config = method.config_class(backbone_config=backbone_config, pooling=pooling)
    config = apply_config_overrides(config, config_overrides)
    model = method.model_class(config)
    if is_checkpoint(backbone):
        model.backbone.load_state_dict(
            build_backbone(backbone_config, config.pooling, checkpoint=backbone).state_dict()
        )
    return model
