"""word2vec's data pipeline: a corpus encoded once into ids, and a collator that makes each epoch's
(center, context) rows with numpy, a whole batch at a time.

* :func:`encode_corpus` tokenises documents with the word-level tokenizer (``hfssl.tokenization``)
  into one flat int32 array of in-vocabulary ids plus sentence offsets. A "sentence" is the unit
  that windows never cross: a paragraph (blank-line separated, the default), a line or a whole
  document; sentences longer than ``max_sentence_length`` are cut into pieces (gensim truncates
  them at 10,000 words instead). Out-of-vocabulary words are removed before windowing, as in
  word2vec.c and gensim.
* :class:`SentenceDataset` serves sentences; the Trainer's sampler shuffles them every epoch, and
  :class:`SentenceCollator` packs a batch of them into two flat tensors.
* :func:`training_rows`, called where the model runs (``Word2VecTrainer.compute_loss``),
  subsamples frequent words (Mikolov's keep probability, drawn anew every time a sentence is
  seen), draws every center's shrunk window in ``[1, window]`` and emits skip-gram pairs
  (``center_ids`` (N,), ``context_ids`` (N,)) or CBOW windows (``center_ids`` (N,),
  ``context_ids`` (N, 2 * window), ``context_mask``), vectorised over the batch. Negatives are
  drawn by the model.

All randomness comes from torch's generator at the step, which the Trainer seeds and restores on
resume, so a resumed run repeats the uninterrupted one exactly.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedTokenizerFast

logger = logging.getLogger(__name__)

SENTENCE_UNITS = ("paragraph", "line", "document")


@dataclass
class EncodedCorpus:
    """
    Args:
        token_ids: (T,) int32 ids of the in-vocabulary words of every sentence, back to back.
        sentence_offsets: (S + 1,) int64; sentence ``i`` is ``token_ids[offsets[i]:offsets[i + 1]]``.
        num_raw_words: words in the text before unknown words were removed (the basis of words/s,
            as gensim counts it).
        num_documents: documents read.
    """

    token_ids: np.ndarray
    sentence_offsets: np.ndarray
    num_raw_words: int
    num_documents: int

    @property
    def num_sentences(self) -> int:
        return len(self.sentence_offsets) - 1

    def word_counts(self, vocab_size: int) -> np.ndarray:
        """Occurrences of every id in the corpus, (vocab_size,) int64."""
        return np.bincount(self.token_ids, minlength=vocab_size).astype(np.int64)


def split_sentences(text: str, unit: str) -> list[str]:
    """Cut a document into the units that windows do not cross: ``paragraph``, ``line`` or ``document``."""
    if unit == "document":
        return [text]
    separator = "\n\n" if unit == "paragraph" else "\n"
    return [piece for piece in text.split(separator) if piece.strip()]


def encode_corpus(
    tokenizer: PreTrainedTokenizerFast,
    texts: Iterable[str],
    sentence_unit: str = "paragraph",
    max_sentence_length: int = 10_000,
    batch_size: int = 1_000,
) -> EncodedCorpus:
    """Tokenise ``texts`` (one document each) into an :class:`EncodedCorpus` (see the module docstring)."""
    if sentence_unit not in SENTENCE_UNITS:
        raise ValueError(f"sentence_unit must be one of {SENTENCE_UNITS}, got {sentence_unit!r}.")
    if max_sentence_length < 2:
        raise ValueError(f"max_sentence_length must be at least 2, got {max_sentence_length}.")
    backend = tokenizer.backend_tokenizer
    unk_id = tokenizer.unk_token_id
    pieces: list[np.ndarray] = []
    num_raw_words = num_documents = 0

    def flush(batch: list[str]) -> None:
        nonlocal num_raw_words
        for encoding in backend.encode_batch(batch, add_special_tokens=False):
            ids = np.asarray(encoding.ids, dtype=np.int32)
            num_raw_words += len(ids)
            ids = ids[ids != unk_id]
            pieces.extend(
                ids[start : start + max_sentence_length] for start in range(0, len(ids), max_sentence_length)
            )

    batch: list[str] = []
    for text in texts:
        num_documents += 1
        batch.extend(split_sentences(text, sentence_unit))
        if len(batch) >= batch_size:
            flush(batch)
            batch = []
    flush(batch)
    pieces = [piece for piece in pieces if len(piece) > 0]
    lengths = np.fromiter((len(piece) for piece in pieces), dtype=np.int64, count=len(pieces))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    token_ids = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int32)
    if len(token_ids) < 2:
        raise ValueError(
            f"The corpus has {len(token_ids)} in-vocabulary words in {num_documents} documents: too little text to make "
            "word2vec pairs. Give more text, or lower --min_count."
        )
    return EncodedCorpus(token_ids, offsets, num_raw_words, num_documents)


def keep_probabilities(word_counts: np.ndarray, sample: float) -> np.ndarray:
    """Mikolov's subsampling keep probability per id, (V,) float64 (word2vec.c, as gensim computes it):

        keep(w) = min(1, (sqrt(c_w / (t * N)) + 1) * (t * N) / c_w)

    with ``c_w`` the word's count, ``N`` the total count and ``t = sample``; ``sample=0`` keeps
    everything. Ids with count 0 (``[UNK]``) are never kept.
    """
    counts = np.asarray(word_counts, dtype=np.float64)
    if not 0 <= sample < 1:
        raise ValueError(f"sample must be in [0, 1), got {sample}.")
    keep = np.ones_like(counts)
    if sample > 0:
        threshold = sample * counts.sum()
        with np.errstate(divide="ignore", invalid="ignore"):
            keep = np.minimum(1.0, (np.sqrt(counts / threshold) + 1) * threshold / counts)
    keep[counts == 0] = 0.0
    return keep


def noise_distribution(word_counts: np.ndarray, ns_exponent: float = 0.75) -> np.ndarray:
    """Probabilities of drawing each id as a negative, (V,): ``c_w ** ns_exponent`` normalised; 0 for count 0."""
    counts = np.asarray(word_counts, dtype=np.float64)
    weights = np.where(counts > 0, counts**ns_exponent, 0.0)
    return weights / weights.sum()


def alias_table(probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Walker's alias method (Vose's construction) for drawing from ``probabilities`` (V,) in O(1).

    Returns ``(threshold, alias)``, (V,) float64 and int64: draw a column ``i`` uniformly and
    ``u ~ U[0, 1)``; the draw is ``i`` if ``u < threshold[i]``, else ``alias[i]``. Exact up to
    floating point; an id of probability 0 gets threshold 0, so it is never drawn.
    Vose 1991, "A linear algorithm for generating random numbers with a given distribution".
    """
    size = len(probabilities)
    scaled = np.asarray(probabilities, dtype=np.float64) * size / np.sum(probabilities)
    threshold, alias = np.ones(size), np.arange(size)
    # ids of probability 0 are paired first (popped from the end), while tall columns surely remain
    small = list(np.flatnonzero((scaled < 1.0) & (scaled > 0))) + list(np.flatnonzero(scaled == 0))
    large = list(np.flatnonzero(scaled >= 1.0))
    while small and large:
        short, tall = small.pop(), large[-1]
        threshold[short], alias[short] = scaled[short], tall
        scaled[tall] -= 1.0 - scaled[short]
        if scaled[tall] < 1.0:
            small.append(large.pop())
    return threshold, alias  # columns left over are full (threshold 1) up to rounding


class SentenceDataset(torch.utils.data.Dataset):
    """The sentences of an :class:`EncodedCorpus`; item ``i`` is an int32 array of ids."""

    def __init__(self, corpus: EncodedCorpus):
        self.corpus = corpus

    def __len__(self) -> int:
        return self.corpus.num_sentences

    def __getitem__(self, index: int) -> np.ndarray:
        start, end = self.corpus.sentence_offsets[index], self.corpus.sentence_offsets[index + 1]
        return self.corpus.token_ids[start:end]


class SentenceCollator:
    """Sentences (int arrays) -> ``{"token_ids": (T,) int64, "sentence_ids": (T,) int64}``: the
    sentences back to back and, for every token, the index of its sentence within the batch.

    The random parts (subsampling, window sizes, negatives) happen later, where the model runs,
    in :func:`training_rows` and the model's ``sample_negatives``: they draw from the generator
    the Trainer seeds and restores on resume, whatever the data loader prefetches.
    """

    def __call__(self, sentences: list[np.ndarray]) -> dict[str, torch.Tensor]:
        lengths = torch.tensor([len(sentence) for sentence in sentences])
        return {
            "token_ids": torch.from_numpy(np.concatenate(sentences).astype(np.int64)),
            "sentence_ids": torch.repeat_interleave(torch.arange(len(sentences)), lengths),
        }


def training_rows(
    token_ids: torch.Tensor, sentence_ids: torch.Tensor, keep_probability: torch.Tensor, window: int, sg: bool
) -> dict[str, torch.Tensor]:
    """One batch of word2vec rows from packed sentences, on their device.

    Frequent words are subsampled (each kept with ``keep_probability[id]``, drawn anew each time),
    then every kept center draws its window ``b`` uniformly from ``[1, window]`` and pairs with
    the kept words up to ``b`` positions away in its sentence (word2vec.c's order: subsample,
    then window).

    Args:
        token_ids, sentence_ids: (T,) as :class:`SentenceCollator` makes them.
        keep_probability: (V,) float, see :func:`keep_probabilities`.
    Returns:
        skip-gram: ``center_ids`` (N,), ``context_ids`` (N,), one row per (center, context) pair;
        CBOW: ``center_ids`` (N,), ``context_ids`` (N, 2 * window), ``context_mask`` (N, 2 * window)
        bool, one row per center with at least one context word.
    """
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}.")
    kept = torch.rand(token_ids.shape, device=token_ids.device) < keep_probability[token_ids]
    tokens, sentence_of = token_ids[kept], sentence_ids[kept]
    reach = torch.randint(1, window + 1, tokens.shape, device=tokens.device)  # each center's shrunk window
    if sg:
        return _skipgram_pairs(tokens, sentence_of, reach, window)
    return _cbow_windows(tokens, sentence_of, reach, window)


def _skipgram_pairs(
    tokens: torch.Tensor, sentence_of: torch.Tensor, reach: torch.Tensor, window: int
) -> dict[str, torch.Tensor]:
    centers, contexts = [], []
    for offset in range(1, min(window, max(len(tokens) - 1, 0)) + 1):
        same_sentence = sentence_of[offset:] == sentence_of[:-offset]  # positions i and i + offset
        right = torch.nonzero(same_sentence & (reach[:-offset] >= offset)).squeeze(1)  # center i, context i + offset
        left = torch.nonzero(same_sentence & (reach[offset:] >= offset)).squeeze(1)  # center i + offset, context i
        centers += [tokens[right], tokens[left + offset]]
        contexts += [tokens[right + offset], tokens[left]]
    empty = tokens.new_zeros(0)
    return {
        "center_ids": torch.cat(centers) if centers else empty,
        "context_ids": torch.cat(contexts) if contexts else empty,
    }


def _cbow_windows(
    tokens: torch.Tensor, sentence_of: torch.Tensor, reach: torch.Tensor, window: int
) -> dict[str, torch.Tensor]:
    device = tokens.device
    offsets = torch.cat([torch.arange(-window, 0, device=device), torch.arange(1, window + 1, device=device)])  # (2W,)
    positions = torch.arange(len(tokens), device=device)[:, None] + offsets[None, :]  # (n, 2W)
    inside = (positions >= 0) & (positions < len(tokens))
    positions = positions.clamp(0, max(len(tokens) - 1, 0))
    mask = inside & (sentence_of[positions] == sentence_of[:, None]) & (offsets.abs()[None, :] <= reach[:, None])
    has_context = mask.any(dim=1)
    mask = mask[has_context]
    return {
        "center_ids": tokens[has_context],
        "context_ids": torch.where(mask, tokens[positions[has_context]], 0),
        "context_mask": mask,
    }
