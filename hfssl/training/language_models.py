"""What the language-model recipes (GPT, BERT, BART) share: their model arguments, the tokenizer
(trained on the data or loaded), the model built around it, and the train-then-evaluate sequence
(the trainer is :class:`hfssl.training.SSLTrainer`, as for every method).

The backbone is named as in the vision recipes: ``--backbone`` is a transformers model type
(``gpt2``, ``bert``, ``bart``, ...) built from its default config with
``--backbone_config_overrides "n_layer=4,n_embd=256"``, or a checkpoint directory / Hub id whose
weights continue training (its tokenizer comes along unless ``--tokenizer_name`` is given).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional

from transformers import AutoTokenizer, PreTrainedTokenizerBase, Trainer, TrainingArguments

from ..backbones import build_backbone_config, is_checkpoint
from ..data.text import TextDataset, iter_texts
from ..tokenization import check_vocab_size, train_subword_tokenizer
from .arguments import resumed_checkpoint
from .finish import train_and_save_state

logger = logging.getLogger(__name__)


@dataclass
class LanguageModelArguments:
    """The model and tokenizer of a language-model recipe; parsed by ``HfArgumentParser``."""

    backbone: Optional[str] = field(
        default=None,
        metadata={
            "help": "A transformers model type (default: the method's, e.g. gpt2) or a checkpoint to continue from."
        },
    )
    backbone_config_overrides: Optional[str] = field(
        default=None, metadata={"help": "Overrides of the backbone's config, e.g. 'n_layer=4,n_embd=256,n_head=4'."}
    )
    tokenizer_name: Optional[str] = field(
        default=None,
        metadata={"help": "A saved tokenizer (directory or Hub id) to use instead of training one on the data."},
    )
    vocab_size: int = field(
        default=8000,
        metadata={
            "help": "Size of the tokenizer trained on the training text: at least 258 for GPT's byte-level BPE and 261 "
            "for BART's (256 bytes and the special tokens); smaller is refused, and a text too small for it gives "
            "fewer tokens (logged). Not used with --tokenizer_name or a checkpoint's tokenizer."
        },
    )
    lowercase: bool = field(
        default=False, metadata={"help": "Lower-case text in a trained WordPiece tokenizer (BERT uncased)."}
    )
    preprocessing_num_workers: Optional[int] = field(
        default=None, metadata={"help": "Processes for tokenising and packing the data."}
    )


def build_tokenizer(
    args: LanguageModelArguments, training_args: TrainingArguments, train: TextDataset, kind: str, special_tokens: str
) -> PreTrainedTokenizerBase:
    """See :func:`load_or_train_tokenizer`; a loaded tokenizer that pads with nothing, or with its
    end-of-text token (GPT-2's), gets a ``<pad>`` token of its own (the model's embeddings grow to
    match in :func:`build_language_model`): padding labels are -100, which must not hide separators."""
    tokenizer = load_or_train_tokenizer(args, training_args, train, kind, special_tokens)
    if tokenizer.pad_token_id is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        logger.warning("The tokenizer has no pad token distinct from its eos token; adding '<pad>'.")
        tokenizer.add_special_tokens({"pad_token": "<pad>"})
    return tokenizer


def load_or_train_tokenizer(
    args: LanguageModelArguments, training_args: TrainingArguments, train: TextDataset, kind: str, special_tokens: str
) -> PreTrainedTokenizerBase:
    """``--tokenizer_name``, else the backbone checkpoint's tokenizer, else one trained on ``train``
    (``kind`` and ``special_tokens`` as :func:`hfssl.tokenization.train_subword_tokenizer`).

    A trained tokenizer is trained once, by the main process, and saved in ``--output_dir``, where
    the other processes load it. Besides saving work, this keeps every process on the same ids:
    WordPiece ids are renumbered canonically, but the trainer breaks ties between equally frequent
    merges by ids it assigns in hash-map order (huggingface/tokenizers#1794), so on ties at the
    vocabulary limit two trainings could keep different tokens. For the same reason a resumed run
    takes the checkpoint's tokenizer."""
    source = (
        resumed_checkpoint(training_args)
        or args.tokenizer_name
        or (args.backbone if args.backbone and is_checkpoint(args.backbone) else None)
    )
    if source is not None:
        tokenizer = AutoTokenizer.from_pretrained(source)
        logger.info("Using the tokenizer of %s (%d tokens); --vocab_size is not used.", source, len(tokenizer))
        return tokenizer
    # On every process: an error raised by the main process alone would leave the others at the barrier.
    check_vocab_size(kind, special_tokens, args.vocab_size)
    with training_args.main_process_first(desc="training the tokenizer", local=False):
        if training_args.process_index == 0:
            logger.info("Training a %s tokenizer of %d tokens on the training text.", kind, args.vocab_size)
            tokenizer = train_subword_tokenizer(
                iter_texts(train), kind, special_tokens, vocab_size=args.vocab_size, lowercase=args.lowercase
            )
            logger.info("Trained a %s tokenizer of %d tokens.", kind, len(tokenizer))
            tokenizer.save_pretrained(training_args.output_dir)
        else:
            tokenizer = AutoTokenizer.from_pretrained(training_args.output_dir)
    return tokenizer


def build_language_model(
    method, args: LanguageModelArguments, tokenizer: PreTrainedTokenizerBase, max_length: int, **config_values
):
    """A fresh ``method.model_class`` whose backbone matches ``tokenizer`` (vocabulary size and
    special token ids) and holds ``max_length`` positions; a checkpoint backbone brings its weights.
    ``config_values`` set the method's config fields (e.g. BERT's ``mlm_probability``), validated there."""
    default_type = method.config_class.sub_configs_defaults["backbone_config"].model_type
    backbone = args.backbone or default_type
    backbone_config = build_backbone_config(backbone, args.backbone_config_overrides)
    if not is_checkpoint(backbone):
        backbone_config = _fit_to_tokenizer(backbone_config, tokenizer)
    elif backbone_config.vocab_size < len(tokenizer) - 1:
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
    config = method.config_class(backbone_config=backbone_config, **config_values)
    model = method.model_class(config)
    if is_checkpoint(backbone):
        model.backbone = config.backbone_auto_class.from_pretrained(backbone, config=backbone_config)
        if len(tokenizer) > backbone_config.vocab_size:  # the <pad> build_tokenizer added
            model.backbone.resize_token_embeddings(len(tokenizer))
            model.config.backbone_config = model.backbone.config
    if positions is not None:
        tokenizer.model_max_length = positions  # so that truncation=True in the saved tokenizer fits the model
    return model


def _fit_to_tokenizer(config, tokenizer: PreTrainedTokenizerBase):
    """The config with the tokenizer's vocabulary size and special token ids."""
    values = {"vocab_size": len(tokenizer)}
    for name in ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id", "decoder_start_token_id"):
        token_id = getattr(tokenizer, "eos_token_id" if name == "decoder_start_token_id" else name, None)
        if hasattr(config, name) and token_id is not None:
            values[name] = token_id
    return type(config).from_dict({**config.to_dict(), **values})


def train_and_evaluate(
    trainer: Trainer, training_args: TrainingArguments, evaluate: bool, derived_metrics=None
) -> dict:
    """What every language-model recipe does after building its trainer: train (resuming from
    ``--resume_from_checkpoint``), save the train metrics and state, then (with ``evaluate``)
    evaluate and save the eval metrics, adding ``derived_metrics(metrics)`` (e.g. perplexity).
    Returns the eval metrics ({} without evaluation)."""
    train_and_save_state(trainer, training_args)
    if not evaluate:
        return {}
    metrics = trainer.evaluate()
    if derived_metrics is not None:
        metrics.update(derived_metrics(metrics))
    trainer.log_metrics("eval", metrics)
    trainer.save_metrics("eval", metrics, combined=True)
    return metrics
