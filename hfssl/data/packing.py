"""Causal-LM data: documents tokenised, joined with an end-of-text token and cut into blocks.

As GPT-2 was trained (Radford et al. 2019) and as transformers' ``run_clm`` example groups texts:
every document is followed by the tokenizer's ``eos_token`` (``<|endoftext|>``), so the model
learns where documents end and never sees two documents glued without a separator; the token
stream is cut into blocks of ``block_size``. Unlike ``run_clm``, the stream's tail is kept as a
shorter block instead of being dropped (one per ``map`` batch of documents at most), and the
collator pads it with labels -100, so no text is lost and padding never enters the loss.
"""

from __future__ import annotations

import logging

from transformers import PreTrainedTokenizerBase

from .text import TEXT_COLUMN, TextDataset

logger = logging.getLogger(__name__)


def pack_documents(
    dataset: TextDataset,
    tokenizer: PreTrainedTokenizerBase,
    block_size: int,
    num_proc: int | None = None,
    documents_per_batch: int = 1000,
) -> TextDataset:
    """A dataset of ``{"input_ids": list[int]}`` blocks (``block_size`` tokens, the last of each
    batch of ``documents_per_batch`` documents possibly shorter) from a dataset of documents
    (column ``"text"``); works on ``Dataset`` and streaming ``IterableDataset`` alike."""
    if tokenizer.eos_token_id is None:
        raise ValueError(
            "Packing documents needs a tokenizer with an eos_token (the end-of-text separator); this one has none."
        )
    if block_size < 2:
        raise ValueError(f"--block_size must be at least 2 tokens (one input and one target), got {block_size}.")
    if tokenizer.pad_token_id is not None and tokenizer.pad_token_id == tokenizer.eos_token_id:
        raise ValueError(
            "The tokenizer pads with its eos_token, so padding labels would also hide every document separator from the loss; "
            "give it a distinct pad token (hfssl's trained GPT tokenizers have '<pad>')."
        )
    columns = [name for name in (dataset.column_names or []) if name != TEXT_COLUMN] + [TEXT_COLUMN]
    kwargs = (
        {"num_proc": num_proc, "desc": f"Packing documents into blocks of {block_size} tokens"}
        if hasattr(dataset, "num_rows")
        else {}
    )
    return dataset.map(
        _pack_batch,
        batched=True,
        batch_size=documents_per_batch,
        remove_columns=columns,
        fn_kwargs={"tokenizer": tokenizer, "block_size": block_size},
        **kwargs,
    )


def _pack_batch(batch: dict, tokenizer: PreTrainedTokenizerBase, block_size: int) -> dict:
    """Blank documents add nothing (byte-level BPE would turn their spaces into tokens); a last piece
    of a single token has nothing to predict and is dropped."""
    texts = [text for text in batch[TEXT_COLUMN] if text and text.strip()]
    stream: list[int] = []
    for ids in tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []:
        stream.extend(ids)
        stream.append(tokenizer.eos_token_id)
    return {
        "input_ids": [
            stream[start : start + block_size]
            for start in range(0, len(stream), block_size)
            if len(stream) - start >= 2
        ]
    }
