"""CLIP configuration, and the towers it defaults to for a data set."""

from __future__ import annotations

import math
from typing import NamedTuple

from transformers import AutoConfig, CLIPTextConfig, CLIPVisionConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from ...backbones import FEW_IMAGES, MEDIUM_IMAGE_SIDE, SMALL_IMAGE_SIDE, vit_patch_size
from ..checks import CheckedConfig, require_bool, require_int, require_real

CLIP_VISION_MODEL_TYPE = "clip_vision_model"
CLIP_TEXT_MODEL_TYPE = "clip_text_model"


class CLIPPretrainingConfig(CheckedConfig):
    """Configuration of :class:`~hfssl.models.clip.CLIPPretrainingModel`.

    Radford et al. 2021, "Learning Transferable Visual Models From Natural Language Supervision". Two towers,
    each any transformers model whose output has a ``pooler_output`` of shape (B, D), nested as sub-configs: by
    default CLIP's own vision and text transformers (then the trained model exports as transformers'
    ``CLIPModel``); linear projections without bias to a shared embedding; a learned temperature.

    Args:
        vision_config: config (or dict with ``model_type``) of the image tower; default CLIP's vision transformer.
        text_config: config of the text tower; default CLIP's text transformer.
        projection_dim: width of the shared embedding (paper: 512 for ViT-B/32).
        logit_scale_init_value: initial log of the logit multiplier, log(1 / 0.07) (paper, sec. 2.5).
        max_logit_scale: the multiplier exp(t) is clamped at this value (paper: 100), in the forward and, after
            every optimizer step, in the parameter itself (as open_clip), so the exported model's logits agree.
        local_loss: score this process's rows against every process's columns instead of every row against every
            column (open_clip's ``--local-loss``): the same gradient, B x N logits per process instead of N x N.
        image_size: side of the square training crops (the recipe's ``--image_size``).
        min_crop_scale: smallest area share of the random resized crop, the only augmentation (the paper's "random
            square crop"; open_clip's default 0.9), in (0, 1].

    Every field is checked at construction (:class:`~hfssl.models.checks.CheckedConfig`).
    """

    model_type = "hfssl_clip"
    sub_configs_defaults = {
        "vision_config": SubConfigSpec(config_class=AutoConfig, model_type=CLIP_VISION_MODEL_TYPE),
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type=CLIP_TEXT_MODEL_TYPE),
    }

    vision_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    projection_dim: int = 512
    logit_scale_init_value: float = math.log(1 / 0.07)
    max_logit_scale: float = 100.0
    local_loss: bool = False
    image_size: int = 224
    min_crop_scale: float = 0.9

    def check_ranges(self) -> None:
        """``projection_dim`` and ``image_size`` ints >= 1; ``max_logit_scale`` > 0 and the initial multiplier not
        above it; ``min_crop_scale`` in (0, 1]; ``local_loss`` a bool."""
        super().check_ranges()
        require_int(self, "projection_dim", 1, "the width of the shared embedding")
        require_int(self, "image_size", 1, "the side of the training crops in pixels")
        require_real(self, "max_logit_scale", 0, low_open=True, hint="the largest logit multiplier; CLIP: 100")
        require_real(
            self,
            "logit_scale_init_value",
            None,
            math.log(self.max_logit_scale) if self.max_logit_scale > 0 else None,
            hint=f"log of the initial logit multiplier, at most log(max_logit_scale); CLIP: log(1 / 0.07) = "
            f"{math.log(1 / 0.07):.4f}",
        )
        require_real(self, "min_crop_scale", 0, 1, low_open=True, hint="the smallest area share of a crop")
        require_bool(self, "local_loss")

    @property
    def num_channels(self) -> int:
        """Channels the image tower takes (3 unless its config says otherwise)."""
        return getattr(self.vision_config, "num_channels", 3)

    @property
    def has_clip_towers(self) -> bool:
        """Both towers are CLIP's own: the model exports as a transformers ``CLIPModel``."""
        return (
            self.vision_config.model_type == CLIP_VISION_MODEL_TYPE
            and self.text_config.model_type == CLIP_TEXT_MODEL_TYPE
        )


class TowerSize(NamedTuple):
    """Width, depth and heads of both default towers (MLP 4x the width) and the shared embedding's width."""

    name: str
    width: int
    layers: int
    heads: int
    projection_dim: int


# The paper's smallest model (ViT-B/32 with a 12 x 512 text transformer) is the top rung; small data and small
# images step down, as choose_auto_backbone does for the vision methods.
TOWER_SIZES = (
    TowerSize("tiny (4 x 128)", 128, 4, 4, 128),
    TowerSize("small (6 x 384)", 384, 6, 6, 256),
    TowerSize("base (12 x 768 image, 12 x 512 text)", 768, 12, 12, 512),
)
PAPER_TEXT_WIDTH, PAPER_TEXT_HEADS = 512, 8


class DefaultTowers(NamedTuple):
    vision_config: CLIPVisionConfig
    text_config: CLIPTextConfig
    projection_dim: int
    message: str


def default_clip_towers(
    image_size: int, num_channels: int, num_pairs: int | None, tokenizer, max_seq_length: int
) -> DefaultTowers:
    """CLIP's vision and text transformers sized for the data: images of side ``image_size`` (the training crop),
    ``num_pairs`` image-caption pairs (None: unknown), captions of at most ``max_seq_length`` tokens of
    ``tokenizer`` (its vocabulary and special ids are written into the text config).

    Rule: images of at most 64 px, or fewer than 10,000 pairs, take the tiny towers (width 128, 4 layers);
    at most 128 px the small ones (384, 6); larger images the paper's ViT-B/32 with its 12 x 512 text transformer.
    The image tower's patch follows the size (:func:`hfssl.backbones.vit_patch_size`; ViT-B/32's 32 at 224 px).
    """
    rung = 0 if image_size <= SMALL_IMAGE_SIDE else 1 if image_size <= MEDIUM_IMAGE_SIDE else 2
    if num_pairs is not None and num_pairs < FEW_IMAGES:
        rung = 0
    size = TOWER_SIZES[rung]
    patch_size = 32 if rung == 2 else vit_patch_size(image_size)
    vision_config = CLIPVisionConfig(
        image_size=image_size,
        patch_size=patch_size,
        num_channels=num_channels,
        hidden_size=size.width,
        intermediate_size=4 * size.width,
        num_hidden_layers=size.layers,
        num_attention_heads=size.heads,
    )
    text_width, text_heads = (PAPER_TEXT_WIDTH, PAPER_TEXT_HEADS) if rung == 2 else (size.width, size.heads)
    text_config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=max_seq_length,
        hidden_size=text_width,
        intermediate_size=4 * text_width,
        num_hidden_layers=size.layers,
        num_attention_heads=text_heads,
        **special_token_ids(tokenizer),
    )
    count = "an unknown number of" if num_pairs is None else f"{num_pairs:,}"
    message = (
        f"--vision_backbone auto and --text_backbone auto: CLIP's transformers, {size.name}, patch {patch_size} at "
        f"{image_size} px, {len(tokenizer):,} tokens of up to {max_seq_length}, a {size.projection_dim}-wide shared "
        f"embedding, for {count} pairs (tiny up to {SMALL_IMAGE_SIDE} px or under {FEW_IMAGES:,} pairs, small up to "
        f"{MEDIUM_IMAGE_SIDE} px, else ViT-B/32). Change them with --vision_backbone_config_overrides, "
        "--text_backbone_config_overrides and --config_overrides projection_dim=N."
    )
    return DefaultTowers(vision_config, text_config, size.projection_dim, message)


def check_tokenizer_fits(config: CLIPPretrainingConfig, tokenizer) -> None:
    """Refuse a tokenizer the text tower cannot read right: more tokens than its embeddings, or, for CLIP's text
    transformer, which pools the hidden state of each caption's first ``eos_token_id``, a tokenizer that does not end
    every caption with that id (BERT's ends with [SEP], GPT-2's with nothing: every caption would pool the same
    first position), or an end id of 2, which transformers reads as its legacy rule (the highest id)."""
    text = config.text_config
    if len(tokenizer) > text.vocab_size:
        raise ValueError(
            f"The tokenizer has {len(tokenizer)} tokens but the text tower only {text.vocab_size} embeddings; use the "
            "tower's own tokenizer, or a tower built for this one (--text_backbone auto or a model type)."
        )
    if text.model_type != CLIP_TEXT_MODEL_TYPE:
        return
    ids = tokenizer("a photo")["input_ids"]
    eos = tokenizer.eos_token_id
    if eos is None or not ids or ids[-1] != eos or eos != text.eos_token_id or eos == 2:
        raise ValueError(
            f"CLIP's text transformer pools each caption at its first end-of-text token (eos_token_id "
            f"{text.eos_token_id}), but this {type(tokenizer).__name__} ends 'a photo' with id "
            f"{ids[-1] if ids else None} (its eos_token_id: {eos}); every caption would pool a token that says "
            "nothing about it. Use a CLIP tokenizer (leave out --tokenizer_name to train one on the captions), or "
            "a text tower that pools otherwise (--text_backbone bert)."
        )


def special_token_ids(tokenizer) -> dict:
    """``bos_token_id``, ``eos_token_id`` and ``pad_token_id`` of ``tokenizer`` (those it has): CLIP's text tower
    pools the hidden state of the first ``eos_token_id`` of each caption."""
    names = ("bos_token_id", "eos_token_id", "pad_token_id")
    return {name: getattr(tokenizer, name) for name in names if getattr(tokenizer, name, None) is not None}
