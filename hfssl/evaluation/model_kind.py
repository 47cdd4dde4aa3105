"""What kind of model a checkpoint holds (image, text, word vectors), so that an evaluation recipe
given the wrong kind says which recipe takes it instead of failing later with advice that leads to
another error.

hfssl configs know their modality (:data:`hfssl.METHODS`); a plain transformers config is judged by
its model type in transformers' auto mappings (image-text before image and text: CLIP sits in the
image-classification mapping too; audio models are of no kind here), and, for a model type in none of them, by its fields
(``num_channels``/``image_size`` without ``vocab_size`` for images, the reverse for text).
"""

from __future__ import annotations

import os

from transformers import AutoConfig, PreTrainedConfig
from transformers.models.auto import modeling_auto

IMAGE, TEXT, WORD_VECTORS, IMAGE_TEXT = "image", "text", "word vectors", "image-text"

RECIPES = {
    IMAGE: "recipes/evaluate_vision.py",
    TEXT: "recipes/evaluate_text.py",
    WORD_VECTORS: "recipes/evaluate_word2vec.py",
}

# what each recipe takes, as "not <this>" in the message (the word2vec recipe takes hfssl checkpoints only)
WANTED = {IMAGE: "an image one", TEXT: "a text one", WORD_VECTORS: "an hfssl word2vec one"}

_IMAGE_TEXT_TYPES = {
    *modeling_auto.MODEL_FOR_ZERO_SHOT_IMAGE_CLASSIFICATION_MAPPING_NAMES,
    *modeling_auto.MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES,
    *modeling_auto.MODEL_FOR_VISUAL_QUESTION_ANSWERING_MAPPING_NAMES,
    *modeling_auto.MODEL_FOR_MULTIMODAL_LM_MAPPING_NAMES,
}
_AUDIO_TYPES = {  # some sit in the text mappings too (wav2vec2 in masked LM, whisper in seq2seq)
    *modeling_auto.MODEL_FOR_CTC_MAPPING_NAMES,
    *modeling_auto.MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES,
    *modeling_auto.MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING_NAMES,
}
_IMAGE_TYPES = {
    *modeling_auto.MODEL_FOR_IMAGE_MAPPING_NAMES,
    *modeling_auto.MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES,
    *modeling_auto.MODEL_FOR_MASKED_IMAGE_MODELING_MAPPING_NAMES,
}
_TEXT_TYPES = {
    *modeling_auto.MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    *modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
    *modeling_auto.MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES,
    *modeling_auto.MODEL_FOR_TEXT_ENCODING_MAPPING_NAMES,
}


def _hfssl_kind(config: PreTrainedConfig) -> str | None:
    """The modality of an hfssl method's config (``hfssl.METHODS``), else None."""
    from .. import METHODS  # hfssl's package imports its models first; this module may be imported before

    for method in METHODS.values():
        if isinstance(config, method.config_class):
            return WORD_VECTORS if method.modality == "word-vectors" else method.modality
    return None


def model_kind(config: PreTrainedConfig) -> str | None:
    """``"image"``, ``"text"``, ``"word vectors"`` or ``"image-text"``: what ``config``'s model reads
    (see the module docstring); None when it cannot be told (audio, time series, ...)."""
    kind = _hfssl_kind(config)
    if kind is not None:
        return kind
    model_type = getattr(config, "model_type", None)
    if model_type in _IMAGE_TEXT_TYPES or (hasattr(config, "vision_config") and hasattr(config, "text_config")):
        return IMAGE_TEXT
    if model_type in _AUDIO_TYPES:
        return None
    if model_type in _IMAGE_TYPES:
        return IMAGE
    if model_type in _TEXT_TYPES:
        return TEXT
    has_pixels = hasattr(config, "num_channels") or hasattr(config, "image_size")
    has_tokens = getattr(config, "vocab_size", None) is not None
    if has_pixels != has_tokens:
        return IMAGE if has_pixels else TEXT
    return None


def _advice(path: str, config: PreTrainedConfig, kind: str) -> str:
    """Which recipe takes a model of ``kind``, with the command line."""
    if kind not in RECIPES:
        return (
            "no hfssl evaluation recipe takes image-text models: recipes/evaluate_vision.py takes an image encoder "
            "saved alone (e.g. a CLIPVisionModel), recipes/evaluate_text.py a text encoder"
        )
    if kind == TEXT and getattr(config, "backbone_config", None) is not None:
        # an hfssl text pretraining checkpoint: evaluate_text.py takes the plain transformers model it exports
        target = os.path.join(path, "backbone")
        what = "the text model it exports"
        if os.path.isdir(path) and not os.path.isdir(target):
            what += f" (write it with AutoModel.from_pretrained({path!r}).export_backbone({target!r}))"
        return f"evaluate {what} with {RECIPES[TEXT]} --model_name_or_path {target}"
    return f"evaluate it with {RECIPES[kind]} --model_name_or_path {path}"


def wrong_kind_message(path: str, config: PreTrainedConfig, kind: str, expected: str, recipe: str) -> str:
    """The error for ``recipe`` (e.g. ``"evaluate_vision.py"``), which takes ``expected`` models, given a ``kind`` one."""
    article = "an" if kind[0] in "aeiou" else "a"
    return (
        f"{path!r} holds a {config.model_type!r} checkpoint, not {WANTED[expected]}: it is {article} {kind} model, "
        f"which recipes/{recipe} cannot evaluate; {_advice(path, config, kind)}."
    )


def require_model_kind(path: str, expected: str, recipe: str, config: PreTrainedConfig | None = None) -> None:
    """Raise a ValueError when the model at ``path`` (its ``config``, loaded when None) is of a known kind other
    than ``expected``, saying what kind it is and which recipe takes it. Models of no known kind pass: the
    recipe's own checks judge them."""
    if config is None:
        config = AutoConfig.from_pretrained(path, trust_remote_code=False)
    kind = model_kind(config)
    if kind is not None and kind != expected:
        raise ValueError(wrong_kind_message(path, config, kind, expected, recipe))
