"""Frozen features of a text encoder: the last hidden states (B, T, D) pooled to (B, D) by one rule.

``cls`` (first token), ``mean`` (mean over real tokens, padding excluded through the attention
mask) or ``last`` (last real token, whatever the padding side). ``auto`` takes ``cls`` for
BERT-like encoders (:data:`CLS_POOLING_MODEL_TYPES`), whose classifiers read that token, else
``mean``. An encoder-decoder (BART) is judged by its encoder
(:func:`hfssl.evaluation.text_checkpoints.load_text_encoder`).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import numpy as np
import torch
from transformers import PreTrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

TEXT_POOLING_CHOICES = ("auto", "cls", "mean", "last")
# Encoders trained with a sentence-level token in front ([CLS], <s>) whose classifiers read that token.
CLS_POOLING_MODEL_TYPES = frozenset(
    {"bert", "roberta", "xlm-roberta", "camembert", "electra", "albert", "distilbert", "deberta", "deberta-v2",
     "megatron-bert", "mpnet", "ernie", "modernbert"}
)  # fmt: skip


def resolve_text_pooling(config: PreTrainedConfig, pooling: str = "auto") -> str:
    """``pooling``, with ``"auto"`` read as ``"cls"`` for BERT-like encoders and ``"mean"`` for the rest."""
    if pooling not in TEXT_POOLING_CHOICES:
        raise ValueError(f"pooling must be one of {TEXT_POOLING_CHOICES}, got {pooling!r}.")
    if pooling != "auto":
        return pooling
    return "cls" if config.model_type in CLS_POOLING_MODEL_TYPES else "mean"


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
