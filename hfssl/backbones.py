"""Any transformers vision encoder as a backbone, and one rule for its pooled features.

A backbone is named by ``--backbone``: either a transformers model type (``vit``, ``resnet``,
``convnext``, ``swin``, ...), built from its default config plus ``--backbone_config_overrides``,
or a checkpoint (a local directory or a Hub id), whose config and weights are loaded.

Pooled features, shape (B, D), follow one documented rule (``pooling``):

* ``"cls"``: the first token of ``last_hidden_state`` (ViT-family models; already layer-normed).
* ``"mean"``: the mean over tokens (B, N, D) or over the spatial map (B, C, H, W).
* ``"pooler"``: the model's ``pooler_output``, flattened (ResNet's global average pool,
  ConvNeXt's pooled-and-normed features, Swin's average pool).
* ``"auto"`` (default): ``"cls"`` for model types with a CLS token (:data:`CLS_TOKEN_MODEL_TYPES`),
  else ``"pooler"`` when the model returns a ``pooler_output``, else ``"mean"``. BEiT and
  data2vec-vision with ``use_mean_pooling`` (their default) take ``"pooler"``: their final layer
  norm then sits in the pooler (mean of the patch tokens, normed), and the CLS token is not normed.
"""

from __future__ import annotations

import ast
import inspect
import json
import os
import re

import torch
from transformers import AutoConfig, AutoModel, PreTrainedConfig, PreTrainedModel
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

POOLING_CHOICES = ("auto", "cls", "mean", "pooler")

CLS_TOKEN_MODEL_TYPES = frozenset(
    {"vit", "deit", "beit", "data2vec-vision", "dinov2", "dinov2_with_registers", "vit_msn", "dinov3_vit"}
)


def parse_config_overrides(overrides: str | None) -> dict:
    """Parse ``"hidden_size=64,num_hidden_layers=4,hidden_sizes=[32,64]"`` into a dict.

    Values are read as JSON or Python literals (ints, floats, booleans, lists), else kept as
    strings. Commas inside brackets do not split.
    """
    if not overrides:
        return {}
    parsed = {}
    for item in re.split(r",(?![^\[\(]*[\]\)])", overrides):
        if not item.strip():
            continue
        if "=" not in item:
            raise ValueError(
                f"Config override {item!r} is not of the form key=value (e.g. 'hidden_size=64,num_hidden_layers=4')."
            )
        key, value = (part.strip() for part in item.split("=", 1))
        parsed[key] = _parse_value(value)
    return parsed


def _parse_value(text: str):
    for parse in (json.loads, ast.literal_eval):
        try:
            return parse(text)
        except (ValueError, SyntaxError):
            continue
    return text


def apply_config_overrides(config: PreTrainedConfig, overrides: str | dict | None) -> PreTrainedConfig:
    """A copy of ``config`` rebuilt with the overrides (a string or dict); unknown keys are an error.

    The config is re-instantiated rather than patched, so fields derived in its constructor
    (e.g. a ResNet's ``stage_names`` from ``depths``) stay consistent and save/load round-trips.
    """
    values = parse_config_overrides(overrides) if isinstance(overrides, str) or overrides is None else dict(overrides)
    if not values:
        return config
    for key in values:
        if not hasattr(config, key):
            raise ValueError(
                f"{type(config).__name__} has no attribute {key!r}; check the spelling in the config overrides "
                f"(known attributes include: {', '.join(sorted(config.to_dict())[:40])}, ...)."
            )
    rebuilt = {**config.to_dict(), **values}
    for derived in ("stage_names", "out_features", "out_indices"):
        if derived not in values:
            rebuilt.pop(derived, None)
    return type(config).from_dict(rebuilt)


def is_checkpoint(backbone: str) -> bool:
    """A local directory or a Hub id ("org/name") rather than a model type. A model type wins over
    a folder of the same name in the working directory (a run's output folder is often called
    "bert"); write "./bert" to mean the folder."""
    if backbone in CONFIG_MAPPING:
        return False
    return os.path.isdir(backbone) or "/" in backbone


def build_backbone_config(
    backbone: str, overrides: str | dict | None = None, image_size: int | None = None
) -> PreTrainedConfig:
    """Config of the backbone named by ``backbone`` (model type or checkpoint), with overrides.

    For a model type, ``image_size`` is written into configs that have that attribute (ViT-style
    position embeddings depend on it). A checkpoint keeps its own size; ViT-family inputs of another
    size are handled by interpolating position embeddings at forward time.
    """
    if is_checkpoint(backbone):
        config = AutoConfig.from_pretrained(backbone)
    else:
        try:
            config = AutoConfig.for_model(backbone)
        except ValueError as error:
            raise ValueError(
                f"Unknown backbone {backbone!r}: pass a transformers model type (vision: vit, resnet, convnext, swin, "
                f"dinov2, ...; text: gpt2, bert, bart, ...) or the path of a checkpoint directory."
            ) from error
        values = (
            parse_config_overrides(overrides) if isinstance(overrides, str) or overrides is None else dict(overrides)
        )
        if image_size is not None and hasattr(config, "image_size"):
            overrides = {"image_size": image_size, **values}
    return apply_config_overrides(config, overrides)


def build_backbone(config: PreTrainedConfig, pooling: str = "auto", checkpoint: str | None = None) -> PreTrainedModel:
    """The transformers base model (``AutoModel``) for ``config``, with ``checkpoint``'s weights if given.

    Models whose pooler the pooling rule does not read (ViT's dense+tanh pooler under ``"cls"``)
    are built without it (``add_pooling_layer=False``): an unused layer would get no gradient,
    which DDP without ``find_unused_parameters`` (e.g. with gradient checkpointing) rejects.
    """
    kwargs = {}
    model_class = AutoModel._model_mapping[type(config)]
    if (
        resolve_pooling(config, pooling) != "pooler"
        and "add_pooling_layer" in inspect.signature(model_class.__init__).parameters
    ):
        kwargs["add_pooling_layer"] = False
    if checkpoint is not None:
        return AutoModel.from_pretrained(checkpoint, config=config, **kwargs)
    return AutoModel.from_config(config, **kwargs)


def backbone_feature_dim(config: PreTrainedConfig) -> int:
    """Width D of the pooled features: ``hidden_sizes[-1]`` for CNN-style configs, else ``hidden_size``."""
    if getattr(config, "hidden_sizes", None):
        return int(config.hidden_sizes[-1])
    if getattr(config, "hidden_size", None):
        return int(config.hidden_size)
    raise ValueError(
        f"Cannot tell the feature width of a {config.model_type!r} backbone (no hidden_sizes or hidden_size in its config)."
    )


def resolve_pooling(config: PreTrainedConfig, pooling: str) -> str:
    """Apply the ``"auto"`` rule: ``"cls"`` for CLS-token models, else ``"pooler"`` (falls back to mean)."""
    if pooling not in POOLING_CHOICES:
        raise ValueError(f"pooling must be one of {POOLING_CHOICES}, got {pooling!r}.")
    if pooling != "auto":
        return pooling
    if config.model_type in CLS_TOKEN_MODEL_TYPES and not getattr(config, "use_mean_pooling", False):
        return "cls"
    return "pooler"


def pooled_features(backbone: PreTrainedModel, pixel_values: torch.Tensor, pooling: str = "auto") -> torch.Tensor:
    """Run ``backbone`` on normalised ``pixel_values`` (B, C, H, W) and pool to (B, D)."""
    outputs = backbone(pixel_values=pixel_values, **_forward_kwargs(backbone, pixel_values))
    rule = resolve_pooling(backbone.config, pooling)
    hidden = outputs.last_hidden_state
    if rule == "pooler":
        pooled = getattr(outputs, "pooler_output", None)
        if pooled is not None:
            return pooled.flatten(1)
        if pooling == "pooler":
            raise ValueError(f"{type(backbone).__name__} returns no pooler_output; use pooling='cls' or 'mean'.")
        rule = "mean"
    if rule == "cls":
        if hidden.dim() != 3:
            raise ValueError(
                f"pooling='cls' needs token outputs (B, N, D); {type(backbone).__name__} returns {tuple(hidden.shape)}."
            )
        return hidden[:, 0]
    return hidden.mean(dim=1) if hidden.dim() == 3 else hidden.mean(dim=(2, 3))


def _forward_kwargs(backbone: PreTrainedModel, pixel_values: torch.Tensor) -> dict:
    """Ask ViT-style models to interpolate position embeddings when the input size differs."""
    size = getattr(backbone.config, "image_size", None)
    if size is None or "interpolate_pos_encoding" not in inspect.signature(backbone.forward).parameters:
        return {}
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    return {"interpolate_pos_encoding": tuple(pixel_values.shape[-2:]) != (height, width)}


class PooledBackbone(torch.nn.Module):
    """A backbone and its pooling rule as one module: (B, C, H, W) -> (B, D).

    Used to fine-tune or probe a plain transformers backbone (e.g. one written by
    ``export_backbone``) without hfssl's pretraining model around it.
    """

    def __init__(self, backbone: PreTrainedModel, pooling: str = "auto"):
        super().__init__()
        self.backbone = backbone
        self.pooling = pooling
        self.feature_dim = backbone_feature_dim(backbone.config)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return pooled_features(self.backbone, pixel_values, self.pooling)
