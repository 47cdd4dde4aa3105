"""Tokenizers trained or assembled with the ``tokenizers`` library, saved as ``PreTrainedTokenizerFast``.

Word-level (word2vec): lower-casing (optional) and a regular expression that says what a word is
(default ``[a-z]+(?:'[a-z]+)?``, the tokenisation of the shared corpus' reference figures); text
between matches (spaces, punctuation, digits) is dropped. A word outside the vocabulary maps to
``[UNK]``, id 0. The tokenizer is the vocabulary of a word2vec model: it is saved beside the
weights, so ``AutoTokenizer.from_pretrained(dir)`` splits and numbers words as training did.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

WORD_PATTERN = r"[a-z]+(?:'[a-z]+)?"
UNK_TOKEN = "[UNK]"
UNK_TOKEN_ID = 0


def _word_level_backend(vocab: dict[str, int] | None, word_pattern: str, lowercase: bool) -> Tokenizer:
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK_TOKEN) if vocab is not None else models.WordLevel(unk_token=UNK_TOKEN))
    if lowercase:
        backend.normalizer = normalizers.Lowercase()
    # invert=True + "removed": keep the matches of the pattern, drop everything between them.
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(word_pattern), behavior="removed", invert=True)
    backend.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with spaces
    return backend


def _wrap(backend: Tokenizer) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token=UNK_TOKEN, model_input_names=["input_ids"])


def train_word_level_tokenizer(
    texts: Iterable[str],
    min_count: int = 5,
    max_vocab_size: int | None = None,
    word_pattern: str = WORD_PATTERN,
    lowercase: bool = True,
) -> PreTrainedTokenizerFast:
    """Count the words of ``texts`` and keep those seen at least ``min_count`` times, the
    ``max_vocab_size`` most frequent at most; ids follow descending frequency after ``[UNK]`` (0).

    Raises ``ValueError`` when no word qualifies (an empty or tiny corpus, or a too high
    ``min_count``).
    """
    backend = _word_level_backend(None, word_pattern, lowercase)
    trainer = trainers.WordLevelTrainer(
        vocab_size=(max_vocab_size + 1) if max_vocab_size else 2**31 - 1,
        min_frequency=min_count,
        special_tokens=[UNK_TOKEN],
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    if backend.get_vocab_size() < 2:
        raise ValueError(
            f"The vocabulary is empty: no word matching {word_pattern!r} occurs at least min_count={min_count} times "
            "in the training text. Check that the text column holds the text, or lower --min_count."
        )
    return _wrap(backend)


def word_level_tokenizer(words: Sequence[str], word_pattern: str = WORD_PATTERN, lowercase: bool = True) -> PreTrainedTokenizerFast:
    """A tokenizer whose vocabulary is ``[UNK]`` followed by ``words`` in the given order (ids 1..N)."""
    if len(set(words)) != len(words):
        raise ValueError("The word list has duplicates; a vocabulary needs each word once.")
    if UNK_TOKEN in words:
        raise ValueError(f"{UNK_TOKEN!r} is reserved for unknown words and cannot be in the word list.")
    vocab = {UNK_TOKEN: UNK_TOKEN_ID, **{word: index + 1 for index, word in enumerate(words)}}
    return _wrap(_word_level_backend(vocab, word_pattern, lowercase))


def vocabulary_words(tokenizer: PreTrainedTokenizerFast) -> list[str]:
    """The tokenizer's tokens in id order (``[UNK]`` included at its id)."""
    by_id = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    if [index for _, index in by_id] != list(range(len(by_id))):
        raise ValueError("The tokenizer's ids are not contiguous from 0; it cannot index an embedding matrix.")
    return [word for word, _ in by_id]
