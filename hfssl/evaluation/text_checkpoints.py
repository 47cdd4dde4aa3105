"""Loading a transformers text checkpoint for evaluation, with the checks that make a bad one fail early.

Any text checkpoint directory (or Hub id) with its tokenizer saved beside the weights is loaded
as plain transformers loads it (``AutoConfig``, ``AutoModel``, ``AutoTokenizer``; remote code is
never run), so the backbones that hfssl's GPT, BERT and BART pretraining export are judged exactly
as a user would load them.
"""

from __future__ import annotations

import inspect
from typing import Optional

from transformers import (
    AutoConfig,
    AutoModel,
    AutoTokenizer,
    PreTrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)


def load_text_tokenizer(model_name_or_path: str, config: Optional[PreTrainedConfig] = None) -> PreTrainedTokenizerBase:
    """The tokenizer saved with the checkpoint; refused when missing or larger than the model's vocabulary.

    transformers 5 builds an *empty* tokenizer from the model config when a directory holds no
    tokenizer files, which would silently turn every text into unknown tokens: a tokenizer with
    no token beyond its special tokens counts as missing. A tokenizer without a padding token
    pads with its end-of-text token (GPT-2's convention); padded positions are masked anyway.
    """
    config = config or AutoConfig.from_pretrained(model_name_or_path)
    fix = (
        f"Save the tokenizer used in pretraining beside the weights (tokenizer.save_pretrained({model_name_or_path!r})), "
        "as the hfssl text recipes do when they export the backbone."
    )
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_name_or_path, trust_remote_code=False)
    except (OSError, ValueError, TypeError) as error:
        raise ValueError(f"{model_name_or_path!r} has no usable tokenizer ({error}). {fix}") from error
    if len(tokenizer.get_vocab()) <= len(set(tokenizer.all_special_tokens)):
        raise ValueError(
            f"{model_name_or_path!r} has no tokenizer files (only an empty default tokenizer could be built). {fix}"
        )
    vocab_size = getattr(config, "vocab_size", None)
    if vocab_size is not None and len(tokenizer) > vocab_size:
        raise ValueError(
            f"The tokenizer of {model_name_or_path!r} has {len(tokenizer)} tokens but the model's embedding only "
            f"{vocab_size} rows: they do not belong together. Save the tokenizer the model was trained with."
        )
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(
                f"The tokenizer of {model_name_or_path!r} has neither a padding nor an end-of-text token; add a pad_token."
            )
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def check_text_checkpoint(config: PreTrainedConfig, model_name_or_path: str) -> None:
    """Refuse hfssl pretraining checkpoints (evaluate their exported backbone) and models that do not read text."""
    if getattr(config, "backbone_config", None) is not None:
        raise ValueError(
            f"{model_name_or_path!r} is an hfssl pretraining checkpoint ({config.model_type!r}) wrapping a backbone; "
            f"evaluate the plain transformers model it exports: --model_name_or_path {model_name_or_path}/backbone."
        )
    model_class = AutoModel._model_mapping.get(type(config), None)
    if model_class is None or "input_ids" not in inspect.signature(model_class.forward).parameters:
        raise ValueError(
            f"{model_name_or_path!r} holds a {config.model_type!r} model, which does not read token ids. "
            "Pass a text encoder checkpoint (BERT, GPT-2, BART, ...) with its tokenizer."
        )


def load_text_encoder(
    model_name_or_path: str, random_init: bool = False
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """(encoder, tokenizer) of a text checkpoint: ``AutoModel``'s base model, or its encoder for an
    encoder-decoder model (BART); freshly initialised weights when ``random_init`` (the baseline)."""
    config = AutoConfig.from_pretrained(model_name_or_path, trust_remote_code=False)
    check_text_checkpoint(config, model_name_or_path)
    tokenizer = load_text_tokenizer(model_name_or_path, config)
    model = (
        AutoModel.from_config(config) if random_init else AutoModel.from_pretrained(model_name_or_path, config=config)
    )
    encoder = model.get_encoder() if config.is_encoder_decoder else model
    return encoder.eval(), tokenizer


def max_positions(config: PreTrainedConfig) -> Optional[int]:
    """How many positions the model can read (``max_position_embeddings`` or GPT-2's ``n_positions``); None if unbounded."""
    return getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)


def check_sequence_length(config: PreTrainedConfig, length: int, flag: str) -> None:
    limit = max_positions(config)
    if length < 1 or (limit is not None and length > limit):
        raise ValueError(
            f"{flag} must be in [1, {limit}] for this {config.model_type!r} model (its positions), got {length}."
        )
