"""Downstream evaluation of text encoders: frozen features with a linear probe, fine-tuning, perplexity.

Any transformers text checkpoint directory (or Hub id) with its tokenizer saved beside the weights
is evaluated as plain transformers loads it (``AutoModel``, ``AutoTokenizer``; remote code is never
run), so the backbones that hfssl's GPT, BERT and BART pretraining export are judged exactly as a
user would load them.

* Frozen features: the encoder's last hidden states (B, T, D) pooled to (B, D) by one rule,
  ``cls`` (first token), ``mean`` (mean over real tokens, padding excluded through the attention
  mask) or ``last`` (last real token, whatever the padding side). ``auto`` takes ``cls`` for
  BERT-like encoders (:data:`CLS_POOLING_MODEL_TYPES`), else ``mean``. An encoder-decoder (BART)
  is judged by its encoder.
* Linear probe: hfssl's standardised logistic regression (:mod:`.linear_probe`) on those features.
* Fine-tuning: ``AutoModelForSequenceClassification`` trained end to end with ``transformers.Trainer``.
* Perplexity of a causal LM: the sliding-window evaluation of the transformers "Perplexity of
  fixed-length models" guide (:func:`strided_perplexity`).

Classification is scored with the packaged ``evaluate`` modules ``accuracy`` and ``macro_f1``.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import datasets
import numpy as np
import torch
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    PreTrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
    TrainingArguments,
)
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MODEL_FOR_MASKED_LM_MAPPING_NAMES

from .linear_probe import _fit, choose_C
from .metric_modules import _to_numpy, compute_accuracy, load_metric

logger = logging.getLogger(__name__)

TEXT_POOLING_CHOICES = ("auto", "cls", "mean", "last")
# Encoders trained with a sentence-level token in front ([CLS], <s>) whose classifiers read that token.
CLS_POOLING_MODEL_TYPES = frozenset(
    {"bert", "roberta", "xlm-roberta", "camembert", "electra", "albert", "distilbert", "deberta", "deberta-v2",
     "megatron-bert", "mpnet", "ernie", "modernbert"}
)  # fmt: skip
# Fallback for tokenizers without an end-of-text token: documents are joined as the transformers guide does.
DOCUMENT_SEPARATOR = "\n\n"


# ----------------------------------------------------------------------------- loading


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


def resolve_text_pooling(config: PreTrainedConfig, pooling: str = "auto") -> str:
    """``pooling``, with ``"auto"`` read as ``"cls"`` for BERT-like encoders and ``"mean"`` for the rest."""
    if pooling not in TEXT_POOLING_CHOICES:
        raise ValueError(f"pooling must be one of {TEXT_POOLING_CHOICES}, got {pooling!r}.")
    if pooling != "auto":
        return pooling
    return "cls" if config.model_type in CLS_POOLING_MODEL_TYPES else "mean"


def max_positions(config: PreTrainedConfig) -> Optional[int]:
    """How many positions the model can read (``max_position_embeddings`` or GPT-2's ``n_positions``); None if unbounded."""
    return getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)


def check_sequence_length(config: PreTrainedConfig, length: int, flag: str) -> None:
    limit = max_positions(config)
    if length < 1 or (limit is not None and length > limit):
        raise ValueError(
            f"{flag} must be in [1, {limit}] for this {config.model_type!r} model (its positions), got {length}."
        )


# ----------------------------------------------------------------------------- frozen features


def pool_hidden_states(hidden_states: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Pool token states (B, T, D) to (B, D) by ``pooling``; ``attention_mask`` (B, T) is 1 on real tokens.

    ``"cls"``: the first position. ``"mean"``: the mean over real tokens (padding excluded).
    ``"last"``: the last real token, found from the mask, so left and right padding both work.
    """
    if pooling == "cls":
        return hidden_states[:, 0]
    mask = attention_mask.to(hidden_states.dtype)
    if pooling == "mean":
        return (hidden_states * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
    if pooling == "last":
        positions = torch.arange(hidden_states.shape[1], device=hidden_states.device)
        last = torch.where(attention_mask.bool(), positions, -1).max(1).values.clamp(min=0)
        return hidden_states[torch.arange(hidden_states.shape[0], device=hidden_states.device), last]
    raise ValueError(f"pooling must be one of {TEXT_POOLING_CHOICES[1:]} here, got {pooling!r}.")


def _model_inputs(model: torch.nn.Module, batch: dict) -> dict:
    """The entries of ``batch`` that ``model.forward`` takes (a tokenizer may add e.g. token_type_ids)."""
    accepted = inspect.signature(model.forward).parameters
    return {name: value for name, value in batch.items() if name in accepted}


@torch.no_grad()
def extract_text_features(
    encoder: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    pooling: str,
    max_length: int,
    batch_size: int = 32,
) -> torch.Tensor:
    """Pooled features (N, D) float32 on CPU, in the order of ``texts``.

    Texts are truncated to ``max_length`` tokens (special tokens included) and batched by length,
    so padding costs little; ``pooling`` is a resolved rule (``cls``, ``mean`` or ``last``).
    """
    if len(texts) == 0:
        raise ValueError("extract_text_features got no texts.")
    device = next(encoder.parameters()).device
    token_ids = tokenizer(list(texts), truncation=True, max_length=max_length)
    by_length = np.argsort([len(ids) for ids in token_ids["input_ids"]], kind="stable")
    batches = []
    for start in range(0, len(texts), batch_size):
        rows = by_length[start : start + batch_size]
        batch = tokenizer.pad(
            {name: [values[i] for i in rows] for name, values in token_ids.items()}, return_tensors="pt"
        )
        batch = {name: tensor.to(device) for name, tensor in batch.items()}
        hidden_states = encoder(**_model_inputs(encoder, batch)).last_hidden_state
        batches.append(pool_hidden_states(hidden_states, batch["attention_mask"], pooling).float().cpu())
    features = torch.empty(len(texts), batches[0].shape[1])
    features[torch.as_tensor(by_length)] = torch.cat(batches)
    return features


# ----------------------------------------------------------------------------- labels and metrics


@dataclass
class ClassLabels:
    """Class ids of the train and eval rows, and the class names (None for plain integer labels)."""

    train: np.ndarray
    eval: np.ndarray
    names: Optional[list[str]]

    @property
    def num_labels(self) -> int:
        return len(self.names) if self.names is not None else int(max(self.train.max(), self.eval.max())) + 1

    def name(self, label_id: int):
        """The name of ``label_id`` when classes have names, else the id itself."""
        return self.names[label_id] if self.names is not None else int(label_id)


def encode_class_labels(train_labels: Sequence, eval_labels: Sequence, feature=None) -> ClassLabels:
    """Class ids for label columns holding strings (ids follow the sorted names) or non-negative ints.

    ``feature`` is the column's ``datasets`` feature: a ``ClassLabel`` supplies the names of its ids.
    """
    values = list(train_labels) + list(eval_labels)
    if any(value is None for value in values):
        raise ValueError("Some rows have no label (None); classification needs a label on every train and eval row.")
    if all(isinstance(value, str) for value in values):
        names = sorted(set(values))
        unseen = sorted(set(eval_labels) - set(train_labels))
        if unseen:
            logger.warning("Eval classes absent from the train split (never predicted by a classifier): %s", unseen)
        index = {name: i for i, name in enumerate(names)}
        return ClassLabels(
            np.array([index[v] for v in train_labels]), np.array([index[v] for v in eval_labels]), names
        )
    if not all(isinstance(value, (int, np.integer)) and not isinstance(value, bool) for value in values):
        kinds = sorted({type(value).__name__ for value in values})
        raise ValueError(
            f"Labels must be class names (str) or class ids (int); found {kinds}. Regression targets are not "
            "supported: pass --label_column_name with a column of classes."
        )
    if min(values) < 0:
        raise ValueError(
            f"Labels must be non-negative class ids, found {min(values)} (a -1 label usually marks an unlabelled test "
            "split): pass --eval_split or --validation_file with a labelled split."
        )
    names = list(feature.names) if isinstance(feature, datasets.ClassLabel) else None
    return ClassLabels(np.asarray(train_labels, dtype=np.int64), np.asarray(eval_labels, dtype=np.int64), names)


def compute_macro_f1(predictions, references) -> float:
    """Macro-averaged F1 of class ids ``predictions`` (N,) against ``references`` (N,): sklearn's
    ``f1_score(average="macro")`` over the classes present in either."""
    result = load_metric("macro_f1").compute(predictions=_to_numpy(predictions), references=_to_numpy(references))
    return result["macro_f1"]


def classification_metrics(predictions, references, prefix: str) -> dict[str, float]:
    """``{prefix}_accuracy`` and ``{prefix}_macro_f1`` of class ids (N,) against references (N,)."""
    return {
        f"{prefix}_accuracy": compute_accuracy(predictions, references),
        f"{prefix}_macro_f1": compute_macro_f1(predictions, references),
    }


@dataclass
class ClassificationResult:
    """Figures of one protocol and its predicted class ids (M,) on the eval rows."""

    metrics: dict[str, float]
    predictions: np.ndarray


# ----------------------------------------------------------------------------- linear probe


def linear_probe_predictions(
    train_features,
    train_labels,
    eval_features,
    C: float | Sequence[float] = (0.1, 1.0, 10.0),
    max_iter: int = 100,
    seed: int = 0,
) -> tuple[np.ndarray, float]:
    """(eval predictions (M,), chosen C) of hfssl's linear probe (see ``linear_probe_accuracy``) on
    features (N, D) and (M, D), with train class ids (N,).

    With several ``C`` the choice needs a stratified held-out share of the train rows; when a class
    is too rare for one (common with many classes and few rows) the middle candidate is used, logged.
    """
    train_x, train_y = _to_numpy(train_features).astype(np.float32), _to_numpy(train_labels)
    Cs = [float(c) for c in np.atleast_1d(C)]
    chosen_C = choose_C(train_x, train_y, Cs, max_iter, seed)
    model = _fit(train_x, train_y, chosen_C, max_iter)
    return model.predict(_to_numpy(eval_features).astype(np.float32)), chosen_C


def linear_probe_text_classifier(
    encoder: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train_texts: Sequence[str],
    train_labels: np.ndarray,
    eval_texts: Sequence[str],
    eval_labels: np.ndarray,
    pooling: str,
    max_length: int,
    batch_size: int = 32,
    seed: int = 0,
) -> ClassificationResult:
    """Linear probe on frozen pooled features: ``linear_probe_accuracy``, ``linear_probe_macro_f1``, ``linear_probe_C``."""
    train_features = extract_text_features(encoder, tokenizer, train_texts, pooling, max_length, batch_size)
    eval_features = extract_text_features(encoder, tokenizer, eval_texts, pooling, max_length, batch_size)
    predictions, chosen_C = linear_probe_predictions(train_features, train_labels, eval_features, seed=seed)
    return ClassificationResult(
        {**classification_metrics(predictions, eval_labels, "linear_probe"), "linear_probe_C": chosen_C}, predictions
    )


# ----------------------------------------------------------------------------- fine-tuning


def _tokenized_dataset(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], labels: np.ndarray, max_length: int
) -> datasets.Dataset:
    """Token ids (unpadded: the collator pads each batch) and "labels" of each row."""
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length)
    return datasets.Dataset.from_dict({**encoded, "labels": labels.tolist()})


def finetune_text_classifier(
    model_name_or_path: str,
    tokenizer: PreTrainedTokenizerBase,
    train_texts: Sequence[str],
    labels: ClassLabels,
    eval_texts: Sequence[str],
    max_length: int,
    training_args: TrainingArguments,
    random_init: bool = False,
) -> ClassificationResult:
    """Fine-tune ``AutoModelForSequenceClassification`` (the checkpoint plus a new head) on the train
    rows with ``Trainer`` as ``training_args`` say, then predict the eval rows:
    ``finetune_accuracy``, ``finetune_macro_f1``.

    The config's ``pad_token_id`` is set to the tokenizer's: GPT-2-style classifiers read the last
    token that is not padding, and a GPT-2 config has no padding id of its own.
    """
    names = labels.names or [str(i) for i in range(labels.num_labels)]
    config = AutoConfig.from_pretrained(
        model_name_or_path, num_labels=labels.num_labels, id2label=dict(enumerate(names)),
        label2id={name: i for i, name in enumerate(names)}, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    if random_init:
        model = AutoModelForSequenceClassification.from_config(config)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(model_name_or_path, config=config)
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=_tokenized_dataset(tokenizer, train_texts, labels.train, max_length),
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
    )
    trainer.train()
    output = trainer.predict(_tokenized_dataset(tokenizer, eval_texts, labels.eval, max_length))
    logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
    predictions = np.argmax(logits, axis=-1)
    return ClassificationResult(classification_metrics(predictions, labels.eval, "finetune"), predictions)


# ----------------------------------------------------------------------------- perplexity


def is_causal_lm_config(config: PreTrainedConfig) -> bool:
    """Whether the checkpoint is a left-to-right language model: a decoder-only model type, or an encoder
    type configured as a decoder (``is_decoder``). BERT has a causal-LM class too, but a masked-LM
    checkpoint read left to right has no meaningful perplexity."""
    if config.is_encoder_decoder or config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return False
    return bool(getattr(config, "is_decoder", False)) or config.model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES


def check_causal_lm(config: PreTrainedConfig, model_name_or_path: str) -> None:
    if not is_causal_lm_config(config):
        kind = "an encoder-decoder" if config.is_encoder_decoder else "a masked or encoder-only"
        raise ValueError(
            f"Perplexity needs a causal language model (GPT-style, e.g. a GPT2LMHeadModel checkpoint); "
            f"{model_name_or_path!r} is {kind} {config.model_type!r} model. Evaluate it with --protocol linear or finetune."
        )


def load_causal_lm(
    model_name_or_path: str, random_init: bool = False
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """(``AutoModelForCausalLM``, tokenizer) of a causal-LM checkpoint; a checkpoint missing weights the
    LM needs (e.g. an untied output layer) is refused rather than scored with random ones."""
    config = AutoConfig.from_pretrained(model_name_or_path, trust_remote_code=False)
    check_text_checkpoint(config, model_name_or_path)
    check_causal_lm(config, model_name_or_path)
    tokenizer = load_text_tokenizer(model_name_or_path, config)
    if random_init:
        return AutoModelForCausalLM.from_config(config).eval(), tokenizer
    model, info = AutoModelForCausalLM.from_pretrained(model_name_or_path, config=config, output_loading_info=True)
    if info["missing_keys"]:
        raise ValueError(
            f"{model_name_or_path!r} lacks weights of its language-model head ({sorted(info['missing_keys'])}): "
            "save the LM model (e.g. GPT2LMHeadModel), not only its base model."
        )
    return model.eval(), tokenizer


def token_stream(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> torch.Tensor:
    """The documents as one token sequence (L,): each document's tokens followed by the end-of-text token,
    as GPT pretraining packs documents (the end of a document is a token to predict too). A tokenizer
    without an end-of-text token reads the documents joined by a blank line."""
    if tokenizer.eos_token_id is None:
        return torch.tensor(
            tokenizer(DOCUMENT_SEPARATOR.join(texts), add_special_tokens=False, verbose=False)["input_ids"]
        )
    documents = tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]
    return torch.tensor([token for document in documents for token in [*document, tokenizer.eos_token_id]])


def strided_windows(num_tokens: int, block_size: int, stride: int) -> list[tuple[int, int, int]]:
    """``(begin, end, first_scored)`` of each window: tokens ``[begin, end)`` are fed to the model and
    tokens ``[first_scored, end)`` are scored, each exactly once over all windows.

    Windows start every ``stride`` tokens and hold up to ``block_size``. A token already scored by
    the previous window is only context here; the first token of a window never is (nothing before
    it), so with ``stride == block_size`` (disjoint blocks) each block's first token goes unscored, and
    with ``stride < block_size`` only the very first token is, every other one seeing at least
    ``block_size - stride`` tokens of context.
    """
    if not 1 <= stride <= block_size:
        raise ValueError(f"stride must be in [1, block_size={block_size}], got {stride}.")
    windows, previous_end = [], 0
    for begin in range(0, num_tokens, stride):
        end = min(begin + block_size, num_tokens)
        windows.append((begin, end, max(previous_end, begin + 1)))
        previous_end = end
        if end == num_tokens:
            break
    return windows


@torch.no_grad()
def strided_perplexity(
    model: PreTrainedModel, input_ids: torch.Tensor, block_size: int, stride: int, batch_size: int = 1
) -> dict:
    """Perplexity of causal LM ``model`` on the token sequence ``input_ids`` (L,) by sliding windows
    (see :func:`strided_windows`): exp of the mean negative log-likelihood over the scored tokens.

    Windows are run ``batch_size`` at a time; a shorter last window is right-padded, and padding is
    neither attended to nor scored. Returns ``{"perplexity", "eval_tokens"}`` (tokens scored).
    """
    if input_ids.numel() < 2:
        raise ValueError("Perplexity needs at least 2 tokens of text.")
    device = next(model.parameters()).device
    windows = strided_windows(input_ids.numel(), block_size, stride)
    total_nll, scored = 0.0, 0
    for start in range(0, len(windows), batch_size):
        group = windows[start : start + batch_size]
        width = max(end - begin for begin, end, _ in group)
        ids = torch.zeros(len(group), width, dtype=torch.long)
        mask = torch.zeros(len(group), width, dtype=torch.long)
        targets = torch.full((len(group), width), -100, dtype=torch.long)
        for row, (begin, end, first_scored) in enumerate(group):
            ids[row, : end - begin] = input_ids[begin:end]
            mask[row, : end - begin] = 1
            targets[row, first_scored - begin : end - begin] = input_ids[first_scored:end]
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
        # Position t predicts token t + 1.
        nll = torch.nn.functional.cross_entropy(
            logits[:, :-1].flatten(0, 1), targets[:, 1:].flatten().to(device), ignore_index=-100, reduction="sum"
        )
        total_nll += nll.item()
        scored += int((targets[:, 1:] != -100).sum())
    return {"perplexity": math.exp(total_nll / scored), "eval_tokens": scored}


def perplexity(
    model_name_or_path: str,
    texts: Sequence[str],
    block_size: Optional[int] = None,
    stride: Optional[int] = None,
    batch_size: int = 1,
    random_init: bool = False,
    device: Optional[torch.device | str] = None,
) -> dict:
    """Perplexity of the causal LM checkpoint on ``texts`` (see :func:`token_stream`, :func:`strided_perplexity`).

    ``block_size`` defaults to the model's context length, ``stride`` to half of ``block_size`` (every
    scored token but those of the first window sees at least half a block of context).
    Returns ``{"perplexity", "eval_tokens", "perplexity_block_size", "perplexity_stride"}``.
    """
    model, tokenizer = load_causal_lm(model_name_or_path, random_init)
    block_size = block_size or max_positions(model.config)
    if block_size is None:
        raise ValueError(f"{model_name_or_path!r} does not say its context length; pass a block size (--block_size).")
    check_sequence_length(model.config, block_size, "--block_size")
    stride = stride or max(1, block_size // 2)
    model.to(device or "cpu")
    result = strided_perplexity(model, token_stream(tokenizer, texts), block_size, stride, batch_size)
    return {**result, "perplexity_block_size": block_size, "perplexity_stride": stride}
