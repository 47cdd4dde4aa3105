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

Word-level (word2vec): lower-casing (optional) and a regular expression that says what a word is
(default ``[a-z]+(?:'[a-z]+)?``, the tokenisation of the shared corpus' reference figures); text
between matches (spaces, punctuation, digits) is dropped. A word outside the vocabulary maps to
``[UNK]``, id 0. The tokenizer is the vocabulary of a word2vec model: it is saved beside the
weights, so ``AutoTokenizer.from_pretrained(dir)`` splits and numbers words as training did.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

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
    see :data:`SPECIAL_TOKENS`), at most ``vocab_size`` tokens. Special tokens take the first ids.
    ``lowercase`` applies to WordPiece (byte-level BPE keeps case, as GPT-2 and BART do)."""
    if kind not in SUBWORD_KINDS:
        raise ValueError(f"Unknown tokenizer kind {kind!r}: choose one of {SUBWORD_KINDS}.")
    if special_tokens not in SPECIAL_TOKENS:
        raise ValueError(f"Unknown special tokens {special_tokens!r}: choose one of {tuple(SPECIAL_TOKENS)}.")
    specials = SPECIAL_TOKENS[special_tokens]
    ordered = list(dict.fromkeys(specials.values()))
    if kind == "wordpiece":
        backend = Tokenizer(models.WordPiece(unk_token=specials["unk_token"]))
        backend.normalizer = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=lowercase)
        backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        backend.decoder = decoders.WordPiece(prefix="##")
        trainer = trainers.WordPieceTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=ordered, show_progress=False
        )
    else:
        backend = Tokenizer(models.BPE())
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=ordered, show_progress=False,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )  # fmt: skip
    backend.train_from_iterator(texts, trainer=trainer)
    if backend.get_vocab_size() <= len(ordered):
        raise ValueError(
            "The tokenizer learned no tokens: the training text is empty. Check --text_column_name and the data files."
        )
    if kind == "wordpiece":
        _number_canonically(backend, num_special_tokens=len(ordered), unk_token=specials["unk_token"])
    _add_templates(backend, special_tokens, specials)
    input_names = (
        ["input_ids", "token_type_ids", "attention_mask"]
        if special_tokens == "bert"
        else ["input_ids", "attention_mask"]
    )
    return PreTrainedTokenizerFast(tokenizer_object=backend, model_input_names=input_names, **specials)


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
