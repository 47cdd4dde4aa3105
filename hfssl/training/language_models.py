"""What the language-model recipes (GPT, BERT, BART) share: their model arguments, the tokenizer
(trained on the data or loaded), the model built around it, and the trainer.

The backbone is named as in the vision recipes: ``--backbone`` is a transformers model type
(``gpt2``, ``bert``, ``bart``, ...) built from its default config with
``--backbone_config_overrides "n_layer=4,n_embd=256"``, or a checkpoint directory / Hub id whose
weights continue training (its tokenizer comes along unless ``--tokenizer_name`` is given).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from typing import Optional

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase, Trainer, TrainerCallback, TrainingArguments, set_seed

from ..backbones import build_backbone_config, is_checkpoint
from ..data.text import TextDataset, iter_texts
from ..tokenization import train_subword_tokenizer
from .arguments import resumed_checkpoint
from .model_card import HfsslModelCardMixin

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
    vocab_size: int = field(default=8000, metadata={"help": "Size of the tokenizer trained on the training text."})
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
        return AutoTokenizer.from_pretrained(source)
    with training_args.main_process_first(desc="training the tokenizer", local=False):
        if training_args.process_index == 0:
            logger.info("Training a %s tokenizer of %d tokens on the training text.", kind, args.vocab_size)
            tokenizer = train_subword_tokenizer(
                iter_texts(train), kind, special_tokens, vocab_size=args.vocab_size, lowercase=args.lowercase
            )
            tokenizer.save_pretrained(training_args.output_dir)
        else:
            tokenizer = AutoTokenizer.from_pretrained(training_args.output_dir)
    return tokenizer


def build_language_model(method, args: LanguageModelArguments, tokenizer: PreTrainedTokenizerBase, max_length: int):
    """A fresh ``method.model_class`` whose backbone matches ``tokenizer`` (vocabulary size and
    special token ids) and holds ``max_length`` positions; a checkpoint backbone brings its weights."""
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
    config = method.config_class(backbone_config=backbone_config)
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


class SeedPerProcess(TrainerCallback):
    """At the start of training, seed process ``i`` with ``seed + i``: ``Trainer`` seeds every process
    alike, so the masks and noise drawn in the training step would repeat across processes (process
    0 keeps the one-process stream). A resumed run then restores each process's own saved RNG state."""

    def on_train_begin(self, args, state, control, **kwargs):
        set_seed(args.seed + args.process_index)


def train_and_evaluate(
    trainer: Trainer, training_args: TrainingArguments, evaluate: bool, derived_metrics=None
) -> dict:
    """What every language-model recipe does after building its trainer: train (resuming from
    ``--resume_from_checkpoint``), save the train metrics and state, then (with ``evaluate``)
    evaluate and save the eval metrics, adding ``derived_metrics(metrics)`` (e.g. perplexity).
    Returns the eval metrics ({} without evaluation)."""
    train_result = trainer.train(resume_from_checkpoint=resumed_checkpoint(training_args))
    trainer.log_metrics("train", train_result.metrics)
    trainer.save_metrics("train", train_result.metrics)
    trainer.save_state()
    if not evaluate:
        return {}
    metrics = trainer.evaluate()
    if derived_metrics is not None:
        metrics.update(derived_metrics(metrics))
    trainer.log_metrics("eval", metrics)
    trainer.save_metrics("eval", metrics, combined=True)
    return metrics


def keep_examples(examples: list) -> list:
    """A DataLoader ``collate_fn`` that leaves the examples as they are (see :class:`LanguageModelTrainer`)."""
    return list(examples)


class LanguageModelTrainer(HfsslModelCardMixin, Trainer):
    """``Trainer`` that writes hfssl's model card, draws training masks where the model runs, and
    evaluates with its own collator.

    ``collate_in_training_step``: a collator that draws random masks or noise (BERT, BART) runs at
    the start of each training step instead of in the DataLoader, which only lists the examples.
    accelerate's DataLoader fetches one batch ahead, so in-loader draws for batch n + 1 would happen
    before checkpoint n saves the RNG state, and a resumed run would mask differently; drawn in the
    step, they come after it, and resuming reproduces the uninterrupted run exactly (tested). It is
    also where hfssl's vision views and word2vec windows are drawn.

    ``eval_data_collator``: a collator seeded once, so that every evaluation scores the same masked
    validation text (a fresh copy for each evaluation, so its draws repeat exactly; with
    ``--dataloader_num_workers`` above 0 the recipes' eval collators seed workers by their id,
    ``worker_seed_from_id``, so the draws repeat with workers too, for the same number of workers).

    Every process draws its own masks (:class:`SeedPerProcess`)."""

    def __init__(self, *args, eval_data_collator=None, collate_in_training_step: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_callback(SeedPerProcess())
        self.eval_data_collator = eval_data_collator
        self.collate_in_training_step = collate_in_training_step

    def get_train_dataloader(self):
        if not self.collate_in_training_step:
            return super().get_train_dataloader()
        config = self.accelerator.dataloader_config
        dispatch = config.dispatch_batches
        if isinstance(self.train_dataset, torch.utils.data.IterableDataset):
            if dispatch:
                raise ValueError(
                    "accelerator_config.dispatch_batches=True cannot carry a streamed training set here: its batches are "
                    "uncollated example lists (masks are drawn in the training step), and dispatching needs tensors. "
                    "Leave dispatch_batches unset, or drop --streaming."
                )
            # accelerate dispatches batches of iterable datasets by default, which needs tensors; instead every
            # process reads the stream and keeps its own share of it.
            config.dispatch_batches = False
        collator, self.data_collator = self.data_collator, keep_examples
        try:
            return super().get_train_dataloader()
        finally:
            self.data_collator = collator
            config.dispatch_batches = dispatch

    def training_step(self, model, inputs, num_items_in_batch=None):
        if isinstance(inputs, list):  # examples listed by keep_examples: collate (and draw masks) now
            inputs = self.data_collator(inputs)
        return super().training_step(model, inputs, num_items_in_batch)

    def floating_point_ops(self, inputs) -> int:
        return 0 if isinstance(inputs, list) else super().floating_point_ops(inputs)

    def get_eval_dataloader(self, eval_dataset=None):
        collator = self.data_collator if self.eval_data_collator is None else copy.deepcopy(self.eval_data_collator)
        train_collator, self.data_collator = self.data_collator, collator
        try:
            return super().get_eval_dataloader(eval_dataset)
        finally:
            self.data_collator = train_collator
