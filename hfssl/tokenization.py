"""Tokenizers trained or assembled with the ``tokenizers`` library, saved as ``PreTrainedTokenizerFast``.

Subword (language models), trained on the dataset with :func:`train_subword_tokenizer`:

* ``"wordpiece"`` (BERT): BERT's normaliser (lower-casing and accent stripping optional), its
  pre-tokeniser, ``[CLS] A [SEP] B [SEP]`` templates with ``token_type_ids`` 0 then 1, and
  ``[PAD]``/``[UNK]``/``[CLS]``/``[SEP]``/``[MASK]`` (Devlin et al. 2019). Ids are renumbered
  canonically after training (see :func:`_number_canonically`), so the same tokens get the same
  ids from run to run (the token set itself can still differ when merges tie at the vocabulary limit);
* ``"byte_level_bpe"`` (GPT, BART): byte-level BPE (Radford et al. 2019), so no text is unknown.
  For ``special_tokens="gpt"`` the one special token ``<|endoftext|>`` separates documents
  (bos = eos = unk = it, and ``<pad>`` pads); for ``"bart"``, ``<s>``/``<pad>``/``</s>``/``<unk>``/
  ``<mask>`` with ``<s> A </s>`` templates (Lewis et al. 2020).

CLIP's (image-text), trained on the captions with :func:`train_clip_tokenizer`: transformers' own
``CLIPTokenizer`` (lower-casing, CLIP's pre-tokeniser, byte-level BPE with ``</w>`` ending each word,
``<|startoftext|> A <|endoftext|>``; Radford et al. 2021) with merges learned on the captions, so a CLIP
checkpoint's processor is transformers' ``CLIPProcessor`` as for OpenAI's models.

Word-level (word2vec): lower-casing (optional) and a regular expression that says what a word is
(default ``[a-z]+(?:'[a-z]+)?``, the tokenisation of the shared corpus' reference figures); text
between matches (spaces, punctuation, digits) is dropped. A word outside the vocabulary maps to
``[UNK]``, id 0. The tokenizer is the vocabulary of a word2vec model: it is saved beside the
weights, so ``AutoTokenizer.from_pretrained(dir)`` splits and numbers words as training did.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import Optional

import regex  # a dependency of transformers; unlike re, it has the Unicode classes the pre-tokenisers use
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import CLIPTokenizer, PreTrainedTokenizerFast

logger = logging.getLogger(__name__)

WORD_PATTERN = r"[a-z]+(?:'[a-z]+)?"
UNK_TOKEN = "[UNK]"
UNK_TOKEN_ID = 0


def _word_level_backend(vocab: dict[str, int] | None, word_pattern: str, lowercase: bool) -> Tokenizer:
    backend = Tokenizer(
        models.WordLevel(vocab=vocab, unk_token=UNK_TOKEN)
        if vocab is not None
        else models.WordLevel(unk_token=UNK_TOKEN)
    )
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


def word_level_tokenizer(
    words: Sequence[str], word_pattern: str = WORD_PATTERN, lowercase: bool = True
) -> PreTrainedTokenizerFast:
    """A tokenizer whose vocabulary is ``[UNK]`` followed by ``words`` in the given order (ids 1..N)."""
    if len(set(words)) != len(words):
        raise ValueError("The word list has duplicates; a vocabulary needs each word once.")
    if UNK_TOKEN in words:
        raise ValueError(f"{UNK_TOKEN!r} is reserved for unknown words and cannot be in the word list.")
    vocab = {UNK_TOKEN: UNK_TOKEN_ID, **{word: index + 1 for index, word in enumerate(words)}}
    return _wrap(_word_level_backend(vocab, word_pattern, lowercase))


SUBWORD_KINDS = ("wordpiece", "byte_level_bpe")
SPECIAL_TOKENS = {
    "bert": {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]", "mask_token": "[MASK]"},
    "gpt": {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>", "pad_token": "<pad>"},
    "bart": {
        "bos_token": "<s>", "pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>", "mask_token": "<mask>",
        "cls_token": "<s>", "sep_token": "</s>",
    },
}  # fmt: skip


# The longest word (a piece of the pre-tokeniser: a run of letters, digits or symbols) a subword trainer
# sees; longer ones are cut to it. The trainers' time grows with the length of each distinct word (a
# merge rewrites every word holding the pair, and a long word holds them all): one 100,000-letter word
# took 3.6 s to train on and one of 1,000,000 letters over 15 minutes (BENCHMARKS.md). WordPiece encodes a
# word longer than 100 characters (its max_input_chars_per_word) as the unknown token anyway; byte-level BPE
# encodes any word, so it keeps 1,000 characters, beyond the longest clause of unspaced (e.g. Chinese) text.
MAX_WORD_CHARS = {"wordpiece": 100, "byte_level_bpe": 1000}
# What each kind's pre-tokeniser keeps together as one word: GPT-2's byte-level one splits letters,
# numbers and other symbols apart; BERT's splits at whitespace and punctuation (Unicode P and ASCII
# symbols) and around each CJK ideograph.
WORD_RUNS = {
    "byte_level_bpe": r"\p{{L}}{{{min},}}|\p{{N}}{{{min},}}|[^\s\p{{L}}\p{{N}}]{{{min},}}",
    "wordpiece": r"[^\s\p{{P}}\x21-\x2f\x3a-\x40\x5b-\x60\x7b-\x7e\p{{Han}}]{{{min},}}",
}
BYTE_ALPHABET_SIZE = 256


def train_subword_tokenizer(
    texts: Iterable[str],
    kind: str,
    special_tokens: str,
    vocab_size: int = 8000,
    lowercase: bool = False,
    min_frequency: int = 2,
) -> PreTrainedTokenizerFast:
    """Train a WordPiece (``kind="wordpiece"``) or byte-level BPE (``"byte_level_bpe"``) tokenizer on
    ``texts`` with the special tokens of ``special_tokens`` (``"bert"``, ``"gpt"`` or ``"bart"``,
    see :data:`SPECIAL_TOKENS`), ``vocab_size`` tokens. Special tokens take the first ids.
    ``lowercase`` applies to WordPiece (byte-level BPE keeps case, as GPT-2 and BART do).

    ``vocab_size`` below what the kind always holds (byte-level BPE: 256 bytes and the special
    tokens; WordPiece: every character of the text, alone and as a ``##`` continuation, and the
    special tokens) raises ``ValueError`` naming the minimum; a vocabulary of another size (a WordPiece
    alphabet that needs more, a text too small for ``vocab_size``) is logged. Words longer than :data:`MAX_WORD_CHARS` are cut
    for training (logged with their number), which bounds the time on pathological text."""
    if kind not in SUBWORD_KINDS:
        raise ValueError(f"Unknown tokenizer kind {kind!r}: choose one of {SUBWORD_KINDS}.")
    if special_tokens not in SPECIAL_TOKENS:
        raise ValueError(f"Unknown special tokens {special_tokens!r}: choose one of {tuple(SPECIAL_TOKENS)}.")
    specials = SPECIAL_TOKENS[special_tokens]
    ordered = list(dict.fromkeys(specials.values()))
    check_vocab_size(kind, special_tokens, vocab_size)
    if kind == "wordpiece":
        backend = Tokenizer(models.WordPiece(unk_token=specials["unk_token"]))
        backend.normalizer = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=lowercase)
        backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        backend.decoder = decoders.WordPiece(prefix="##")
        trainer = trainers.WordPieceTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=ordered, show_progress=False,
            limit_alphabet=WORDPIECE_ALPHABET,
        )  # fmt: skip
    else:
        backend = Tokenizer(models.BPE())
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=ordered, show_progress=False,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )  # fmt: skip
    cutter = LongWordCutter(kind)
    backend.train_from_iterator(cutter(texts), trainer=trainer)
    cutter.log()
    if backend.get_vocab_size() <= len(ordered):
        raise ValueError(
            "The tokenizer learned no tokens: the training text is empty. Check --text_column_name and the data files."
        )
    _check_trained_size(backend.get_vocab_size(), vocab_size, kind, min_frequency)
    if kind == "wordpiece":
        _number_canonically(backend, num_special_tokens=len(ordered), unk_token=specials["unk_token"])
    _add_templates(backend, special_tokens, specials)
    input_names = (
        ["input_ids", "token_type_ids", "attention_mask"]
        if special_tokens == "bert"
        else ["input_ids", "attention_mask"]
    )
    return PreTrainedTokenizerFast(tokenizer_object=backend, model_input_names=input_names, **specials)


# Characters a WordPiece alphabet keeps (the most frequent; the rest become [UNK]), as in
# tokenizers' BertWordPieceTokenizer: without a limit, a multilingual text's alphabet alone can exceed the vocabulary.
WORDPIECE_ALPHABET = 1000


def minimum_vocab_size(kind: str, special_tokens: str) -> int:
    """The fewest tokens a subword tokenizer of ``kind`` holds before learning any: byte-level BPE
    starts from 256 bytes, WordPiece from the characters of the text (at least one) and ``##`` it;
    both add the special tokens of ``special_tokens``."""
    num_special = len(set(SPECIAL_TOKENS[special_tokens].values()))
    return num_special + (BYTE_ALPHABET_SIZE if kind == "byte_level_bpe" else 2)


def check_vocab_size(kind: str, special_tokens: str, vocab_size: int) -> None:
    """Refuse a ``vocab_size`` the tokenizer kind cannot be trained to (``tokenizers`` would silently
    return a larger vocabulary: ``--vocab_size 3`` gave 258 byte-level tokens)."""
    minimum = minimum_vocab_size(kind, special_tokens)
    if vocab_size < minimum:
        floor = (
            f"{BYTE_ALPHABET_SIZE} bytes and {minimum - BYTE_ALPHABET_SIZE} special tokens"
            if kind == "byte_level_bpe"
            else "the special tokens and, at the least, one character alone and as a ## continuation"
        )
        raise ValueError(
            f"--vocab_size {vocab_size} is below the {minimum} tokens a {kind} tokenizer with the {special_tokens} "
            f"special tokens always holds ({floor}); pass --vocab_size {minimum} or more (typical: 8000-50000)."
        )


def _check_trained_size(trained: int, requested: int, kind: str, min_frequency: int) -> None:
    """A vocabulary of another size than ``requested`` is logged: larger when a WordPiece alphabet
    (the text's characters, alone and as ``##`` continuations) needs more, smaller when the text ran out of pairs."""
    if trained > requested:
        logger.warning(
            "The trained %s tokenizer has %d tokens, more than --vocab_size %d: the alphabet of this text (its %d most "
            "frequent characters, alone and as ## continuations, and the special tokens) needs them. The model is "
            "built for %d tokens; pass --vocab_size %d or more to learn subwords beyond the alphabet.",
            kind, trained, requested, WORDPIECE_ALPHABET, trained, trained,
        )  # fmt: skip
    if trained < requested:
        logger.warning(
            "The trained %s tokenizer has %d tokens, fewer than --vocab_size %d: the training text has no more pairs "
            "seen at least %d times. The model is built for %d tokens; train on more text for a larger vocabulary.",
            kind,
            trained,
            requested,
            min_frequency,
            trained,
        )


class LongWordCutter:
    """Cuts the words longer than :data:`MAX_WORD_CHARS` in the texts given to a ``kind`` trainer, counting them.

    A word is what the kind's pre-tokeniser keeps together (:data:`WORD_RUNS`), so minified code or a
    URL, split at punctuation, is left alone; a cut word keeps its first ``max_chars`` characters.
    Only a text with a whitespace-separated run longer than that is searched (``str.split`` is the
    cheapest test: 0.45 s on the 12.9M characters of the shared corpus, on a loaded machine, and
    the trainer's own pre-tokenisation is slower still on a long word: 5.7 s for a 5M-letter one).
    """

    def __init__(self, kind: str, max_chars: Optional[int] = None):
        self.max_chars = max_chars or MAX_WORD_CHARS[kind]
        self.long_word = regex.compile(WORD_RUNS[kind].format(min=self.max_chars + 1))
        self.kind = kind
        self.cut_words = 0
        self.longest = 0

    def __call__(self, texts: Iterable[str]) -> Iterator[str]:
        for text in texts:
            if max(map(len, text.split()), default=0) > self.max_chars:
                text = self.long_word.sub(self._cut, text)
            yield text

    def _cut(self, match: regex.Match) -> str:
        self.cut_words += 1
        self.longest = max(self.longest, len(match.group(0)))
        return match.group(0)[: self.max_chars]

    def log(self) -> None:
        if self.cut_words:
            logger.warning(
                "Cut %d words longer than %d characters (the longest had %d) to their first %d for %s tokenizer "
                "training: the trainer's time grows with the length of each distinct word (one word of 1M letters "
                "kept it busy for over 15 minutes). Such text (base64, a line without spaces) is rarely meant as words.",
                self.cut_words,
                self.max_chars,
                self.longest,
                self.max_chars,
                self.kind,
            )


def _number_canonically(backend: Tokenizer, num_special_tokens: int, unk_token: str) -> None:
    """Renumber a trained WordPiece vocabulary: special tokens keep the first ids, the other tokens
    follow in code-point order.

    ``tokenizers``' WordPiece trainer numbers the ``##``-continuation tokens in hash-map order, which
    changes from run to run (huggingface/tokenizers#1794): the same text gave the same tokens under
    different ids, so the same seed initialised different embeddings. WordPiece encodes by longest
    match on the set of tokens, so renumbering changes no segmentation, only the ids. The trainer
    also breaks ties between equally frequent merges by those ids, so on some texts the token set
    itself differs between runs (6 trainings on random-word text gave 1 to 6 distinct token sets,
    depending on the vocabulary size); renumbering cannot fix that, only an upstream fix can."""
    vocab = backend.get_vocab(with_added_tokens=False)
    specials = sorted((token for token, index in vocab.items() if index < num_special_tokens), key=vocab.__getitem__)
    others = sorted(token for token, index in vocab.items() if index >= num_special_tokens)
    canonical = {token: index for index, token in enumerate(specials + others)}
    backend.model = models.WordPiece(canonical, unk_token=unk_token, continuing_subword_prefix="##")


def _add_templates(backend: Tokenizer, special_tokens: str, specials: dict[str, str]) -> None:
    """BERT: ``[CLS] A [SEP] (B [SEP])``; BART: ``<s> A </s> (</s> B </s>)``; GPT: no template
    (documents are joined with ``<|endoftext|>`` when packed)."""
    from tokenizers import processors

    if special_tokens == "gpt":
        return
    cls, sep = specials["cls_token"], specials["sep_token"]
    ids = [(cls, backend.token_to_id(cls)), (sep, backend.token_to_id(sep))]
    if special_tokens == "bert":
        backend.post_processor = processors.TemplateProcessing(
            single=f"{cls} $A {sep}", pair=f"{cls} $A {sep} $B:1 {sep}:1", special_tokens=ids
        )
    else:
        backend.post_processor = processors.TemplateProcessing(
            single=f"{cls} $A {sep}", pair=f"{cls} $A {sep} {sep} $B {sep}", special_tokens=ids
        )


def vocabulary_words(tokenizer: PreTrainedTokenizerFast) -> list[str]:
    """The tokenizer's tokens in id order (``[UNK]`` included at its id)."""
    by_id = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    if [index for _, index in by_id] != list(range(len(by_id))):
        raise ValueError("The tokenizer's ids are not contiguous from 0; it cannot index an embedding matrix.")
    return [word for word, _ in by_id]


CLIP_SPECIAL_TOKENS = ("<|startoftext|>", "<|endoftext|>")
CLIP_END_OF_WORD = "</w>"


def train_clip_tokenizer(texts: Iterable[str], vocab_size: int = 8192, min_frequency: int = 2) -> CLIPTokenizer:
    """A ``CLIPTokenizer`` whose BPE merges are learned on ``texts`` (captions), ``vocab_size`` tokens at most.

    Normaliser and pre-tokeniser are ``CLIPTokenizer``'s own (lower case, words, single digits, punctuation runs,
    bytes); the vocabulary holds the special tokens (ids 0 and 1: ``<|startoftext|>``, ``<|endoftext|>``, which
    also pads), the 256 bytes, each byte ending a word (``x</w>``), so no text is unknown, then the tokens of the
    merges seen at least ``min_frequency`` times, in merge order. A text too small for ``vocab_size`` gives fewer
    merges (logged); the byte endings the training text lacks can take the vocabulary past ``vocab_size``."""
    if vocab_size < BYTE_ALPHABET_SIZE + len(CLIP_SPECIAL_TOKENS):
        raise ValueError(
            f"--vocab_size {vocab_size} is below the {BYTE_ALPHABET_SIZE + len(CLIP_SPECIAL_TOKENS)} tokens a CLIP "
            "tokenizer always holds (256 bytes and 2 special tokens); pass a larger --vocab_size."
        )
    template = CLIPTokenizer().backend_tokenizer  # CLIP's normaliser and pre-tokeniser, with an empty vocabulary
    backend = Tokenizer(models.BPE(end_of_word_suffix=CLIP_END_OF_WORD, unk_token=CLIP_SPECIAL_TOKENS[1]))
    backend.normalizer = template.normalizer
    backend.pre_tokenizer = template.pre_tokenizer
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=list(CLIP_SPECIAL_TOKENS),
        end_of_word_suffix=CLIP_END_OF_WORD, initial_alphabet=sorted(pre_tokenizers.ByteLevel.alphabet()),
        show_progress=False,
    )  # fmt: skip
    backend.train_from_iterator(texts, trainer=trainer)
    model = json.loads(backend.to_str())["model"]
    if len(model["vocab"]) <= len(CLIP_SPECIAL_TOKENS) + BYTE_ALPHABET_SIZE and not model["merges"]:
        raise ValueError("The CLIP tokenizer learned no merges: the captions are empty. Check --caption_column_name.")
    if len(model["vocab"]) < vocab_size:
        logger.info(
            "The trained CLIP tokenizer has %d tokens (--vocab_size %d): the captions have no more pairs seen at "
            "least %d times.",
            len(model["vocab"]),
            vocab_size,
            min_frequency,
        )
    merges = [tuple(pair) if isinstance(pair, list) else tuple(pair.split(" ")) for pair in model["merges"]]
    # Numbered canonically (the trainer numbers the word-final characters in hash order, which changes from run to
    # run): the special tokens, the bytes, every byte ending a word (as in CLIP's own vocabulary, so that no text is
    # unknown), then each merge's token in merge order.
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokens = [*CLIP_SPECIAL_TOKENS, *alphabet, *(byte + CLIP_END_OF_WORD for byte in alphabet)]
    tokens += [left + right for left, right in merges]
    vocab = {token: index for index, token in enumerate(dict.fromkeys(tokens))}
    return CLIPTokenizer(vocab=vocab, merges=merges)
