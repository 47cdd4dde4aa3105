"""What the language-model recipes (GPT, BERT, BART) share: their model arguments, the tokenizer
(trained on the data or loaded), the model built around it, and the trainer.

The backbone is named as in the vision recipes: ``--backbone`` is a transformers model type
(``gpt2``, ``bert``, ``bart``, ...) built from its default config with
``--backbone_config_overrides "n_layer=4,n_embd=256"``, or a checkpoint directory / Hub id whose
weights continue training (its tokenizer comes along unless ``--tokenizer_name`` is given).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional

from transformers import AutoTokenizer, PreTrainedTokenizerBase, Trainer

from ..backbones import build_backbone_config, is_checkpoint
from ..data.text import TextDataset, iter_texts
from ..tokenization import train_subword_tokenizer
from .model_card import HfsslModelCardMixin

logger = logging.getLogger(__name__)


@dataclass
class LanguageModelArguments:
    """The model and tokenizer of a language-model recipe; parsed by ``HfArgumentParser``."""

    backbone: Optional[str] = field(
        default=None, metadata={"help": "A transformers model type (default: the method's, e.g. gpt2) or a checkpoint to continue from."}
    )
    backbone_config_overrides: Optional[str] = field(
        default=None, metadata={"help": "Overrides of the backbone's config, e.g. 'n_layer=4,n_embd=256,n_head=4'."}
    )
    tokenizer_name: Optional[str] = field(
        default=None, metadata={"help": "A saved tokenizer (directory or Hub id) to use instead of training one on the data."}
    )
    vocab_size: int = field(default=8000, metadata={"help": "Size of the tokenizer trained on the training text."})
    lowercase: bool = field(default=False, metadata={"help": "Lower-case text in a trained WordPiece tokenizer (BERT uncased)."})
    preprocessing_num_workers: Optional[int] = field(default=None, metadata={"help": "Processes for tokenising and packing the data."})


def build_tokenizer(args: LanguageModelArguments, train: TextDataset, kind: str, special_tokens: str) -> PreTrainedTokenizerBase:
    """``--tokenizer_name``, else the backbone checkpoint's tokenizer, else one trained on ``train``
    (``kind`` and ``special_tokens`` as :func:`hfssl.tokenization.train_subword_tokenizer`)."""
    source = args.tokenizer_name or (args.backbone if args.backbone and is_checkpoint(args.backbone) else None)
    if source is not None:
        return AutoTokenizer.from_pretrained(source)
    logger.info("Training a %s tokenizer of %d tokens on the training text.", kind, args.vocab_size)
    return train_subword_tokenizer(iter_texts(train), kind, special_tokens, vocab_size=args.vocab_size, lowercase=args.lowercase)


def build_language_model(method, args: LanguageModelArguments, tokenizer: PreTrainedTokenizerBase, max_length: int):
    """A fresh ``method.model_class`` whose backbone matches ``tokenizer`` (vocabulary size and
    special token ids) and holds ``max_length`` positions; a checkpoint backbone brings its weights."""
    default_type = method.config_class.sub_configs_defaults["backbone_config"].model_type
    backbone = args.backbone or default_type
    backbone_config = build_backbone_config(backbone, args.backbone_config_overrides)
    if not is_checkpoint(backbone):
        backbone_config = _fit_to_tokenizer(backbone_config, tokenizer)
    elif backbone_config.vocab_size < len(tokenizer):
        raise ValueError(
            f"The checkpoint {backbone} has {backbone_config.vocab_size} token embeddings but the tokenizer has {len(tokenizer)} tokens: "
            "use the checkpoint's own tokenizer (leave out --tokenizer_name)."
        )
    positions = getattr(backbone_config, "max_position_embeddings", None)
    if positions is not None and max_length > positions:
        raise ValueError(
            f"Sequences of {max_length} tokens do not fit the backbone's {positions} positions: lower the sequence length "
            f"(--block_size / --max_seq_length) or raise the positions in --backbone_config_overrides."
        )
    config = method.config_class(backbone_config=backbone_config)
    model = method.model_class(config)
    if is_checkpoint(backbone):
        model.backbone = config.backbone_auto_class.from_pretrained(backbone, config=backbone_config)
    return model


def _fit_to_tokenizer(config, tokenizer: PreTrainedTokenizerBase):
    """The config with the tokenizer's vocabulary size and special token ids."""
    values = {"vocab_size": len(tokenizer)}
    for name in ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id", "decoder_start_token_id"):
        token_id = getattr(tokenizer, "eos_token_id" if name == "decoder_start_token_id" else name, None)
        if hasattr(config, name) and token_id is not None:
            values[name] = token_id
    return type(config).from_dict({**config.to_dict(), **values})


class LanguageModelTrainer(HfsslModelCardMixin, Trainer):
    """``Trainer`` that writes hfssl's model card (everything else is transformers')."""
