"""Next-sentence-prediction (NSP) examples for BERT pretraining (Devlin et al. 2019, section 3.1, "Task #2"),
built as Google's ``create_pretraining_data.py`` (github.com/google-research/bert) builds them.

transformers 5 removed ``TextDatasetForNextSentencePrediction``; this module replaces it with a
``datasets`` pipeline. Masking is not done here: masks are drawn anew every time a batch is made,
by :class:`hfssl.data.masking.DataCollatorForBertPretraining` (dynamic masking, Liu et al. 2019).

The algorithm, per document (Google's ``create_instances_from_document``):

1. A document is a list of sentences (:func:`hfssl.data.sentences.segment_sentences`), each
   tokenised without special tokens; sentences with no tokens and documents with no sentences
   are dropped, as Google drops empty lines and empty documents.
2. Sentences accumulate into a chunk until the chunk reaches ``target_seq_length`` tokens or the
   document ends. The target is ``max_num_tokens = max_seq_length - 3`` (room for ``[CLS]``, two
   ``[SEP]``), except with probability ``short_seq_prob`` a uniform length in ``[2, max_num_tokens]``.
3. The chunk is split after a uniform number of sentences ``a_end`` in ``[1, len(chunk) - 1]``:
   the sentences before are A. Half of the time (and always when the chunk holds one sentence) B
   is random: sentences of another document from a uniform start until ``target - len(A)`` tokens,
   and the chunk's sentences after ``a_end`` are "put back" to start the next chunk. Otherwise B is
   the rest of the chunk, the real continuation.
4. ``truncate_seq_pair``: while ``len(A) + len(B) > max_num_tokens``, drop one token from the
   front or the back (a coin flip) of the longer segment (B on a tie).

Where this differs from Google's script, and why:

* The short target is drawn for every chunk, not once per document: Google's comment asks for
  short sequences "10% of the time", and a once-per-document draw makes every pair of a long
  document (a book chapter) short or none of them (Megatron-LM draws per sample too).
* The random document is drawn uniformly among the *other non-empty documents of the same*
  ``Dataset.map`` *batch* (``documents_per_batch`` documents) instead of among all documents, so
  that ``map(batched=True, num_proc=N)`` works without every worker holding the corpus. With
  batches of ~1,000 documents a negative B is as unrelated to A as Google's. Google retries 10
  times to avoid the current document and otherwise takes it; here the choice is exact, and when
  a batch holds a single non-empty document (a tiny dataset, or a last batch of one) there is no
  other document: chunks of two or more sentences then get their real continuation and a lone
  sentence makes no example (a "random" B from the same document could be the true next sentence).
* Examples keep document order (Google shuffles them): the Trainer's sampler shuffles every epoch
  (a stream has no sampler: the recipes shuffle it through a buffer, ``--shuffle_buffer_size``).
* ``dupe_factor`` (Google's default 10) defaults to 1: Google repeated documents to give each one
  several static masks; masks are dynamic here, so repeats only re-draw the A/B splits.
* Literal special-token text in a document (``"[SEP]"``) is split like any other text
  (``split_special_tokens=True``), as Google's tokenizer does, never read as a separator.

Output columns, one row per example, lengths ``L <= max_seq_length``:

* ``input_ids`` (L,): ``[CLS] A [SEP] B [SEP]``;
* ``token_type_ids`` (L,): 0 for ``[CLS]``, A and the first ``[SEP]``; 1 for B and the last ``[SEP]``;
* ``special_tokens_mask`` (L,): 1 at the three special tokens;
* ``starts_word`` (L,): the word-boundary signal whole-word masking needs: 1 where a token begins
  a word, 0 for a word's continuation pieces and for the special tokens. Words are the fast
  tokenizer's pre-tokenizer words (``Encoding.word_ids``), which for WordPiece is exactly Google's
  rule (a ``##`` token continues the previous word); it also works for BPE and Unigram
  tokenizers, which have no ``##``. The first token of A and of B always starts a word, even a
  ``##`` piece left at the front by truncation (Google would glue it to the word before ``[SEP]``);
* ``next_sentence_label`` (): 0 when B is A's real continuation, 1 when B is random, the
  convention of ``transformers.BertForPreTraining``.
"""

from __future__ import annotations

import bisect
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass

import datasets
from transformers import PreTrainedTokenizerBase

from .sentences import segment_sentences
from .text import TEXT_COLUMN, TextDataset

logger = logging.getLogger(__name__)

IS_NEXT = 0
IS_RANDOM_NEXT = 1
NUM_SPECIAL_TOKENS = 3  # [CLS] A [SEP] B [SEP]
MIN_MAX_SEQ_LENGTH = NUM_SPECIAL_TOKENS + 2  # A and B need one token each

NSP_FEATURES = datasets.Features(
    {
        "input_ids": datasets.List(datasets.Value("int32")),
        "token_type_ids": datasets.List(datasets.Value("int8")),
        "special_tokens_mask": datasets.List(datasets.Value("int8")),
        "starts_word": datasets.List(datasets.Value("int8")),
        "next_sentence_label": datasets.Value("int8"),
    }
)


@dataclass
class Segment:
    """One tokenised sentence: ``ids`` and ``starts_word`` (1 where a token begins a word), same length."""

    ids: list[int]
    starts_word: list[int]


Document = list[Segment]


@dataclass
class NspInstance:
    """A sentence pair before special tokens are added; ``is_random_next`` is True when B is from another document."""

    ids_a: list[int]
    starts_word_a: list[int]
    ids_b: list[int]
    starts_word_b: list[int]
    is_random_next: bool


def build_nsp_examples(
    dataset: TextDataset,
    tokenizer: PreTrainedTokenizerBase,
    max_seq_length: int = 128,
    short_seq_prob: float = 0.1,
    dupe_factor: int = 1,
    seed: int = 0,
    documents_per_batch: int = 1000,
    num_proc: int | None = None,
    language: str = "en",
) -> TextDataset:
    """NSP examples (columns :data:`NSP_FEATURES`, see the module docstring) from a dataset with a
    ``"text"`` column holding one document per row (other columns are dropped).

    Runs ``dataset.map(batched=True, batch_size=documents_per_batch)``; negatives take their B from
    another document of the same batch. Every batch seeds its own ``random.Random`` with ``seed``
    and the index of its first row, so the result is reproducible for a given seed,
    ``documents_per_batch`` and ``num_proc`` (``num_proc`` changes where batches begin, hence the
    draws). Each document is passed over ``dupe_factor`` times, as in Google's script.
    A ``datasets.IterableDataset`` (streaming) is mapped lazily the same way (``num_proc`` unused).

    Raises ``ValueError`` for a missing ``"text"`` column, ``max_seq_length < 5``, a probability
    outside [0, 1], ``dupe_factor < 1``, or a tokenizer that is not fast or lacks ``[CLS]``/``[SEP]``.
    """
    _check_dataset(dataset)
    _check_tokenizer(tokenizer)
    _check_arguments(max_seq_length, short_seq_prob, dupe_factor, documents_per_batch)
    options = dict(
        tokenizer=tokenizer, max_seq_length=max_seq_length, short_seq_prob=short_seq_prob,
        dupe_factor=dupe_factor, seed=seed, language=language,
    )  # fmt: skip
    # Examples are not rows of the input, so no other input column can follow them.
    dataset = dataset.select_columns([TEXT_COLUMN])
    map_options = dict(
        function=_nsp_examples_for_batch, with_indices=True, batched=True, batch_size=documents_per_batch,
        remove_columns=[TEXT_COLUMN], features=NSP_FEATURES, fn_kwargs=options,
    )  # fmt: skip
    if isinstance(dataset, datasets.IterableDataset):
        return dataset.map(**map_options)
    if len(dataset) == 0:  # map would not run, and would return no columns
        return datasets.Dataset.from_dict({name: [] for name in NSP_FEATURES}, features=NSP_FEATURES)
    return dataset.map(**map_options, num_proc=num_proc, desc="Building next-sentence pairs")


def check_nsp_pairs(pairs: TextDataset, split: str, labels_used: bool = True, one_sided: float = 0.9) -> None:
    """Refuse a split that made no pairs; with ``labels_used``, warn when more than ``one_sided`` of
    its pairs share one label, which leaves next-sentence prediction nothing to learn or measure.
    A stream is not checked (that would read it through)."""
    if isinstance(pairs, datasets.IterableDataset):
        return
    if len(pairs) == 0:
        raise ValueError(
            f"The {split} text made no BERT examples: its documents are empty, or it is one single-sentence document "
            f"(a lone sentence takes its B from another document). Pass more {split} text."
        )
    if not labels_used:
        return
    random_share = sum(label == IS_RANDOM_NEXT for label in pairs["next_sentence_label"]) / len(pairs)
    if random_share > one_sided:
        logger.warning(
            "%.0f%% of the %s next-sentence pairs are random: most documents are a single sentence, so B can rarely be A's "
            "continuation. For .txt files with one sentence per line and blank lines between documents pass "
            "--txt_sample_by paragraph; for texts that are single sentences, --next_sentence_prediction false.",
            100 * random_share, split,
        )  # fmt: skip
    elif random_share < 1 - one_sided:
        logger.warning(
            "%.0f%% of the %s next-sentence pairs are real continuations: a random B needs another document, and the "
            "documents are too few (a batch of one document has none to draw from). Pass more documents.",
            100 * (1 - random_share), split,
        )  # fmt: skip


def _check_dataset(dataset: TextDataset) -> None:
    columns = dataset.column_names
    if columns is not None and TEXT_COLUMN not in columns:
        raise ValueError(
            f"The dataset has no {TEXT_COLUMN!r} column (it has {columns}); NSP examples are built from one document per row "
            f"in {TEXT_COLUMN!r}. Rename the column (dataset.rename_column(name, {TEXT_COLUMN!r})) or load it with "
            "hfssl.data.load_text_datasets and --text_column_name."
        )


def _check_tokenizer(tokenizer: PreTrainedTokenizerBase) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            f"{type(tokenizer).__name__} is not a fast tokenizer; NSP examples need a PreTrainedTokenizerFast "
            "(its word ids mark the word boundaries whole-word masking uses)."
        )
    vocab = tokenizer.get_vocab()
    for role in ("cls_token", "sep_token"):
        token = getattr(tokenizer, role)
        if token is None or token not in vocab:
            raise ValueError(
                f"The tokenizer has no {role} in its vocabulary (it is {token!r}); BERT pairs are [CLS] A [SEP] B [SEP]. "
                'Use a BERT-style tokenizer, e.g. hfssl.tokenization.train_subword_tokenizer(texts, "wordpiece", "bert").'
            )


def _check_arguments(max_seq_length: int, short_seq_prob: float, dupe_factor: int, documents_per_batch: int) -> None:
    if max_seq_length < MIN_MAX_SEQ_LENGTH:
        raise ValueError(
            f"max_seq_length={max_seq_length} is too small: [CLS] A [SEP] B [SEP] needs at least {MIN_MAX_SEQ_LENGTH} tokens "
            "(BERT used 128 and 512)."
        )
    if not 0.0 <= short_seq_prob <= 1.0:
        raise ValueError(f"short_seq_prob={short_seq_prob} is not a probability in [0, 1] (BERT used 0.1).")
    if dupe_factor < 1:
        raise ValueError(f"dupe_factor={dupe_factor} must be at least 1 (the number of passes over each document).")
    if documents_per_batch < 2:
        raise ValueError(
            f"documents_per_batch={documents_per_batch} must be at least 2: negatives take B from another document of the batch."
        )


def _nsp_examples_for_batch(
    batch: dict[str, list],
    indices: list[int],
    tokenizer: PreTrainedTokenizerBase,
    max_seq_length: int,
    short_seq_prob: float,
    dupe_factor: int,
    seed: int,
    language: str,
) -> dict[str, list]:
    """The ``Dataset.map`` function: a batch of documents in, the columns of their NSP examples out."""
    documents = tokenize_documents(batch[TEXT_COLUMN], tokenizer, language)
    # A str seed is hashed with SHA-512: stable across processes and Python runs (unlike hash()).
    rng = random.Random(f"hfssl-nsp:{seed}:{indices[0] if indices else 0}")
    columns: dict[str, list] = {name: [] for name in NSP_FEATURES}
    cls_id, sep_id = tokenizer.convert_tokens_to_ids([tokenizer.cls_token, tokenizer.sep_token])
    nonempty = [index for index, document in enumerate(documents) if document]
    for _ in range(dupe_factor):
        for document_index in nonempty:
            for instance in create_instances_from_document(
                documents, document_index, max_seq_length, short_seq_prob, rng, nonempty
            ):
                for name, value in instance_features(instance, cls_id, sep_id).items():
                    columns[name].append(value)
    return columns


def tokenize_documents(
    texts: Sequence[str | None], tokenizer: PreTrainedTokenizerBase, language: str = "en"
) -> list[Document]:
    """Split every text into sentences and tokenise them all in one batched call (no special
    tokens; special-token text is split like any text). Returns one list of :class:`Segment` per
    text, in order; sentences without tokens are dropped, so a blank text (or ``None``) gives ``[]``."""
    sentences_per_text = [_sentences(text, language) for text in texts]
    segments = _tokenize_sentences([sentence for sentences in sentences_per_text for sentence in sentences], tokenizer)
    documents, start = [], 0
    for sentences in sentences_per_text:
        documents.append([segment for segment in segments[start : start + len(sentences)] if segment.ids])
        start += len(sentences)
    return documents


def _tokenize_sentences(sentences: list[str], tokenizer: PreTrainedTokenizerBase) -> list[Segment]:
    if not sentences:
        return []  # the tokenizer fails on an empty batch
    encoding = tokenizer(
        sentences, add_special_tokens=False, split_special_tokens=True,
        return_attention_mask=False, return_token_type_ids=False, verbose=False,
    )  # fmt: skip
    return [Segment(ids, _word_starts(encoding.word_ids(index))) for index, ids in enumerate(encoding["input_ids"])]


def _sentences(text: str | None, language: str) -> list[str]:
    if text is None:
        return []
    if not isinstance(text, str):
        raise ValueError(
            f"The {TEXT_COLUMN!r} column must hold strings (one document per row); found {type(text).__name__}: {text!r:.80}."
        )
    return segment_sentences(text, language)


def _word_starts(word_ids: list[int | None]) -> list[int]:
    """1 where a token's word differs from the previous token's (always at position 0), else 0."""
    return [1, *(int(word != previous) for previous, word in zip(word_ids, word_ids[1:]))] if word_ids else []


def create_instances_from_document(
    documents: Sequence[Document],
    document_index: int,
    max_seq_length: int,
    short_seq_prob: float,
    rng: random.Random,
    nonempty_indices: Sequence[int] | None = None,
) -> list[NspInstance]:
    """The sentence pairs of ``documents[document_index]`` (Google's ``create_instances_from_document``,
    with the differences listed in the module docstring). ``nonempty_indices`` (sorted) are the
    documents a random B may come from; default: every non-empty document."""
    document = documents[document_index]
    if nonempty_indices is None:
        nonempty_indices = [index for index, other in enumerate(documents) if other]
    max_num_tokens = max_seq_length - NUM_SPECIAL_TOKENS
    instances: list[NspInstance] = []
    target_length = _target_length(max_num_tokens, short_seq_prob, rng)
    chunk: list[Segment] = []
    chunk_length = 0
    i = 0
    while i < len(document):
        chunk.append(document[i])
        chunk_length += len(document[i].ids)
        if i == len(document) - 1 or chunk_length >= target_length:
            a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
            segments_a = chunk[:a_end]
            segments_b: list[Segment] = []
            random_document = None
            if len(chunk) == 1 or rng.random() < 0.5:
                random_document = _other_document(nonempty_indices, document_index, rng)
            if random_document is not None:
                length_a = sum(len(segment.ids) for segment in segments_a)
                segments_b = _random_continuation(documents[random_document], target_length - length_a, rng)
                i -= len(chunk) - a_end  # put the unused sentences back: they start the next chunk
            else:
                segments_b = chunk[a_end:]  # empty for a lone sentence with no other document: no example
            if segments_b:
                instances.append(
                    _truncated_instance(segments_a, segments_b, random_document is not None, max_num_tokens, rng)
                )
            chunk, chunk_length = [], 0
            target_length = _target_length(max_num_tokens, short_seq_prob, rng)
        i += 1
    return instances


def _target_length(max_num_tokens: int, short_seq_prob: float, rng: random.Random) -> int:
    """``max_num_tokens``, or with probability ``short_seq_prob`` a uniform length in ``[2, max_num_tokens]``."""
    if rng.random() < short_seq_prob:
        return rng.randint(2, max_num_tokens)
    return max_num_tokens


def _other_document(nonempty_indices: Sequence[int], document_index: int, rng: random.Random) -> int | None:
    """A uniform draw among ``nonempty_indices`` other than ``document_index``; None when there is none."""
    position = bisect.bisect_left(nonempty_indices, document_index)
    is_listed = position < len(nonempty_indices) and nonempty_indices[position] == document_index
    num_others = len(nonempty_indices) - is_listed
    if num_others == 0:
        return None
    draw = rng.randrange(num_others)
    return nonempty_indices[draw + 1 if is_listed and draw >= position else draw]


def _random_continuation(document: Document, target_length: int, rng: random.Random) -> list[Segment]:
    """Sentences of ``document`` from a uniform start until ``target_length`` tokens (at least one sentence)."""
    segments, length = [], 0
    for index in range(rng.randint(0, len(document) - 1), len(document)):
        segment = document[index]
        segments.append(segment)
        length += len(segment.ids)
        if length >= target_length:
            break
    return segments


def _truncated_instance(
    segments_a: list[Segment], segments_b: list[Segment], is_random_next: bool, max_num_tokens: int, rng: random.Random
) -> NspInstance:
    ids_a, starts_a = _concatenate(segments_a)
    ids_b, starts_b = _concatenate(segments_b)
    (a_start, a_stop), (b_start, b_stop) = truncate_seq_pair(len(ids_a), len(ids_b), max_num_tokens, rng)
    return NspInstance(
        ids_a[a_start:a_stop], _word_start_first(starts_a[a_start:a_stop]),
        ids_b[b_start:b_stop], _word_start_first(starts_b[b_start:b_stop]),
        is_random_next,
    )  # fmt: skip


def _concatenate(segments: list[Segment]) -> tuple[list[int], list[int]]:
    ids, starts = [], []
    for segment in segments:
        ids.extend(segment.ids)
        starts.extend(segment.starts_word)
    return ids, starts


def _word_start_first(starts_word: list[int]) -> list[int]:
    """A segment's first token begins a word even when truncation cut the word's first pieces away."""
    return [1, *starts_word[1:]] if starts_word else starts_word


def truncate_seq_pair(
    length_a: int, length_b: int, max_num_tokens: int, rng: random.Random
) -> tuple[tuple[int, int], tuple[int, int]]:
    """Google's ``truncate_seq_pair`` on lengths. Google loops: while the pair is longer than
    ``max_num_tokens``, drop the first or the last token (a fair coin) of the longer segment (B on a
    tie). Which segment loses each token depends only on the lengths, so the loop's outcome is
    drawn directly: the number of tokens each segment loses is computed, and how many of them come
    off its front is Binomial(lost, 1/2), the count of heads among its coins. Returns the kept
    ``(start, stop)`` slices of A and B; both keep at least one token when ``max_num_tokens >= 2``."""
    lost_a, lost_b = _truncated_counts(length_a, length_b, max_num_tokens)
    front_a, front_b = _fair_coin_heads(lost_a, rng), _fair_coin_heads(lost_b, rng)
    return (front_a, length_a - (lost_a - front_a)), (front_b, length_b - (lost_b - front_b))


def _truncated_counts(length_a: int, length_b: int, max_num_tokens: int) -> tuple[int, int]:
    """Tokens Google's loop takes from A and from B: the longer one down to the other's length
    first, then alternately, B first (a tie truncates B)."""
    excess = max(0, length_a + length_b - max_num_tokens)
    first_a = min(max(length_a - length_b, 0), excess)
    first_b = min(max(length_b - length_a, 0), excess - first_a)
    rest = excess - first_a - first_b
    return first_a + rest // 2, first_b + (rest + 1) // 2


def _fair_coin_heads(num_coins: int, rng: random.Random) -> int:
    """Heads among ``num_coins`` fair coins: Binomial(num_coins, 1/2), one random bit per coin."""
    return rng.getrandbits(num_coins).bit_count() if num_coins else 0


def instance_features(instance: NspInstance, cls_id: int, sep_id: int) -> dict[str, list[int] | int]:
    """The columns of one example (see the module docstring) from a pair and the ``[CLS]``/``[SEP]`` ids."""
    length_a, length_b = len(instance.ids_a), len(instance.ids_b)
    return {
        "input_ids": [cls_id, *instance.ids_a, sep_id, *instance.ids_b, sep_id],
        "token_type_ids": [0] * (length_a + 2) + [1] * (length_b + 1),
        "special_tokens_mask": [1, *[0] * length_a, 1, *[0] * length_b, 1],
        "starts_word": [0, *instance.starts_word_a, 0, *instance.starts_word_b, 0],
        "next_sentence_label": IS_RANDOM_NEXT if instance.is_random_next else IS_NEXT,
    }
