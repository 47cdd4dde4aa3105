"""BERT pretraining data: next-sentence pairs (hfssl.data.nsp) and the masked-LM collator
(hfssl.data.masking), on real documents of the shared corpus. Statistical checks use 5-sigma bounds."""

from __future__ import annotations

import copy
import math
import random

import datasets
import pytest
import torch
from conftest import has_full_data

from hfssl.data.masking import IGNORE_INDEX, DataCollatorForBertPretraining, select_whole_words
from hfssl.data.nsp import (
    NSP_FEATURES,
    Segment,
    build_nsp_examples,
    check_nsp_pairs,
    create_instances_from_document,
    tokenize_documents,
    truncate_seq_pair,
)
from hfssl.data.sentences import segment_sentences
from hfssl.tokenization import train_subword_tokenizer

MAX_SEQ_LENGTH = 128
MAX_NUM_TOKENS = MAX_SEQ_LENGTH - 3
BATCH_SIZE = 32


def within_sigmas(count: int, total: int, probability: float, sigmas: float = 5.0) -> bool:
    """``count`` successes out of ``total`` are within ``sigmas`` binomial standard deviations of ``probability``."""
    return abs(count - total * probability) <= sigmas * math.sqrt(total * probability * (1 - probability))


@pytest.fixture(scope="module")
def documents(corpus_documents) -> list[str]:
    """111 documents spread over the corpus (Bible and Austen chapters, Gutenberg novels, Wikipedia), or 101 of
    the in-repo fixture's 201."""
    return corpus_documents[:: 16 if has_full_data("corpus") else 2]


@pytest.fixture(scope="module")
def tokenizer(documents):
    return train_subword_tokenizer(documents, "wordpiece", "bert", vocab_size=1000, lowercase=True)


@pytest.fixture(scope="module")
def examples(documents, tokenizer) -> datasets.Dataset:
    return build_nsp_examples(
        datasets.Dataset.from_dict({"text": documents}), tokenizer, max_seq_length=MAX_SEQ_LENGTH, seed=0
    )


@pytest.fixture(scope="module")
def examples_without_short_targets(documents, tokenizer) -> datasets.Dataset:
    return build_nsp_examples(
        datasets.Dataset.from_dict({"text": documents}), tokenizer, MAX_SEQ_LENGTH, short_seq_prob=0.0, seed=0
    )


@pytest.fixture(scope="module")
def tokenized(documents, tokenizer) -> list[list[Segment]]:
    return tokenize_documents(documents, tokenizer)


@pytest.fixture(scope="module")
def token_streams(tokenized) -> list[str]:
    """Each document's sentence tokens back to back, one character per token id, so that
    ``in``/``find`` search token sequences."""
    return [_as_text([token for segment in document for token in segment.ids]) for document in tokenized]


def _one_token_sentences(tokenized: list[list[Segment]]) -> list[list[Segment]]:
    """Real documents cut into one-token "sentences", so that a chunk reaches its target exactly."""
    return [[Segment([token], [1]) for segment in document for token in segment.ids] for document in tokenized]


def _as_text(ids) -> str:
    return "".join(chr(0x100 + token) for token in ids)


def _segments(example: dict) -> tuple[list[int], list[int]]:
    """A and B of ``[CLS] A [SEP] B [SEP]``."""
    ids = example["input_ids"]
    middle = example["token_type_ids"].index(1) - 1
    return ids[1:middle], ids[middle + 1 : -1]


def _collate_all(examples: datasets.Dataset, collator) -> list[tuple[list[dict], dict]]:
    rows = examples.to_list()
    return [
        (rows[start : start + BATCH_SIZE], collator(rows[start : start + BATCH_SIZE]))
        for start in range(0, len(rows), BATCH_SIZE)
    ]


# ----------------------------------------------------------------------------------------- pairs


def test_examples_are_cls_a_sep_b_sep_within_max_length(examples, tokenizer):
    assert examples.features == NSP_FEATURES
    assert len(examples) > 1500
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    special_ids = set(tokenizer.all_special_ids)
    for example in examples:
        ids, types = example["input_ids"], example["token_type_ids"]
        assert len(ids) <= MAX_SEQ_LENGTH
        assert len(types) == len(example["special_tokens_mask"]) == len(example["starts_word"]) == len(ids)
        length_a = types.index(1) - 2
        assert length_a >= 1 and len(ids) - length_a - 3 >= 1  # A and B are not empty
        assert ids[0] == cls_id and ids[length_a + 1] == sep_id and ids[-1] == sep_id
        assert types == [0] * (length_a + 2) + [1] * (len(ids) - length_a - 2)
        specials = [0, length_a + 1, len(ids) - 1]
        assert [index for index, flag in enumerate(example["special_tokens_mask"]) if flag] == specials
        assert not special_ids & set(ids[1 : length_a + 1] + ids[length_a + 2 : -1])
        assert example["next_sentence_label"] in (0, 1)


def test_documents_are_tokenized_sentence_by_sentence(documents, tokenizer, tokenized):
    for text, document in zip(documents[:5], tokenized):
        sentences = segment_sentences(text)
        assert [segment.ids for segment in document] == tokenizer(sentences, add_special_tokens=False)["input_ids"]
    assert tokenize_documents(["", None, "   ", "One. Two words."], tokenizer)[:3] == [[], [], []]


def test_starts_word_follows_wordpiece_continuations(examples, tokenizer):
    for example in examples.select(range(300)):
        tokens = tokenizer.convert_ids_to_tokens(example["input_ids"])
        segment_starts = {1, example["token_type_ids"].index(1)}
        for position, (token, starts, special) in enumerate(
            zip(tokens, example["starts_word"], example["special_tokens_mask"])
        ):
            if special:
                assert starts == 0
            elif position in segment_starts:
                assert starts == 1  # even a ## piece truncation left at the front
            else:
                assert starts == int(not token.startswith("##")), (position, token)


def _documents_with_a_then_b(streams: list[str], a: str, b: str) -> list[int]:
    """Documents where ``b`` occurs after an occurrence of ``a``."""
    return [
        index for index, stream in enumerate(streams) if a in stream and stream.find(b, stream.find(a) + len(a)) >= 0
    ]


def test_positive_pairs_are_a_document_continuation(examples, token_streams):
    positives = examples.filter(lambda example: example["next_sentence_label"] == 0)
    assert len(positives) > 500
    untruncated = 0
    for example in positives:
        a, b = map(_as_text, _segments(example))
        if len(a) + len(b) < MAX_NUM_TOKENS:  # nothing was truncated: B follows A immediately
            untruncated += 1
            assert any(a + b in stream for stream in token_streams)
        else:  # truncation may have cut A's end or B's start (a long sentence can lose hundreds of tokens)
            assert _documents_with_a_then_b(token_streams, a, b)
    assert untruncated > 50


def test_negative_pairs_take_b_from_another_document(examples, token_streams):
    negatives = examples.filter(lambda example: example["next_sentence_label"] == 1).select(range(300))
    for example in negatives:
        a, b = map(_as_text, _segments(example))
        in_a = {index for index, stream in enumerate(token_streams) if a in stream}
        in_b = {index for index, stream in enumerate(token_streams) if b in stream}
        assert in_a and in_b
        assert any(doc_a != doc_b for doc_a in in_a for doc_b in in_b)


def test_next_sentence_labels_are_balanced(examples_without_short_targets, tokenized):
    """Google's rule: a coin decides for chunks of two or more sentences, and a chunk of one
    sentence always takes a random B. Without short targets a lone chunk is a sentence of at least
    ``MAX_NUM_TOKENS`` tokens or a document's last sentence, so their number is bounded."""
    max_lone_chunks = sum(1 for document in tokenized if document) + sum(
        len(s.ids) >= MAX_NUM_TOKENS for d in tokenized for s in d
    )
    labels = examples_without_short_targets["next_sentence_label"]
    total, random_next = len(labels), sum(labels)
    sigma = math.sqrt(total * 0.25)
    assert total * 0.5 - 5 * sigma <= random_next <= (total + max_lone_chunks) * 0.5 + 5 * sigma


def test_coin_and_short_targets_on_one_token_sentences(tokenized):
    """Real documents cut into one-token sentences: a chunk then reaches its target exactly and
    always has two or more sentences, except at a document's last token.

    * Lone chunks happen at most once per document, so the random-next share is the coin's 1/2.
    * A positive pair holds exactly its chunk's target, except at a document's end (only the last
      pair of a document can end there); the target is short with probability ``short_seq_prob``,
      and then below ``max_num_tokens`` with probability 1 - 1/(max_num_tokens - 1)."""
    token_documents = _one_token_sentences(tokenized[:40])
    rng = random.Random(0)
    max_seq_length, short_seq_prob = 64, 0.1
    max_num_tokens = max_seq_length - 3
    instances, positives, shorter = 0, 0, 0
    random_next = 0
    for index in range(len(token_documents)):
        pairs = create_instances_from_document(token_documents, index, max_seq_length, short_seq_prob, rng)
        instances += len(pairs)
        random_next += sum(pair.is_random_next for pair in pairs)
        for pair in pairs[:-1]:
            if not pair.is_random_next:
                positives += 1
                shorter += len(pair.ids_a) + len(pair.ids_b) < max_num_tokens
    assert instances > 1000
    sigma = math.sqrt(instances * 0.25)
    assert instances * 0.5 - 5 * sigma <= random_next <= (instances + len(token_documents)) * 0.5 + 5 * sigma
    assert within_sigmas(shorter, positives, short_seq_prob * (1 - 1 / (max_num_tokens - 1)))


def test_short_seq_prob_on_real_sentences(documents, tokenizer, examples, examples_without_short_targets):
    """On real sentences a short target is only a rough one (the chunk's last sentence overshoots
    it), so short sequences grow with short_seq_prob but by less than the probability itself."""

    def share_shorter(examples: datasets.Dataset) -> float:
        lengths = [len(ids) for ids in examples["input_ids"]]
        return sum(length < MAX_SEQ_LENGTH for length in lengths) / len(lengths)

    always_short = build_nsp_examples(
        datasets.Dataset.from_dict({"text": documents[:40]}), tokenizer, MAX_SEQ_LENGTH, 1.0, seed=0
    )
    never, usually, always = (
        share_shorter(examples_without_short_targets),
        share_shorter(examples),
        share_shorter(always_short),
    )
    assert never < 0.1  # only pairs at documents' ends
    assert never + 0.01 < usually < never + 0.1
    assert always > 0.4


def test_empty_and_one_sentence_documents(documents, tokenizer):
    def build(texts, **options):
        return build_nsp_examples(
            datasets.Dataset.from_dict({"text": texts}), tokenizer, MAX_SEQ_LENGTH, seed=0, **options
        )

    assert len(build([])) == 0 and build([]).features == NSP_FEATURES
    assert len(build(["", "  \n\n  "])) == 0
    assert len(build(["A lonely sentence."])) == 0  # no other document to draw a random B from

    lone_sentences = ["The first document has one sentence.", "", "Here is another one.", "And a third, alone."]
    pairs = build(lone_sentences)
    assert len(pairs) == 3 and set(pairs["next_sentence_label"]) == {1}
    for example in pairs:
        a, b = _segments(example)
        assert a != b  # B comes from another document

    only_document = build([documents[0]])
    assert len(only_document) > 0 and set(only_document["next_sentence_label"]) == {0}

    mixed = build(["", lone_sentences[0], *documents[:5], "   "], dupe_factor=3)
    lone_ids = tokenizer(lone_sentences[0], add_special_tokens=False)["input_ids"]
    assert [example["next_sentence_label"] for example in mixed if _segments(example)[0] == lone_ids] == [1, 1, 1]


def test_degenerate_pair_sets_are_refused_or_flagged(documents, tokenizer, examples, caplog):
    def build(texts):
        return build_nsp_examples(datasets.Dataset.from_dict({"text": texts}), tokenizer, MAX_SEQ_LENGTH, seed=0)

    with pytest.raises(ValueError, match="eval text made no BERT examples.*one single-sentence document"):
        check_nsp_pairs(build(["A lonely sentence."]), "eval")
    with caplog.at_level("WARNING", logger="hfssl.data.nsp"):
        check_nsp_pairs(examples, "train")  # balanced: silent
        assert caplog.text == ""
        check_nsp_pairs(build(["One sentence.", "Another one.", "A third."] * 4), "train")  # one sentence per document
        assert (
            "100% of the train next-sentence pairs are random" in caplog.text
            and "--txt_sample_by paragraph" in caplog.text
        )
        caplog.clear()
        check_nsp_pairs(build([documents[0]]), "eval")  # no other document for a random B
        assert "100% of the eval next-sentence pairs are real continuations" in caplog.text
        caplog.clear()
        check_nsp_pairs(build([documents[0]]), "eval", labels_used=False)  # masked LM only: labels do not matter
        assert caplog.text == ""


def test_special_token_text_is_not_a_separator(tokenizer):
    texts = ["Type [SEP] to split and [CLS] to classify. Then [MASK] it.", "Another document. With two sentences."]
    for example in build_nsp_examples(datasets.Dataset.from_dict({"text": texts}), tokenizer, MAX_SEQ_LENGTH, seed=0):
        assert sum(example["special_tokens_mask"]) == 3
        assert sum(token in tokenizer.all_special_ids for token in example["input_ids"]) == 3


def test_reproducible_with_a_seed(documents, tokenizer):
    dataset = datasets.Dataset.from_dict({"text": documents[:12]})
    first = build_nsp_examples(dataset, tokenizer, MAX_SEQ_LENGTH, seed=3, documents_per_batch=3)
    assert (
        first.to_list()
        == build_nsp_examples(dataset, tokenizer, MAX_SEQ_LENGTH, seed=3, documents_per_batch=3).to_list()
    )
    assert (
        first.to_list()
        != build_nsp_examples(dataset, tokenizer, MAX_SEQ_LENGTH, seed=4, documents_per_batch=3).to_list()
    )
    # Two workers of 6 documents each begin their batches where one process does: same result.
    assert (
        first.to_list()
        == build_nsp_examples(dataset, tokenizer, MAX_SEQ_LENGTH, seed=3, documents_per_batch=3, num_proc=2).to_list()
    )
    twice = build_nsp_examples(dataset, tokenizer, MAX_SEQ_LENGTH, seed=3, documents_per_batch=3, dupe_factor=2)
    assert 1.7 * len(first) < len(twice) < 2.3 * len(first)


def test_streaming_dataset_gives_the_same_examples(documents, tokenizer):
    dataset = datasets.Dataset.from_dict({"text": documents[:10], "label": list(range(10))})
    built = build_nsp_examples(dataset, tokenizer, MAX_SEQ_LENGTH, seed=0)
    assert (
        list(build_nsp_examples(dataset.to_iterable_dataset(), tokenizer, MAX_SEQ_LENGTH, seed=0)) == built.to_list()
    )


def test_bad_input_is_refused_with_a_clear_error(documents, tokenizer):
    dataset = datasets.Dataset.from_dict({"text": documents[:3]})
    with pytest.raises(ValueError, match=r"no 'text' column.*\['content'\]"):
        build_nsp_examples(datasets.Dataset.from_dict({"content": documents[:3]}), tokenizer)
    with pytest.raises(ValueError, match="max_seq_length=4 is too small"):
        build_nsp_examples(dataset, tokenizer, max_seq_length=4)
    with pytest.raises(ValueError, match="short_seq_prob"):
        build_nsp_examples(dataset, tokenizer, short_seq_prob=1.5)
    with pytest.raises(ValueError, match="dupe_factor"):
        build_nsp_examples(dataset, tokenizer, dupe_factor=0)
    gpt_tokenizer = train_subword_tokenizer(documents[:3], "byte_level_bpe", "gpt", vocab_size=300)
    with pytest.raises(ValueError, match="no cls_token"):
        build_nsp_examples(dataset, gpt_tokenizer)
    with pytest.raises(ValueError, match="must hold strings"):
        build_nsp_examples(datasets.Dataset.from_dict({"text": [["a list"]]}), tokenizer)
    assert len(build_nsp_examples(dataset, tokenizer, max_seq_length=5)) > 0  # the smallest length works


def test_truncate_seq_pair_matches_googles_loop():
    def google(length_a: int, length_b: int, max_num_tokens: int, rng: random.Random) -> tuple[int, int]:
        a, b = list(range(length_a)), list(range(length_b))
        while len(a) + len(b) > max_num_tokens:
            longer = a if len(a) > len(b) else b
            longer.pop(0 if rng.random() < 0.5 else -1)
        return len(a), len(b)

    rng = random.Random(0)
    removed = from_front = 0
    for _ in range(3000):
        length_a, length_b, max_num_tokens = rng.randint(1, 300), rng.randint(1, 300), rng.randint(2, 300)
        (a_start, a_stop), (b_start, b_stop) = truncate_seq_pair(length_a, length_b, max_num_tokens, rng)
        assert (a_stop - a_start, b_stop - b_start) == google(length_a, length_b, max_num_tokens, rng)
        assert 0 <= a_start < a_stop <= length_a and 0 <= b_start < b_stop <= length_b
        removed += length_a - (a_stop - a_start) + length_b - (b_stop - b_start)
        from_front += a_start + b_start
    assert within_sigmas(from_front, removed, 0.5)


# -------------------------------------------------------------------------------------- masking


def test_token_masking_rate_and_80_10_10(examples, tokenizer):
    mask_id = tokenizer.mask_token_id
    maskable = selected = as_mask = unchanged = 0
    for rows, batch in _collate_all(examples.select(range(1200)), DataCollatorForBertPretraining(tokenizer, seed=0)):
        for row, example in enumerate(rows):
            original = torch.tensor(example["input_ids"])
            length = len(original)
            chosen = batch["labels"][row, :length] != IGNORE_INDEX
            inputs = batch["input_ids"][row, :length]
            maskable += len(original) - sum(example["special_tokens_mask"])
            selected += int(chosen.sum())
            as_mask += int((inputs[chosen] == mask_id).sum())
            unchanged += int((inputs[chosen] == original[chosen]).sum())
    assert within_sigmas(selected, maskable, 0.15)
    assert within_sigmas(as_mask, selected, 0.8)
    # a random replacement equals the original once in len(tokenizer) draws
    assert within_sigmas(unchanged, selected, 0.1 + 0.1 / len(tokenizer))
    assert within_sigmas(selected - as_mask - unchanged, selected, 0.1 * (1 - 2 / len(tokenizer)))


def test_batches_are_padded_and_specials_never_masked(examples, tokenizer):
    collator = DataCollatorForBertPretraining(tokenizer, seed=0, pad_to_multiple_of=8)
    for rows, batch in _collate_all(examples.select(range(320)), collator):
        assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "labels", "next_sentence_label"}
        longest = max(len(example["input_ids"]) for example in rows)
        assert (
            batch["input_ids"].shape == (len(rows), math.ceil(longest / 8) * 8)
            and batch["input_ids"].dtype == torch.long
        )
        assert batch["next_sentence_label"].tolist() == [example["next_sentence_label"] for example in rows]
        for row, example in enumerate(rows):
            length = len(example["input_ids"])
            original = torch.tensor(example["input_ids"])
            special = torch.tensor(example["special_tokens_mask"]).bool()
            labels, inputs = batch["labels"][row], batch["input_ids"][row]
            assert batch["attention_mask"][row].tolist() == [1] * length + [0] * (len(inputs) - length)
            assert batch["token_type_ids"][row].tolist() == example["token_type_ids"] + [0] * (len(inputs) - length)
            assert (inputs[length:] == tokenizer.pad_token_id).all() and (labels[length:] == IGNORE_INDEX).all()
            assert (inputs[:length][special] == original[special]).all() and (
                labels[:length][special] == IGNORE_INDEX
            ).all()
            chosen = labels[:length] != IGNORE_INDEX
            assert (labels[:length][chosen] == original[chosen]).all()
            assert (inputs[:length][~chosen] == original[~chosen]).all()


def test_tensor_rows_collate_like_list_rows(examples, tokenizer):
    rows = examples.select(range(16)).to_list()
    tensor_rows = [examples.with_format("torch")[index] for index in range(16)]
    from_lists = DataCollatorForBertPretraining(tokenizer, seed=5, whole_word_mask=True)(rows)
    from_tensors = DataCollatorForBertPretraining(tokenizer, seed=5, whole_word_mask=True)(tensor_rows)
    assert all(torch.equal(from_lists[name], from_tensors[name]) for name in from_lists)


def _words(example: dict) -> list[list[int]]:
    """Positions of each word (a token and its continuation pieces) of an example."""
    words: list[list[int]] = []
    for position, (starts, special) in enumerate(zip(example["starts_word"], example["special_tokens_mask"])):
        if special:
            continue
        if starts or not words:
            words.append([position])
        else:
            words[-1].append(position)
    return words


def test_whole_word_masking_masks_every_piece_of_a_word_or_none(examples, tokenizer):
    collator = DataCollatorForBertPretraining(tokenizer, seed=0, whole_word_mask=True)
    maskable = selected = as_mask = multi_piece_words_masked = 0
    for rows, batch in _collate_all(examples.select(range(1000)), collator):
        for row, example in enumerate(rows):
            chosen = (batch["labels"][row] != IGNORE_INDEX).tolist()
            num_maskable = len(example["input_ids"]) - sum(example["special_tokens_mask"])
            budget = max(1, round(num_maskable * 0.15))
            assert sum(chosen) <= budget
            for word in _words(example):
                assert len({chosen[position] for position in word}) == 1, word
                multi_piece_words_masked += len(word) > 1 and chosen[word[0]]
            assert not any(
                chosen[position] for position, special in enumerate(example["special_tokens_mask"]) if special
            )
            assert not any(chosen[len(example["input_ids"]) :])
            maskable += num_maskable
            selected += sum(chosen)
            as_mask += int((batch["input_ids"][row][torch.tensor(chosen)] == tokenizer.mask_token_id).sum())
    assert multi_piece_words_masked > 100
    assert 0.14 < selected / maskable < 0.155  # round(n * 0.15) tokens, but for words that do not fit
    assert within_sigmas(as_mask, selected, 0.8)  # 80/10/10 still applies token by token, as in Google's code


def test_select_whole_words_spends_the_budget_on_whole_words():
    starts_word = torch.tensor([[0, 1, 0, 0, 1, 1, 0, 1, 0, 0, 0, 0], [0, 0, 1, 0, 1, 0, 1, 1, 1, 0, 0, 0]])
    maskable = torch.tensor([[0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0], [0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]]).bool()
    for seed in range(20):
        selected = select_whole_words(starts_word, maskable, 0.4, torch.Generator().manual_seed(seed))
        # row 0: words [1,2,3] [4] [5,6] [7..10], budget round(10 * 0.4) = 4
        assert selected[0].sum() <= 4 and not selected[0, [0, 11]].any()
        for word in ([1, 2, 3], [4], [5, 6], [7, 8, 9, 10]):
            assert len(set(selected[0, word].tolist())) == 1
        # row 1: a continuation right after a special token starts a word: [1] [2,3] [4,5] [6] [7] [8]
        assert selected[1].sum() == round(8 * 0.4) and not selected[1, [0, 9, 10, 11]].any()
        assert selected[1, 2] == selected[1, 3] and selected[1, 4] == selected[1, 5]


def test_collator_is_reproducible_with_a_seed(examples, tokenizer):
    rows = examples.select(range(64)).to_list()
    for whole_word_mask in (False, True):
        first = DataCollatorForBertPretraining(tokenizer, seed=1, whole_word_mask=whole_word_mask)
        again = DataCollatorForBertPretraining(tokenizer, seed=1, whole_word_mask=whole_word_mask)
        other = DataCollatorForBertPretraining(tokenizer, seed=2, whole_word_mask=whole_word_mask)
        batches = [first(rows[:32]), first(rows[32:])]
        assert all(
            torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(batches, [again(rows[:32]), again(rows[32:])])
        )
        assert not torch.equal(batches[0]["labels"], other(rows[:32])["labels"])
        assert not torch.equal(batches[0]["labels"], first(rows[:32])["labels"])  # the stream moves on


def test_seeded_collator_in_dataloader_workers_draws_new_masks_every_epoch(examples, tokenizer):
    rows = examples.select(range(32)).to_list()

    def two_epochs() -> list[torch.Tensor]:
        torch.manual_seed(0)  # what Trainer's set_seed does; torch draws the workers' seeds from it
        collator = DataCollatorForBertPretraining(tokenizer, seed=7)
        loader = torch.utils.data.DataLoader(rows, batch_size=8, num_workers=2, collate_fn=collator)
        return [torch.cat([batch["labels"] for batch in loader]) for _ in range(2)]

    first_epoch, second_epoch = two_epochs()
    assert not torch.equal(first_epoch, second_epoch)
    assert all(torch.equal(a, b) for a, b in zip((first_epoch, second_epoch), two_epochs()))


def test_eval_collator_seeded_by_worker_id_repeats_every_pass_with_workers(examples, tokenizer):
    """The recipes' eval collators: a fresh copy for each evaluation gives the same masks with workers
    too, whatever the main process' RNG has done in between (training moves it)."""
    rows = examples.select(range(8)).to_list() * 4  # every batch the same 8 rows; batches alternate between 2 workers
    collator = DataCollatorForBertPretraining(tokenizer, seed=7, worker_seed_from_id=True)

    def one_pass(num_workers: int) -> torch.Tensor:
        torch.randn(3)  # training steps in between move the main RNG, from which torch draws worker seeds
        loader = torch.utils.data.DataLoader(
            rows, batch_size=8, num_workers=num_workers, collate_fn=copy.deepcopy(collator)
        )
        return torch.cat([batch["labels"] for batch in loader])

    first = one_pass(2)
    assert torch.equal(first, one_pass(2))
    batches = first.split(8)
    assert not torch.equal(batches[0], batches[1])  # worker 0 and worker 1 still draw differently


def test_collator_refuses_what_it_cannot_mask(examples, tokenizer, documents):
    rows = [{"input_ids": example["input_ids"]} for example in examples.select(range(4))]
    with pytest.raises(ValueError, match="starts_word"):
        DataCollatorForBertPretraining(tokenizer, whole_word_mask=True)(rows)
    plain = DataCollatorForBertPretraining(tokenizer, seed=0)(rows)  # special tokens found from the ids
    assert (plain["labels"][:, 0] == IGNORE_INDEX).all() and "next_sentence_label" not in plain
    with pytest.raises(ValueError, match="mask_token"):
        DataCollatorForBertPretraining(train_subword_tokenizer(documents[:3], "byte_level_bpe", "gpt", vocab_size=300))


def test_a_batch_trains_bert_for_pretraining(examples, tokenizer):
    from transformers import BertConfig, BertForPreTraining

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=MAX_SEQ_LENGTH, type_vocab_size=2,
    )  # fmt: skip
    model = BertForPreTraining(config)
    batch = DataCollatorForBertPretraining(tokenizer, seed=0, whole_word_mask=True)(
        examples.select(range(8)).to_list()
    )
    output = model(**batch)
    assert torch.isfinite(output.loss) and output.loss > 0
    output.loss.backward()
