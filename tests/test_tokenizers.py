"""Subword tokenizers for the language models and the sentence splitter, on the shared corpus."""

import pytest
from transformers import AutoTokenizer

from hfssl.data.sentences import segment_sentences
from hfssl.tokenization import _number_canonically, train_subword_tokenizer


@pytest.fixture(scope="module")
def sample(corpus_documents):
    return corpus_documents[:150]


def test_sentences_split_at_sentence_ends_not_at_abbreviations():
    text = "Mr. Smith arrived at 5 p.m. on Monday. Did he stay?\n\n  \n\nA new paragraph. It ends here"
    assert segment_sentences(text) == [
        "Mr. Smith arrived at 5 p.m. on Monday.",
        "Did he stay?",
        "A new paragraph.",
        "It ends here",
    ]
    assert segment_sentences("  \n\n ") == []


def test_sentences_never_span_paragraphs(corpus_documents):
    for document in corpus_documents[:40]:
        paragraphs = [p for p in document.split("\n\n") if p.strip()]
        sentences = segment_sentences(document)
        assert len(sentences) >= len(paragraphs)
        assert all("\n\n" not in sentence for sentence in sentences)
        assert "".join(sentences).replace(" ", "").replace("\n", "") == "".join(paragraphs).replace(" ", "").replace(
            "\n", ""
        )


@pytest.mark.parametrize(
    "kind, specials, expected_inputs",
    [("wordpiece", "bert", ["input_ids", "token_type_ids", "attention_mask"]), ("byte_level_bpe", "gpt", ["input_ids", "attention_mask"]),
     ("byte_level_bpe", "bart", ["input_ids", "attention_mask"])],
)  # fmt: skip
def test_trained_tokenizers_round_trip_through_auto_tokenizer(tmp_path, sample, kind, specials, expected_inputs):
    tokenizer = train_subword_tokenizer(sample, kind, specials, vocab_size=2000)
    assert len(tokenizer) == 2000
    tokenizer.save_pretrained(tmp_path)
    restored = AutoTokenizer.from_pretrained(tmp_path)
    assert restored.model_input_names == expected_inputs
    text = "It is a truth universally acknowledged, that a single man\u2019s fortune is 10,000 a year."
    assert restored(text)["input_ids"] == tokenizer(text)["input_ids"]
    decoded = restored.decode(restored(text)["input_ids"], skip_special_tokens=True)
    if kind == "byte_level_bpe":
        assert decoded == text  # byte level: nothing is unknown, decoding is exact
    else:
        assert restored.unk_token_id not in restored(text)["input_ids"][1:-1]
    special_ids = sorted(set(restored.convert_tokens_to_ids(restored.all_special_tokens)))
    assert special_ids == list(range(len(special_ids)))  # specials take the first ids


@pytest.mark.parametrize("kind, specials", [("wordpiece", "bert"), ("byte_level_bpe", "bart")])
def test_training_twice_on_the_same_text_gives_the_same_ids(sample, kind, specials):
    # tokenizers' WordPiece trainer alone numbers tokens in hash-map order: five trainings on these
    # documents gave five different numberings of the same 1,000 tokens (tokenizers#1794). (On text
    # whose merges tie at the vocabulary limit the token set itself can differ; not so here.)
    vocabularies = {
        tuple(sorted(train_subword_tokenizer(sample[:60], kind, specials, vocab_size=1000).get_vocab().items()))
        for _ in range(4)
    }
    assert len(vocabularies) == 1


def test_canonical_numbering_keeps_the_segmentation(sample):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    backend = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.train_from_iterator(
        sample[:60], trainers.WordPieceTrainer(vocab_size=1000, special_tokens=["[PAD]", "[UNK]"], show_progress=False)
    )
    trained = backend.get_vocab()
    before = [encoding.tokens for encoding in backend.encode_batch(sample[60:80])]
    _number_canonically(backend, num_special_tokens=2, unk_token="[UNK]")
    assert [encoding.tokens for encoding in backend.encode_batch(sample[60:80])] == before
    assert any(
        token.startswith("##") for tokens in before for token in tokens
    )  # words split into pieces, not whole words only
    renumbered = backend.get_vocab()
    assert set(renumbered) == set(trained) and sorted(renumbered.values()) == list(range(len(trained)))
    assert [renumbered["[PAD]"], renumbered["[UNK]"]] == [0, 1]
    by_id = sorted(renumbered, key=renumbered.__getitem__)
    assert by_id[2:] == sorted(by_id[2:])


def test_pair_templates_mark_segments():
    bert = train_subword_tokenizer(
        ["the cat sat on the mat. the dog ran."] * 20, "wordpiece", "bert", vocab_size=200, min_frequency=1
    )
    encoded = bert("the cat", "the dog")
    tokens = bert.convert_ids_to_tokens(encoded["input_ids"])
    assert tokens == ["[CLS]", "the", "cat", "[SEP]", "the", "dog", "[SEP]"]
    assert encoded["token_type_ids"] == [0, 0, 0, 0, 1, 1, 1]
    bart = train_subword_tokenizer(
        ["the cat sat on the mat. the dog ran."] * 20, "byte_level_bpe", "bart", vocab_size=300, min_frequency=1
    )
    assert bart.convert_ids_to_tokens(bart("the cat")["input_ids"])[:: len(bart("the cat")["input_ids"]) - 1] == [
        "<s>",
        "</s>",
    ]


def test_empty_text_or_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="empty"):
        train_subword_tokenizer(["", "   "], "wordpiece", "bert", vocab_size=100)
    with pytest.raises(ValueError, match="kind"):
        train_subword_tokenizer(["text"], "unigram", "bert")
