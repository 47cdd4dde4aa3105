"""Perplexity of a causal language model: the sliding-window evaluation of the transformers
"Perplexity of fixed-length models" guide (:func:`strided_perplexity`).

The documents are read as one token stream, each followed by the end-of-text token as GPT
pretraining packs them (:func:`token_stream`), and scored by windows of ``block_size`` tokens that
start every ``stride`` tokens, each token scored once (:func:`strided_windows`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Optional

import torch
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedConfig, PreTrainedModel, PreTrainedTokenizerBase
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MODEL_FOR_MASKED_LM_MAPPING_NAMES

from .text_checkpoints import check_sequence_length, check_text_checkpoint, load_text_tokenizer, max_positions

# Fallback for tokenizers without an end-of-text token: documents are joined as the transformers guide does.
DOCUMENT_SEPARATOR = "\n\n"


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
