"""BART's denoising pre-training data: sentence permutation, text infilling and document rotation.

Lewis et al. 2020, "BART: Denoising Sequence-to-Sequence Pre-training for Natural Language
Generation, Translation, and Comprehension" (§2.2 noising transformations, §5.1 large-scale
pre-training: "we mask 30% of tokens in each document, and permute all sentences"), as fairseq's
``DenoisingDataset`` implements it for the released BART models (``--mask 0.3 --mask-random 0.1
--poisson-lambda 3.5 --permute-sentences 1 --rotate 0.0 --insert 0.0 --mask-length span-poisson
--replace-length 1``, whole words of the GPT-2 byte-level BPE; fairseq issue #1899).

Two parts:

* :func:`build_denoising_examples` turns documents (a ``"text"`` column) into examples
  ``{"input_ids": [<s>, ..., </s>], "sentence_lengths": [n_1, ..., n_S]}``: sentences (sentencex,
  :func:`hfssl.data.sentences.segment_sentences`) of one document packed greedily into chunks of at
  most ``max_seq_length`` tokens, ``sum(sentence_lengths) == len(input_ids) - 2``.
* :class:`DataCollatorForBartDenoising` noises a batch of examples, each in fairseq's order:
  1. sentence permutation (:func:`permute_sentences`),
  2. text infilling (:func:`text_infilling`): Poisson(lambda) span lengths (in words) until
     ``ceil(mask_ratio * words)`` words are covered; each span becomes one ``<mask>`` (or, with
     probability ``random_ratio``, one random token), a zero-length span an inserted ``<mask>``,
  3. document rotation (:func:`rotate_document`) with probability ``rotate_ratio``,
  and returns ``input_ids``/``attention_mask`` (noised), ``labels`` (the original document) and
  ``decoder_input_ids`` (labels shifted right after ``decoder_start_token_id``), ready for
  ``BartForConditionalGeneration(**batch)``. ``<s>`` and ``</s>`` stay at the ends, never noised.

Choices, and where they differ from fairseq:

* Sentence boundaries are stored, not marked by a token. fairseq finds sentences by a "full stop"
  token (GPT-2's ``.``, which misses ``?``/``!`` and splits at "Mr."; ``</s>`` for other
  dictionaries) because its token blocks carry no boundaries. Here sentencex's boundaries travel
  with the example as ``sentence_lengths``, so BART's input stays plain text as in the paper. A
  separator token is optional (``sentence_separator_id``, e.g. ``tokenizer.eos_token_id`` as fairseq
  does for mBART): it is appended to every sentence, travels with it, and is an ordinary maskable
  word like fairseq's full stop (with ``</s>`` the example then ends ``... </s> </s>``, as fairseq's).
* Every sentence is tokenised as ``" " + sentence``: its first word carries byte-level BPE's ``Ġ``
  wherever permutation puts it, so a sentence has the same tokens at any position and decoding a
  document gives its sentences separated by single spaces (fairseq's first sentence of a line has no
  leading space, and keeps that odd form when moved to the middle).
* Whole words by default (as fairseq's ``span-poisson`` with the GPT-2 BPE): a token starts a word
  when it carries the tokenizer's word-start marker (``Ġ`` for byte-level BPE, ``▁`` for
  SentencePiece) or lacks WordPiece's continuation marker ``##``, when it is a special token, and at
  every sentence start; ``whole_word_mask=False`` counts and masks single tokens instead.
* Spans are placed without overlap and with at least one unmasked word between two masks.
  fairseq draws span starts independently, so spans overlap (merging, which leaves fewer masked
  words than ``mask_ratio`` asks) or abut (two ``<mask>`` in a row, indistinguishable from one
  longer span), and insertions can land next to a span. Here exactly ``ceil(mask_ratio * words)``
  words are masked and every ``<mask>`` stands for one span: the span lengths keep fairseq's
  Poisson draws (the last one cut to the budget), and the arrangement of spans among the unmasked
  words is uniformly random. When the unmasked words are too few to separate all spans (a
  ``mask_ratio`` near 1 or a very short example), insertions are dropped first, then the surplus
  spans are merged into one.
* Random replacements (``random_ratio``, fairseq's ``--mask-random``; default 0.1 as the BART-large
  run, where fairseq's own default is 0) are drawn from the non-special tokens; fairseq draws from
  ids ``[1, vocabulary)``, which includes ``<pad>``, ``</s>`` and ``<mask>``.
* fairseq's separate ``--insert`` noise (insertions beyond the zero-length spans) and token deletion
  are left out: BART's final recipe does not use them (``--insert 0.0``).

Randomness: with ``seed=None`` the collator draws from torch's global generator (one draw per
batch seeds a numpy ``Generator``), so ``transformers.set_seed``/the Trainer and the DataLoader's
per-worker seeding make runs reproducible and workers different. With ``seed`` it keeps its own
numpy ``Generator``; inside a DataLoader worker that generator also mixes in the worker's seed (which
torch changes every epoch), so workers and epochs never repeat each other's noise.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase
from transformers.models.bart.modeling_bart import shift_tokens_right

from .masking import dataloader_worker_seed
from .sentences import segment_sentences
from .text import TEXT_COLUMN, TextDataset

logger = logging.getLogger(__name__)

LABEL_PAD_ID = -100
EXAMPLE_COLUMNS = ("input_ids", "sentence_lengths")
# Prefixes that mark a word start (byte-level BPE, SentencePiece) or a word continuation (WordPiece).
WORD_START_MARKERS = ("Ġ", "▁")
WORD_CONTINUATION_MARKERS = ("##",)


# ----------------------------------------------------------------------------- documents -> examples


def build_denoising_examples(
    dataset: TextDataset,
    tokenizer: PreTrainedTokenizerBase,
    max_seq_length: int = 512,
    text_column_name: str = TEXT_COLUMN,
    sentence_separator_id: int | None = None,
    language: str = "en",
    num_proc: int | None = None,
    documents_per_batch: int = 256,
) -> TextDataset:
    """Documents (column ``text_column_name``) to BART examples, one row per chunk of a document:

    * ``input_ids``: ``[bos] + sentence tokens + [eos]``, at most ``max_seq_length`` ids (fairseq's
      ``--tokens-per-sample``; keep it within the model's ``max_position_embeddings``);
    * ``sentence_lengths``: the token count of each sentence, in order, summing to
      ``len(input_ids) - 2``.

    Consecutive sentences of a document are packed greedily into chunks of at most
    ``max_seq_length - 2`` tokens (fairseq's ``complete_doc`` blocks: never across documents); a
    sentence longer than that is cut into pieces, each a sentence of its own. Blank documents are
    dropped and counted in the log; a one-sentence document gives one one-sentence example.
    ``sentence_separator_id`` (optional, e.g. ``tokenizer.eos_token_id``) is appended to every
    sentence. Works on ``Dataset`` and streaming ``IterableDataset`` alike; other columns are removed.
    """
    _check_special_tokens(tokenizer, ("bos", "eos"), "build BART examples")
    minimum = 3 + (sentence_separator_id is not None)
    if max_seq_length < minimum:
        raise ValueError(
            f"max_seq_length={max_seq_length} is too small: an example needs <s>, </s> and at least one token"
            f"{' plus its separator' if sentence_separator_id is not None else ''} ({minimum}); use e.g. 512 as BART did."
        )
    if sentence_separator_id is not None and not 0 <= sentence_separator_id < len(tokenizer):
        raise ValueError(
            f"sentence_separator_id={sentence_separator_id} is not a token id of the tokenizer (0..{len(tokenizer) - 1})."
        )
    columns = dataset.column_names
    if columns is not None and text_column_name not in columns:
        raise ValueError(
            f"The dataset has no {text_column_name!r} column (columns: {', '.join(columns) or 'none'}); "
            "pass text_column_name= the column that holds the documents, or rename it."
        )
    is_map_style = hasattr(dataset, "num_rows")
    kwargs = {"num_proc": num_proc} if is_map_style else {}
    documents = dataset.filter(_is_not_blank, batched=True, input_columns=[text_column_name], **kwargs)
    if is_map_style:
        num_blank = len(dataset) - len(documents)
        if num_blank:
            logger.info("Dropped %d blank documents of %d (nothing to denoise).", num_blank, len(dataset))
    if is_map_style:
        kwargs["desc"] = f"Packing sentences into BART examples of at most {max_seq_length} tokens"
    return documents.map(
        _examples_from_documents,
        batched=True,
        batch_size=documents_per_batch,
        input_columns=[text_column_name],
        remove_columns=list(columns) if columns is not None else [text_column_name],
        fn_kwargs={
            "tokenizer": tokenizer,
            "budget": max_seq_length - 2,
            "separator_id": sentence_separator_id,
            "language": language,
        },
        **kwargs,
    )


def _is_not_blank(texts: list[Any]) -> list[bool]:
    for text in texts:
        if text is not None and not isinstance(text, str):
            raise ValueError(
                f"The text column must hold strings (documents); found a {type(text).__name__}: {text!r:.80}."
            )
    return [bool(text and text.strip()) for text in texts]


def _examples_from_documents(
    texts: list[str], tokenizer: PreTrainedTokenizerBase, budget: int, separator_id: int | None, language: str
) -> dict[str, list[list[int]]]:
    """One batch of documents to examples; all sentences of the batch are tokenised in one call."""
    documents = [segment_sentences(text, language) for text in texts]
    sentences = [" " + sentence for document in documents for sentence in document]
    token_ids = tokenizer(sentences, add_special_tokens=False)["input_ids"] if sentences else []
    examples: dict[str, list[list[int]]] = {"input_ids": [], "sentence_lengths": []}
    start = 0
    for document in documents:
        document_ids = token_ids[start : start + len(document)]
        start += len(document)
        if separator_id is not None:
            document_ids = [ids + [separator_id] for ids in document_ids]
        for chunk, lengths in pack_sentences(document_ids, budget):
            examples["input_ids"].append([tokenizer.bos_token_id, *chunk, tokenizer.eos_token_id])
            examples["sentence_lengths"].append(lengths)
    return examples


def pack_sentences(sentences: Sequence[Sequence[int]], budget: int) -> list[tuple[list[int], list[int]]]:
    """Greedy packing of one document's sentences (token ids each) into chunks of at most ``budget``
    tokens: a list of ``(token ids, sentence lengths)``. A sentence longer than ``budget`` is cut
    into pieces of ``budget`` tokens (the last shorter), each packed as a sentence; empty sentences
    are skipped."""
    pieces = [sentence[start : start + budget] for sentence in sentences for start in range(0, len(sentence), budget)]
    chunks: list[tuple[list[int], list[int]]] = []
    ids: list[int] = []
    lengths: list[int] = []
    for piece in pieces:
        if ids and len(ids) + len(piece) > budget:
            chunks.append((ids, lengths))
            ids, lengths = [], []
        ids.extend(piece)
        lengths.append(len(piece))
    if ids:
        chunks.append((ids, lengths))
    return chunks


# ----------------------------------------------------------------------------- noising, one example


def permute_sentences(
    token_ids: np.ndarray, sentence_lengths: np.ndarray, ratio: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle ``ceil(ratio * S)`` randomly chosen sentences among their own places (fairseq's
    ``permute_sentences``; ``ratio=1`` shuffles them all, as BART does).

    Args:
        token_ids: (T,) the document without ``<s>``/``</s>``.
        sentence_lengths: (S,) lengths summing to T.
    Returns:
        The permuted tokens (T,) and the sentence lengths in their new order (S,).
    """
    num_sentences = len(sentence_lengths)
    num_to_permute = math.ceil(num_sentences * ratio)
    if num_to_permute < 2:
        return token_ids, sentence_lengths
    order = np.arange(num_sentences)
    chosen = rng.choice(num_sentences, size=num_to_permute, replace=False)
    order[chosen] = chosen[rng.permutation(num_to_permute)]
    sentence_starts = np.cumsum(sentence_lengths) - sentence_lengths
    return token_ids[_concatenated_ranges(sentence_starts[order], sentence_lengths[order])], sentence_lengths[order]


def sample_span_lengths(num_to_mask: int, poisson_lambda: float, rng: np.random.Generator) -> np.ndarray:
    """Span lengths (in words) drawn from Poisson(``poisson_lambda``) until they cover
    ``num_to_mask``; the last is cut so that they sum to exactly ``num_to_mask`` (fairseq's
    ``add_whole_word_mask``). Zeros are kept: they become inserted masks. Returns (K,) int64."""
    lengths = np.zeros(0, dtype=np.int64)
    while lengths.sum() < num_to_mask:
        draws = rng.poisson(poisson_lambda, size=math.ceil(num_to_mask / poisson_lambda) + 8)
        lengths = np.concatenate([lengths, draws])
    covered = np.cumsum(lengths)
    last = int(np.searchsorted(covered, num_to_mask))  # first span that reaches the budget
    lengths = lengths[: last + 1]
    lengths[last] -= covered[last] - num_to_mask
    return lengths


def place_spans(
    num_words: int, lengths: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where the spans of ``lengths`` (from :func:`sample_span_lengths`) go among ``num_words`` words.

    The ``U = num_words - sum(lengths)`` unmasked words leave ``U + 1`` gaps (before each of them
    and after the last); every span and every insertion (zero-length span) takes its own gap, drawn
    uniformly without replacement, so no two masks ever touch. When there are fewer gaps than masks,
    insertions are dropped, then the surplus spans merge into one (``sum(lengths)`` stays masked).

    Returns:
        span_starts (K,) and span_lengths (K,) in words, and insert_before (Z,): the word each
        inserted mask goes before (``num_words`` = at the end).
    """
    span_lengths = lengths[lengths > 0]
    num_gaps = num_words - int(span_lengths.sum()) + 1
    if len(span_lengths) > num_gaps:
        span_lengths = np.concatenate([span_lengths[: num_gaps - 1], span_lengths[num_gaps - 1 :].sum(keepdims=True)])
    num_inserts = min(int((lengths == 0).sum()), num_gaps - len(span_lengths))
    gaps = rng.choice(num_gaps, size=len(span_lengths) + num_inserts, replace=False)
    span_gaps, insert_gaps = gaps[: len(span_lengths)], gaps[len(span_lengths) :]
    masked_in_gap = np.zeros(num_gaps, dtype=np.int64)
    masked_in_gap[span_gaps] = span_lengths
    masked_before_gap = np.cumsum(masked_in_gap) - masked_in_gap
    return span_gaps + masked_before_gap[span_gaps], span_lengths, insert_gaps + masked_before_gap[insert_gaps]


def text_infilling(
    token_ids: np.ndarray,
    is_word_start: np.ndarray,
    mask_ratio: float,
    poisson_lambda: float,
    mask_token_id: int,
    random_ratio: float,
    random_token_ids: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """BART's text infilling of one document (§2.2): ``ceil(mask_ratio * W)`` of its W words are
    hidden in spans of Poisson(``poisson_lambda``) words; each span becomes a single ``<mask>``,
    each zero-length span inserts one, and each of those masks is a random token from
    ``random_token_ids`` instead with probability ``random_ratio``.

    Args:
        token_ids: (T,) the document without ``<s>``/``</s>``.
        is_word_start: (T,) bool, True where a word starts; ``is_word_start[0]`` must be True.
    Returns:
        The noised tokens, (T',) with T' <= T + number of insertions.
    """
    num_words = int(is_word_start.sum())
    num_to_mask = math.ceil(num_words * mask_ratio)
    if num_to_mask == 0:
        return token_ids
    span_starts, span_lengths, insert_before = place_spans(
        num_words, sample_span_lengths(num_to_mask, poisson_lambda, rng), rng
    )
    # Drawn whatever random_ratio is, so the spans of a seed do not depend on it.
    replacements = np.where(
        rng.random(len(span_starts) + len(insert_before)) < random_ratio,
        rng.choice(random_token_ids, size=len(span_starts) + len(insert_before)),
        mask_token_id,
    )
    word_first_token = np.flatnonzero(is_word_start)
    word_is_masked = np.zeros(num_words, dtype=bool)
    word_is_masked[_concatenated_ranges(span_starts, span_lengths)] = True
    token_word = np.cumsum(is_word_start) - 1
    span_first_tokens = word_first_token[span_starts]
    noised = token_ids.copy()
    noised[span_first_tokens] = replacements[: len(span_starts)]
    keep = ~word_is_masked[token_word]
    keep[span_first_tokens] = True
    kept_before = np.concatenate([[0], np.cumsum(keep)])
    insert_tokens = np.append(word_first_token, len(token_ids))[insert_before]
    return np.insert(noised[keep], kept_before[insert_tokens], replacements[len(span_starts) :])


def rotate_document(token_ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """BART's document rotation (§2.2): a token chosen uniformly becomes the first, what preceded it
    moves to the end (fairseq's ``add_rolling_noise``). ``token_ids``: (T,) without ``<s>``/``</s>``."""
    if len(token_ids) < 2:
        return token_ids
    return np.roll(token_ids, -int(rng.integers(len(token_ids))))


def word_start_table(tokenizer: PreTrainedTokenizerBase) -> np.ndarray:
    """(len(tokenizer),) bool: whether a token id starts a word, from the vocabulary's marker: ``Ġ``
    (byte-level BPE) or ``▁`` (SentencePiece) starts a word, WordPiece's ``##`` continues one,
    whichever marks the most tokens. Special tokens count as word starts (as in fairseq)."""
    tokens = [token or "" for token in tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))]
    markers = WORD_START_MARKERS + WORD_CONTINUATION_MARKERS
    counts = {marker: sum(token.startswith(marker) for token in tokens) for marker in markers}
    marker = max(counts, key=counts.get)
    if counts[marker] == 0:
        raise ValueError(
            f"Cannot tell where words start: no token carries a word marker ({', '.join(counts)}). "
            "Use whole_word_mask=False to mask tokens instead of whole words."
        )
    table = np.array([token.startswith(marker) for token in tokens], dtype=bool)
    if marker in WORD_CONTINUATION_MARKERS:
        table = ~table
    table[tokenizer.all_special_ids] = True
    return table


def _concatenated_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``concatenate([arange(s, s + n) for s, n in zip(starts, lengths)])``, without the loop."""
    offsets = np.cumsum(lengths) - lengths
    return np.repeat(starts - offsets, lengths) + np.arange(int(np.sum(lengths)))


# ----------------------------------------------------------------------------- the collator


@dataclass
class DataCollatorForBartDenoising:
    """Noises a batch of :func:`build_denoising_examples` rows for BART (see the module docstring).

    Returns ``torch.long`` tensors:

    * ``input_ids`` (B, L_in): noised, padded with ``pad_token_id``; ``attention_mask`` (B, L_in);
    * ``labels`` (B, L_out): the original ``<s> ... </s>`` (un-permuted, un-masked), -100 at padding;
    * ``decoder_input_ids`` (B, L_out): ``labels`` shifted right after ``decoder_start_token_id``
      (default the eos id, ``</s>``, as facebook/bart configs), -100 read as pad.

    Args:
        mask_ratio: share of words (tokens with ``whole_word_mask=False``) hidden by text infilling.
        poisson_lambda: mean span length in words (3.5 in BART-large's run, 3 in the paper's §2.2).
        random_ratio: share of masks replaced by a random non-special token (fairseq ``--mask-random``).
        permute_sentences: share of each example's sentences shuffled (1.0 = all, as BART).
        rotate_ratio: probability of rotating an example (0 in BART's final recipe).
        whole_word_mask: count and mask whole words (fairseq's ``span-poisson`` does) or tokens.
        pad_to_multiple_of: round the padded lengths up to a multiple of this.
        max_length: longest noised input; inserted masks can make the input longer than the original
            (with small ``poisson_lambda``), and a longer one is cut to this length, keeping ``</s>``
            last, so it fits the model's positions (the labels, the original, are never cut).
        seed: own generator seed; ``None`` draws from torch's global generator.
        worker_seed_from_id: inside a DataLoader worker, mix in the worker's id instead of its
            per-start seed, so a fresh copy draws the same noise on every pass: for evaluation.

    Under ``Trainer``, set ``remove_unused_columns=False``: ``sentence_lengths`` is not an argument of
    the model's ``forward``, so the Trainer would drop it before the collator sees it.
    """

    tokenizer: PreTrainedTokenizerBase
    mask_ratio: float = 0.3
    poisson_lambda: float = 3.5
    random_ratio: float = 0.1
    permute_sentences: float = 1.0
    rotate_ratio: float = 0.0
    whole_word_mask: bool = True
    decoder_start_token_id: int | None = None
    pad_to_multiple_of: int | None = None
    max_length: int | None = None
    seed: int | None = None
    worker_seed_from_id: bool = False
    _generator: np.random.Generator | None = field(default=None, init=False, repr=False)
    _generator_worker_seed: int | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        _check_special_tokens(self.tokenizer, ("bos", "eos", "pad", "mask"), "noise text for BART")
        for name in ("mask_ratio", "random_ratio", "permute_sentences", "rotate_ratio"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}.")
        if not self.poisson_lambda > 0:
            raise ValueError(f"poisson_lambda (the mean span length) must be positive, got {self.poisson_lambda}.")
        if self.decoder_start_token_id is None:
            self.decoder_start_token_id = self.tokenizer.eos_token_id
        vocab_size = len(self.tokenizer)
        self._word_starts = (
            word_start_table(self.tokenizer) if self.whole_word_mask else np.ones(vocab_size, dtype=bool)
        )
        self._random_token_ids = np.setdiff1d(np.arange(vocab_size), self.tokenizer.all_special_ids)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        rng = self._rng()
        originals = [self._example_ids(feature) for feature in features]
        noised = [self.noise(ids, lengths, rng) for ids, lengths in originals]
        input_ids, attention_mask = self._pad(noised, self.tokenizer.pad_token_id)
        labels, _ = self._pad([ids for ids, _ in originals], LABEL_PAD_ID)
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "labels": labels,
            "decoder_input_ids": shift_tokens_right(labels, self.tokenizer.pad_token_id, self.decoder_start_token_id),
        }

    def noise(self, input_ids: np.ndarray, sentence_lengths: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One example ``<s> ... </s>`` (T,) with its sentence lengths (S,) to its noised form (T',):
        permutation, infilling, rotation, in fairseq's order, between the untouched ``<s>`` and ``</s>``."""
        tokens = input_ids[1:-1]
        if self.permute_sentences > 0:
            tokens, sentence_lengths = permute_sentences(tokens, sentence_lengths, self.permute_sentences, rng)
        if self.mask_ratio > 0 and len(tokens):
            is_word_start = self._word_starts[tokens]
            sentence_starts = (np.cumsum(sentence_lengths) - sentence_lengths)[sentence_lengths > 0]
            is_word_start[sentence_starts] = True
            tokens = text_infilling(
                tokens, is_word_start, self.mask_ratio, self.poisson_lambda, self.tokenizer.mask_token_id,
                self.random_ratio, self._random_token_ids, rng,
            )  # fmt: skip
        if self.rotate_ratio > 0 and rng.random() < self.rotate_ratio:
            tokens = rotate_document(tokens, rng)
        if self.max_length is not None and len(tokens) + 2 > self.max_length:
            tokens = tokens[: max(self.max_length - 2, 0)]
        return np.concatenate([input_ids[:1], tokens, input_ids[-1:]])

    def _example_ids(self, feature: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        input_ids = np.asarray(feature["input_ids"], dtype=np.int64)
        if (
            len(input_ids) < 2
            or input_ids[0] != self.tokenizer.bos_token_id
            or input_ids[-1] != self.tokenizer.eos_token_id
        ):
            raise ValueError(
                "A BART example must be <s> ... </s> (bos first, eos last); build examples with "
                f"hfssl.data.denoising.build_denoising_examples. Got ids starting {input_ids[:5].tolist()}."
            )
        if "sentence_lengths" in feature:
            lengths = np.asarray(feature["sentence_lengths"], dtype=np.int64)
        elif self.permute_sentences > 0:
            raise ValueError(
                "Sentence permutation needs each example's 'sentence_lengths' (from build_denoising_examples); "
                "this example has none. Under a Trainer, set remove_unused_columns=False (it drops the columns the "
                "model's forward does not take); or set permute_sentences=0 to noise without sentences."
            )
        else:
            lengths = np.array([len(input_ids) - 2], dtype=np.int64)
        if lengths.sum() != len(input_ids) - 2 or (lengths < 0).any():
            raise ValueError(
                f"sentence_lengths sum to {int(lengths.sum())}, but the example has {len(input_ids) - 2} tokens between <s> and </s>."
            )
        return input_ids, lengths

    def _pad(self, rows: list[np.ndarray], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L) ids padded on the right with ``pad_id``, and the (B, L) mask of real tokens."""
        lengths = np.array([len(row) for row in rows])
        width = int(lengths.max())
        if self.pad_to_multiple_of:
            width = math.ceil(width / self.pad_to_multiple_of) * self.pad_to_multiple_of
        is_real = np.arange(width)[None, :] < lengths[:, None]
        padded = np.full((len(rows), width), pad_id, dtype=np.int64)
        padded[is_real] = np.concatenate(rows)
        return torch.from_numpy(padded), torch.from_numpy(is_real.astype(np.int64))

    def _rng(self) -> np.random.Generator:
        if self.seed is None:
            return np.random.default_rng(torch.randint(0, 2**31 - 1, (4,)).tolist())
        worker_seed = dataloader_worker_seed(self.worker_seed_from_id)
        if self._generator is None or self._generator_worker_seed != worker_seed:
            self._generator = np.random.default_rng([self.seed] if worker_seed is None else [self.seed, worker_seed])
            self._generator_worker_seed = worker_seed
        return self._generator


def _check_special_tokens(tokenizer: PreTrainedTokenizerBase, names: Sequence[str], purpose: str) -> None:
    missing = [f"{name}_token" for name in names if getattr(tokenizer, f"{name}_token_id", None) is None]
    if missing:
        raise ValueError(
            f"To {purpose} the tokenizer needs {', '.join(missing)}; this one has none. Train one with "
            "hfssl.tokenization.train_subword_tokenizer(texts, 'byte_level_bpe', 'bart') (<s>, <pad>, </s>, <unk>, <mask>)."
        )
