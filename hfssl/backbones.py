"""Any transformers vision encoder as a backbone, and one rule for its pooled features.

A backbone is named by ``--backbone``, one of:

* a preset of :data:`BACKBONE_PRESETS` (``resnet-tiny``, ``vit-tiny``, ``vit-small``, ``vit-base``,
  ``resnet50``): a named transformers config, with ``--backbone_config_overrides`` on top;
* ``auto``: a preset and an image size picked from the data by :func:`choose_auto_backbone`;
* a transformers model type (``vit``, ``resnet``, ``convnext``, ``swin``, ...), built from its
  default config plus ``--backbone_config_overrides``;
* a checkpoint (a local directory or a Hub id), whose config and weights are loaded.

A preset name, ``auto`` and a model type are never read as a folder of the same name in the
working directory (write ``./resnet-tiny`` to mean the folder).

Presets (parameters counted with :func:`build_backbone` at 3 input channels, ViTs at 224 px
without their unused pooler):

=============== ================================================================= ============
preset          what it is                                                        parameters
=============== ================================================================= ============
``resnet-tiny`` ResNet, 16-wide stem and 2 basic-block stages 32, 64 (one block    74,640
                each); for images up to ~64 px (73,072 with 1 input channel)
``vit-tiny``    ViT-Ti/16 of DeiT (Touvron et al., 2021): width 192, 12 layers,    5,524,416
                3 heads, MLP 768
``vit-small``   ViT-S/16 of DeiT: width 384, 12 layers, 6 heads, MLP 1536          21,665,664
``vit-base``    ViT-B/16 (Dosovitskiy et al., 2021): width 768, 12 layers,         85,798,656
                12 heads, MLP 3072
``resnet50``    ResNet-50 (He et al., 2016), bottleneck stages 3-4-6-3, widths     23,508,032
                256-2048; the backbone of SimCLR, MoCo, BYOL
=============== ================================================================= ============

The ViT presets' ``patch_size`` follows the image size (:func:`vit_patch_size`): 16 at 224 px and
above, smaller for small images so the token grid stays at least 7x7 (4 at 32 px: 8x8 tokens).

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
import math
import os
import re
from typing import NamedTuple

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


AUTO_BACKBONE = "auto"

BACKBONE_PRESETS: dict[str, dict] = {
    "resnet-tiny": {
        "model_type": "resnet",
        "embedding_size": 16,
        "hidden_sizes": [32, 64],
        "depths": [1, 1],
        "layer_type": "basic",
    },
    "vit-tiny": {
        "model_type": "vit",
        "hidden_size": 192,
        "num_hidden_layers": 12,
        "num_attention_heads": 3,
        "intermediate_size": 768,
        "image_size": 224,
        "patch_size": 16,
    },
    "vit-small": {
        "model_type": "vit",
        "hidden_size": 384,
        "num_hidden_layers": 12,
        "num_attention_heads": 6,
        "intermediate_size": 1536,
        "image_size": 224,
        "patch_size": 16,
    },
    "vit-base": {
        "model_type": "vit",
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "image_size": 224,
        "patch_size": 16,
    },
    "resnet50": {
        "model_type": "resnet",
        "embedding_size": 64,
        "hidden_sizes": [256, 512, 1024, 2048],
        "depths": [3, 4, 6, 3],
        "layer_type": "bottleneck",
    },
}
"""Named backbone configs: ``model_type`` and the architecture's sizes, spelled out rather than left to
transformers' defaults (the module docstring says what each is and counts its parameters)."""

BACKBONE_PRESET_NOTES: dict[str, str] = {
    "resnet-tiny": "2-stage basic-block ResNet, ~75k parameters",
    "vit-tiny": "ViT-Ti/16 of DeiT, ~5.5M parameters",
    "vit-small": "ViT-S/16 of DeiT, ~22M parameters",
    "vit-base": "ViT-B/16, ~86M parameters",
    "resnet50": "ResNet-50, ~23.5M parameters",
}
"""One line per preset: what it is and its parameter count (3 input channels, ViTs at 224 px)."""

# The coarsest token grid the ViT paper trained (ViT-B/32 at 224 px), and the largest patch.
MIN_TOKEN_GRID = 7
MAX_PATCH_SIZE = 16


def vit_patch_size(image_size: int) -> int:
    """Patch size of a ViT preset at ``image_size``: the largest power of two up to 16 that leaves
    at least 7 patches per side.

    112 px and above take 16 (224 px: 14x14 tokens, as ViT-B/16 and DeiT); 56-111 px take 8
    (96 px: 12x12); 28-55 px 4 (32 px: 8x8); 14-27 px 2; below 14 px 1. The floor of 7 is the
    coarsest grid of the ViT paper (ViT-B/32 at 224 px; Dosovitskiy et al., 2021).
    A size the patch does not divide drops its last ``image_size % patch_size`` rows and columns
    (the patch embedding is a convolution of that stride).
    """
    if image_size < 1:
        raise ValueError(f"image_size must be a positive number of pixels, got {image_size}.")
    patch_size = MAX_PATCH_SIZE
    while patch_size > 1 and image_size // patch_size < MIN_TOKEN_GRID:
        patch_size //= 2
    return patch_size


def is_checkpoint(backbone: str) -> bool:
    """A local directory or a Hub id ("org/name") rather than a preset, ``auto`` or a model type.
    Those names win over a folder of the same name in the working directory (a run's output
    folder is often called "bert" or "resnet-tiny"); write "./bert" to mean the folder."""
    if backbone in CONFIG_MAPPING or backbone in BACKBONE_PRESETS or backbone == AUTO_BACKBONE:
        return False
    return os.path.isdir(backbone) or "/" in backbone


def build_backbone_config(
    backbone: str,
    overrides: str | dict | None = None,
    image_size: int | None = None,
    num_channels: int | None = None,
) -> PreTrainedConfig:
    """Config of the backbone named by ``backbone`` (preset, model type or checkpoint), with overrides.

    For a preset or a model type, ``image_size`` and ``num_channels`` are written into configs
    that have those attributes (ViT-style position embeddings depend on the size), and a ViT
    preset's ``patch_size`` follows the size (:func:`vit_patch_size`); ``overrides`` win over all
    three. A checkpoint keeps its own size and channels; ViT-family inputs of another size are
    handled by interpolating position embeddings at forward time, other channel counts by
    :func:`hfssl.augment.match_channels`. ``auto`` must be resolved first with
    :func:`choose_auto_backbone`, which needs the data.
    """
    if backbone == AUTO_BACKBONE:
        raise ValueError(
            "The 'auto' backbone depends on the data: resolve it with choose_auto_backbone(native_image_size, "
            f"num_channels) and pass the preset it picks (one of {', '.join(BACKBONE_PRESETS)})."
        )
    if is_checkpoint(backbone):
        return apply_config_overrides(AutoConfig.from_pretrained(backbone), overrides)
    values = parse_config_overrides(overrides) if isinstance(overrides, str) or overrides is None else dict(overrides)
    if backbone in BACKBONE_PRESETS:
        config, sized = _preset_config(backbone, image_size, values)
    else:
        config, sized = _model_type_config(backbone), {}
        if image_size is not None and hasattr(config, "image_size"):
            sized["image_size"] = image_size
    if num_channels is not None and hasattr(config, "num_channels"):
        sized["num_channels"] = num_channels
    return apply_config_overrides(config, {**sized, **values})


def _preset_config(name: str, image_size: int | None, overrides: dict) -> tuple[PreTrainedConfig, dict]:
    """The preset's config and, for a ViT at a given size, its image and patch size (the size in
    ``overrides`` wins over ``image_size``; ``encoder_stride``, read by masked-image heads, follows the patch)."""
    values = dict(BACKBONE_PRESETS[name])
    config = AutoConfig.for_model(values.pop("model_type"), **values)
    image_size = overrides.get("image_size", image_size)
    if image_size is None or "patch_size" not in values:
        return config, {}
    patch_size = overrides.get("patch_size", vit_patch_size(image_size))
    return config, {"image_size": image_size, "patch_size": patch_size, "encoder_stride": patch_size}


def _model_type_config(model_type: str) -> PreTrainedConfig:
    try:
        return AutoConfig.for_model(model_type)
    except ValueError as error:
        presets = "; ".join(f"{name} ({note})" for name, note in BACKBONE_PRESET_NOTES.items())
        raise ValueError(
            f"Unknown backbone {model_type!r}: pass a preset ({presets}), 'auto' (picked from the data), "
            "a transformers model type (vision: vit, resnet, convnext, swin, dinov2, ...; text: gpt2, bert, bart, ...) "
            "or the path of a checkpoint directory."
        ) from error


class AutoBackboneChoice(NamedTuple):
    """What ``--backbone auto`` picked: the preset, the side of the training views, the backbone's
    input channels, and one log line saying what was picked, why, and how to change it."""

    preset: str
    image_size: int
    num_channels: int
    message: str


# Thresholds of choose_auto_backbone: native image side in pixels, and data set size.
SMALL_IMAGE_SIDE = 64
MEDIUM_IMAGE_SIDE = 128
LARGE_IMAGE_SIZE = 224
FEW_IMAGES = 10_000


def choose_auto_backbone(
    native_image_size: int, num_channels: int, num_images: int | None = None, vit_only: bool = False
) -> AutoBackboneChoice:
    """Pick a preset and training image size that fit images of side ``native_image_size``.

    Rule, on the native side S (pass the longer side of the data's images):

    * S <= 64 (digits, MNIST, CIFAR): ``resnet-tiny`` at S rounded up to a multiple of 8, at least
      16 (8 px digits -> 16, 28 px Fashion-MNIST -> 32, 32 px CIFAR -> 32). Small images carry little
      detail; a ViT on them is mostly tokens of a few pixels, and a tiny CNN trains in seconds on a CPU.
    * 64 < S <= 128 (STL-10 at 96 px): ``vit-tiny`` at S rounded up to a multiple of 8, its patch
      size following the size (96 px: patch 8, 12x12 tokens).
    * S > 128 (ImageNet-like photos): ``vit-small`` at 224 px, the size DeiT and DINO train at
      (random resized crops of the larger images).
    * With fewer than 10,000 images (when ``num_images`` is known) the model steps down one rung
      (``vit-small`` -> ``vit-tiny``, ``vit-tiny`` -> ``resnet-tiny``) at the same size: ViTs need more
      data than CNNs to train well (Dosovitskiy et al., 2021, section 4.3).

    The backbone takes the data's ``num_channels`` (1 for greyscale), so no channel is repeated.

    ``vit_only`` (methods that need a ViT, e.g. MAE): ``vit-tiny`` where the rule says ``resnet-tiny``,
    at the same size.
    """
    if native_image_size < 1:
        raise ValueError(f"native_image_size must be a positive number of pixels, got {native_image_size}.")
    if num_channels < 1:
        raise ValueError(f"num_channels must be at least 1 (1 greyscale, 3 RGB), got {num_channels}.")
    if num_images is not None and num_images < 1:
        raise ValueError(f"num_images must be a positive count or None (unknown), got {num_images}.")
    ladder = ("resnet-tiny", "vit-tiny", "vit-small")
    if native_image_size <= SMALL_IMAGE_SIDE:
        rung, image_size = 0, _round_up(native_image_size)
        why = f"images of side <= {SMALL_IMAGE_SIDE} px train resnet-tiny at their side rounded up to a multiple of 8"
        why += " (at least 16)"
    elif native_image_size <= MEDIUM_IMAGE_SIDE:
        rung, image_size = 1, _round_up(native_image_size)
        why = f"images of side {SMALL_IMAGE_SIDE + 1}-{MEDIUM_IMAGE_SIDE} px train vit-tiny at their side rounded up"
        why += " to a multiple of 8"
    else:
        rung, image_size = 2, LARGE_IMAGE_SIZE
        why = f"images larger than {MEDIUM_IMAGE_SIDE} px train vit-small at {LARGE_IMAGE_SIZE} px"
    if num_images is not None and num_images < FEW_IMAGES and rung > 0:
        rung -= 1
        why += f", one model size smaller with under {FEW_IMAGES:,} images"
    preset = ladder[rung]
    if vit_only and not preset.startswith("vit"):
        preset = "vit-tiny"
        why += "; the method needs a ViT, so vit-tiny"
    kind = {1: "greyscale", 3: "RGB"}.get(num_channels, f"{num_channels}-channel")
    count = "" if num_images is None else f"{num_images:,} "
    message = (
        f"--backbone auto picked {preset} ({BACKBONE_PRESET_NOTES[preset]}) at {image_size} px with {num_channels} "
        f"input channel{'' if num_channels == 1 else 's'}, for {count}{kind} images of {native_image_size} px: {why}; "
        f"the backbone takes the data's channels. Change it with --backbone <preset or model type> "
        f"(presets: {', '.join(BACKBONE_PRESETS)}) and --image_size N."
    )
    return AutoBackboneChoice(preset, image_size, num_channels, message)


def _round_up(side: int, multiple: int = 8, minimum: int = 16) -> int:
    return max(minimum, -(-side // multiple) * multiple)


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
    return pool_outputs(backbone, backbone_outputs(backbone, pixel_values), pooling)


def backbone_outputs(backbone: PreTrainedModel, pixel_values: torch.Tensor):
    """``backbone``'s outputs on normalised ``pixel_values`` (B, C, H, W), ViT position embeddings interpolated
    when the size differs from the config's."""
    return backbone(pixel_values=pixel_values, **_forward_kwargs(backbone, pixel_values))


def spatial_feature_map(last_hidden_state: torch.Tensor) -> torch.Tensor:
    """A backbone's ``last_hidden_state`` as a (B, C, h, w) map: convolutional maps as they are; tokens (B, L, D)
    of a square grid of N = g^2 patches after L - N prefix tokens (CLS, registers; fewer than 2g + 1) as (B, D, g, g)."""
    if last_hidden_state.dim() == 4:
        return last_hidden_state
    if last_hidden_state.dim() != 3:
        raise ValueError(f"Expected (B, C, h, w) or (B, L, D) backbone outputs, got {tuple(last_hidden_state.shape)}.")
    batch, length, dim = last_hidden_state.shape
    side = math.isqrt(length)
    patches = last_hidden_state[:, length - side * side :]
    return patches.transpose(1, 2).reshape(batch, dim, side, side)


def patch_projection(backbone: torch.nn.Module) -> torch.nn.Module | None:
    """A ViT-family backbone's patch projection (``embeddings.patch_embeddings.projection``, the convolution that
    embeds each patch), else None (convolutional networks)."""
    patches = getattr(getattr(backbone, "embeddings", None), "patch_embeddings", None)
    return getattr(patches, "projection", None)


def pool_outputs(backbone: PreTrainedModel, outputs, pooling: str = "auto") -> torch.Tensor:
    """(B, D) pooled features of ``backbone``'s ``outputs`` by the ``pooling`` rule (see the module docstring)."""
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
