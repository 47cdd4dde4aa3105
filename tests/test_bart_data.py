"""Tests for hfssl.data.denoising (BART's noising, Lewis et al. 2020) on the shared corpus.

The collator's output is checked against what the paper specifies, from the outside: every
``<mask>`` must stand for a run of >= 0 consecutive original tokens (``_match_masks`` aligns the
noised input to the original), the masked share and span lengths must follow ``mask_ratio`` and
Poisson(lambda), a permuted input must be the original sentences in another order, and a tiny
BART must train on the batch.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

import copy
import logging
import math

import datasets
import numpy as np
import pytest
import torch
from transformers import BartConfig, BartForConditionalGeneration
from transformers.models.bart.modeling_bart import shift_tokens_right

from hfssl.data.denoising import (
    DataCollatorForBartDenoising,
    build_denoising_examples,
    pack_sentences,
    word_start_table,
)
from hfssl.data.sentences import segment_sentences
from hfssl.tokenization import train_subword_tokenizer

MAX_SEQ_LENGTH = 128
BOS, PAD, EOS, MASK = 0, 1, 2, 4
NUM_EXAMPLES = 400


@pytest.fixture(scope="module")
def documents(corpus_documents) -> list[str]:
    return corpus_documents[::8]  # 221 documents from all four sources (Bible, Austen, Gutenberg, Wikipedia)


@pytest.fixture(scope="module")
def tokenizer(documents):
    return train_subword_tokenizer(documents, "byte_level_bpe", "bart", vocab_size=2000)


@pytest.fixture(scope="module")
def examples(documents, tokenizer) -> datasets.Dataset:
    return build_denoising_examples(
        datasets.Dataset.from_dict({"text": documents}), tokenizer, max_seq_length=MAX_SEQ_LENGTH
    )


@pytest.fixture(scope="module")
def rows(examples) -> list[dict]:
    step = max(1, len(examples) // NUM_EXAMPLES)
    return [examples[index] for index in range(0, step * NUM_EXAMPLES, step)][:NUM_EXAMPLES]


@pytest.fixture(scope="module")
def is_word_token(tokenizer) -> np.ndarray:
    """Independent of the code under test: byte-level BPE's "Ġ" marks the first token of a word."""
    return np.array([token.startswith("Ġ") for token in tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))])


def _collate(tokenizer, rows, **kwargs) -> dict[str, torch.Tensor]:
    return DataCollatorForBartDenoising(tokenizer, **{"seed": 0, **kwargs})(rows)


def _unpadded(batch) -> tuple[list[list[int]], list[list[int]]]:
    """Each row's noised input and original labels, padding removed, ``<s>``/``</s>`` included."""
    inputs = [row[mask.bool()].tolist() for row, mask in zip(batch["input_ids"], batch["attention_mask"])]
    labels = [row[row != -100].tolist() for row in batch["labels"]]
    return inputs, labels


def _match_masks(noised: list[int], original: list[int]) -> list[int] | None:
    """The number of original tokens each ``<mask>`` of ``noised`` stands for (in order), such that
    replacing every mask by its run gives ``original``; None when no such runs exist. Glob matching
    with ``<mask>`` as ``*`` (greedy, backtracking to the last mask: exact for the yes/no answer;
    each mask takes its shortest possible run)."""
    masks = [index for index, token in enumerate(noised) if token == MASK]
    run_start: dict[int, int] = {}
    run_end: dict[int, int] = {}
    i = j = 0
    last_mask = -1
    while j < len(original):
        if i < len(noised) and noised[i] == MASK:
            last_mask, run_start[i], run_end[i] = i, j, j
            i += 1
        elif i < len(noised) and noised[i] == original[j]:
            i, j = i + 1, j + 1
        elif last_mask >= 0:
            run_end[last_mask] += 1
            i, j = last_mask + 1, run_end[last_mask]
        else:
            return None
    while i < len(noised) and noised[i] == MASK:
        run_start[i] = run_end[i] = j
        i += 1
    if i != len(noised):
        return None
    return [run_end[index] - run_start[index] for index in masks]


def _sentence_order(tokens: list[int], sentences: list[list[int]]) -> list[int] | None:
    """Indices of ``sentences`` (each used once) whose concatenation is ``tokens``, or None."""
    if not sentences:
        return [] if not tokens else None
    for index, sentence in enumerate(sentences):
        if tokens[: len(sentence)] == sentence:
            rest = _sentence_order(tokens[len(sentence) :], sentences[:index] + sentences[index + 1 :])
            if rest is not None:
                return [index] + [other + (other >= index) for other in rest]
    return None


def _sentences(row: dict) -> list[list[int]]:
    tokens, lengths = row["input_ids"][1:-1], row["sentence_lengths"]
    ends = np.cumsum(lengths)
    return [tokens[end - length : end] for end, length in zip(ends, lengths)]


# ----------------------------------------------------------------------------- examples


def test_examples_pack_whole_sentences_within_max_seq_length(examples, documents, tokenizer):
    assert examples.column_names == ["input_ids", "sentence_lengths"]
    lengths = [len(ids) for ids in examples["input_ids"]]
    assert max(lengths) <= MAX_SEQ_LENGTH and min(lengths) >= 3
    for ids, sentence_lengths in zip(examples["input_ids"], examples["sentence_lengths"]):
        assert ids[0] == BOS and ids[-1] == EOS and BOS not in ids[1:-1] and EOS not in ids[1:-1]
        assert sum(sentence_lengths) == len(ids) - 2 and min(sentence_lengths) >= 1
    # Packing is greedy: a chunk is only closed when the next sentence would not fit.
    assert np.mean(lengths) > 0.7 * MAX_SEQ_LENGTH

    # One document, read back: its examples hold its sentences in order, each " " + sentence.
    document = documents[3]
    rows = build_denoising_examples(
        datasets.Dataset.from_dict({"text": [document]}), tokenizer, max_seq_length=MAX_SEQ_LENGTH
    )
    decoded = [tokenizer.decode(sentence) for row in rows for sentence in _sentences(row)]
    sentences = segment_sentences(document)
    assert len(sentences) > 5 and "".join(decoded) == "".join(" " + sentence for sentence in sentences)
    sentence_lengths = [
        len(ids)
        for ids in tokenizer([" " + sentence for sentence in sentences], add_special_tokens=False)["input_ids"]
    ]
    assert max(sentence_lengths) > MAX_SEQ_LENGTH - 2  # this document has a sentence to cut
    assert len(decoded) == sum(math.ceil(length / (MAX_SEQ_LENGTH - 2)) for length in sentence_lengths)
    fitting = {" " + sentence for sentence, length in zip(sentences, sentence_lengths) if length <= MAX_SEQ_LENGTH - 2}
    assert fitting <= set(decoded)


def test_long_sentences_are_cut_and_blank_or_one_sentence_documents_are_handled(tokenizer, caplog):
    long_sentence = (
        "The quick brown fox jumps over the lazy dog near the riverbank while the farmer watches in silence."
    )
    texts = ["", "   \n\n ", "Only one sentence here.", long_sentence]
    with caplog.at_level(logging.INFO, logger="hfssl.data.denoising"):
        rows = build_denoising_examples(datasets.Dataset.from_dict({"text": texts}), tokenizer, max_seq_length=10)
    assert "Dropped 2 blank documents of 4" in caplog.text
    one_sentence = tokenizer(" Only one sentence here.", add_special_tokens=False)["input_ids"]
    assert rows[0]["input_ids"] == [BOS, *one_sentence, EOS] and rows[0]["sentence_lengths"] == [len(one_sentence)]
    cut = [ids[1:-1] for ids in rows["input_ids"][1:]]
    assert len(cut) > 1 and all(len(piece) <= 8 for piece in cut)
    assert tokenizer.decode([token for piece in cut for token in piece]) == " " + long_sentence
    assert pack_sentences([[5, 6, 7], [8], [9, 10, 11, 12, 13]], budget=4) == [
        ([5, 6, 7, 8], [3, 1]),
        ([9, 10, 11, 12], [4]),
        ([13], [1]),
    ]

    # Permuting a one-sentence example changes nothing.
    batch = _collate(tokenizer, [rows[0]], mask_ratio=0.0)
    assert batch["input_ids"][0].tolist() == batch["labels"][0].tolist() == rows[0]["input_ids"]


def test_errors_name_the_problem(tokenizer, documents):
    with pytest.raises(ValueError, match=r"no 'text' column \(columns: body, title\)"):
        build_denoising_examples(datasets.Dataset.from_dict({"body": ["A."], "title": ["t"]}), tokenizer)
    with pytest.raises(ValueError, match="max_seq_length=2 is too small"):
        build_denoising_examples(datasets.Dataset.from_dict({"text": ["A."]}), tokenizer, max_seq_length=2)
    with pytest.raises(ValueError, match="must hold strings"):
        build_denoising_examples(datasets.Dataset.from_dict({"text": [3]}), tokenizer)
    gpt_tokenizer = train_subword_tokenizer(documents[:5], "byte_level_bpe", "gpt", vocab_size=300)
    with pytest.raises(ValueError, match="needs mask_token"):
        DataCollatorForBartDenoising(gpt_tokenizer)
    for bad in (1.5, -0.1):
        with pytest.raises(ValueError, match=r"mask_ratio must be in \[0, 1\]"):
            DataCollatorForBartDenoising(tokenizer, mask_ratio=bad)
    with pytest.raises(ValueError, match="poisson_lambda"):
        DataCollatorForBartDenoising(tokenizer, poisson_lambda=0)
    with pytest.raises(ValueError, match="needs each example's 'sentence_lengths'"):
        DataCollatorForBartDenoising(tokenizer)([{"input_ids": [BOS, 50, 51, EOS]}])
    with pytest.raises(ValueError, match=r"must be <s> \.\.\. </s>"):
        DataCollatorForBartDenoising(tokenizer)([{"input_ids": [50, 51], "sentence_lengths": [0]}])


# ----------------------------------------------------------------------------- text infilling


def test_each_mask_stands_for_one_run_of_original_tokens(tokenizer, rows):
    batch = _collate(tokenizer, rows, permute_sentences=0.0, random_ratio=0.0)
    inputs, labels = _unpadded(batch)
    assert labels == [row["input_ids"] for row in rows]  # labels are the original, exactly
    num_masks = 0
    for noised, original in zip(inputs, labels):
        assert noised[0] == BOS and noised[-1] == EOS
        assert BOS not in noised[1:-1] and EOS not in noised[1:-1]  # the ends are never masked
        runs = _match_masks(noised[1:-1], original[1:-1])
        assert runs is not None, "the noised input is not the original with runs replaced by <mask>"
        # Spans never overlap or touch: a token always separates two masks.
        assert not any(a == b == MASK for a, b in zip(noised, noised[1:]))
        num_masks += len(runs)
    assert num_masks > 5 * len(rows)


def test_masked_share_is_mask_ratio_of_words(tokenizer, rows, is_word_token):
    batch = _collate(tokenizer, rows, permute_sentences=0.0, random_ratio=0.0)
    inputs, labels = _unpadded(batch)
    masked_tokens = total_tokens = checked = 0
    for noised, original, row in zip(inputs, labels, rows):
        interior, kept = np.array(original[1:-1]), np.array([token for token in noised[1:-1] if token != MASK])
        masked_tokens += len(interior) - len(kept)
        total_tokens += len(interior)
        sentence_starts = np.cumsum(row["sentence_lengths"]) - row["sentence_lengths"]
        if not is_word_token[interior[sentence_starts]].all():
            continue  # a piece of a cut sentence starts mid-word; the word count below assumes "Ġ" starts
        checked += 1
        num_words = int(is_word_token[interior].sum())
        assert num_words - int(is_word_token[kept].sum()) == math.ceil(0.3 * num_words)
    assert checked > 0.9 * len(rows)
    # Whole words are masked, so the token share is mask_ratio up to sampling noise.
    assert abs(masked_tokens / total_tokens - 0.3) < 0.02


def test_token_level_masking_hides_exactly_mask_ratio_of_tokens(tokenizer, rows):
    batch = _collate(tokenizer, rows, permute_sentences=0.0, random_ratio=0.0, whole_word_mask=False, mask_ratio=0.4)
    for noised, original in zip(*_unpadded(batch)):
        num_tokens = len(original) - 2
        assert num_tokens - (len(noised) - 2 - noised.count(MASK)) == math.ceil(0.4 * num_tokens)


def test_span_lengths_follow_poisson(tokenizer, rows, is_word_token):
    def words_per_mask(poisson_lambda: float) -> np.ndarray:
        batch = _collate(tokenizer, rows, permute_sentences=0.0, random_ratio=0.0, poisson_lambda=poisson_lambda)
        spans = []
        for noised, original in zip(*_unpadded(batch)):
            runs = iter(_match_masks(noised[1:-1], original[1:-1]))
            position = 1  # in the original, walked alongside the noised input
            for token in noised[1:-1]:
                run = next(runs) if token == MASK else 1
                if token == MASK:
                    spans.append(int(is_word_token[original[position : position + run]].sum()))
                position += run
        return np.array(spans)

    spans = words_per_mask(3.5)
    nonzero = spans[spans > 0]
    # fairseq's procedure, simulated here independently: Poisson(3.5) lengths drawn until they cover
    # ceil(0.3 * words), the last cut to fit; cutting pulls the mean below E[L | L > 0] = 3.61.
    rng = np.random.default_rng(0)
    expected = []
    for row in rows * 10:
        budget = math.ceil(0.3 * int(is_word_token[row["input_ids"]].sum()))
        drawn = []
        while sum(drawn) < budget:
            drawn.append(int(rng.poisson(3.5)))
        drawn[-1] -= sum(drawn) - budget
        expected.extend(length for length in drawn if length > 0)
    assert len(nonzero) > 2000 and abs(nonzero.mean() - np.mean(expected)) < 0.12
    assert abs(nonzero.std() - np.std(expected)) < 0.15
    assert 0.015 < np.mean(spans == 0) < 0.05  # P(0) = e^-3.5 = 0.03
    # Zero-length spans are inserted masks: P(0) = e^-1 = 0.37 of the draws with lambda = 1.
    spans = words_per_mask(1.0)
    assert 0.28 < np.mean(spans == 0) < 0.45


def test_random_ratio_replaces_masks_with_ordinary_tokens(tokenizer, rows):
    masked = _collate(tokenizer, rows, permute_sentences=0.0, random_ratio=0.0)
    for ratio, low, high in ((1.0, 1.0, 1.0), (0.1, 0.07, 0.13)):
        replaced = _collate(tokenizer, rows, permute_sentences=0.0, random_ratio=ratio)
        # The same seed draws the same spans whatever random_ratio is; only what stands in for them changes.
        assert torch.equal(replaced["attention_mask"], masked["attention_mask"])
        is_mask = masked["input_ids"] == MASK
        assert torch.equal(replaced["input_ids"][~is_mask], masked["input_ids"][~is_mask])
        stand_ins = replaced["input_ids"][is_mask]
        assert low <= (stand_ins != MASK).float().mean().item() <= high
        assert not np.isin(stand_ins[stand_ins != MASK].numpy(), tokenizer.all_special_ids).any()


# ----------------------------------------------------------------------------- permutation and rotation


def test_permutation_keeps_the_sentences_and_shuffles_them(tokenizer, rows):
    batch = _collate(tokenizer, rows, mask_ratio=0.0)
    inputs, labels = _unpadded(batch)
    assert labels == [row["input_ids"] for row in rows]
    moved, expected_moved = 0, 0.0
    for noised, row in zip(inputs, rows):
        assert noised[0] == BOS and noised[-1] == EOS and len(noised) == len(row["input_ids"])
        order = _sentence_order(noised[1:-1], _sentences(row))
        assert order is not None, "the permuted input is not the example's sentences in some order"
        num_sentences = len(row["sentence_lengths"])
        if num_sentences > 1:
            moved += noised != row["input_ids"]
            expected_moved += 1 - 1 / math.factorial(num_sentences)
    assert expected_moved > 50 and moved > 0.85 * expected_moved

    partial = _collate(tokenizer, rows, mask_ratio=0.0, permute_sentences=0.3)
    for noised, row in zip(_unpadded(partial)[0], rows):
        order = _sentence_order(noised[1:-1], _sentences(row))
        displaced = sum(index != position for position, index in enumerate(order))
        assert displaced <= math.ceil(0.3 * len(row["sentence_lengths"]))

    untouched = _collate(tokenizer, rows, mask_ratio=0.0, permute_sentences=0.0)
    assert torch.equal(
        untouched["input_ids"][untouched["attention_mask"].bool()], untouched["labels"][untouched["labels"] != -100]
    )


def test_separator_token_travels_with_its_sentence(documents, tokenizer):
    rows = build_denoising_examples(
        datasets.Dataset.from_dict({"text": documents[:20]}),
        tokenizer,
        max_seq_length=MAX_SEQ_LENGTH,
        sentence_separator_id=EOS,
    )
    # Every sentence ends with its separator, except the first pieces of a sentence cut at the budget.
    uncut = [sentence for row in rows for sentence in _sentences(row) if len(sentence) < MAX_SEQ_LENGTH - 2]
    assert len(uncut) > 100 and all(sentence[-1] == EOS for sentence in uncut)
    for row in rows:
        if row["sentence_lengths"][-1] < MAX_SEQ_LENGTH - 2:
            assert row["input_ids"][-2:] == [EOS, EOS]  # as fairseq's mBART blocks: the last separator, then </s>
    batch = _collate(tokenizer, list(rows), mask_ratio=0.0)
    for noised, row in zip(_unpadded(batch)[0], rows):
        assert _sentence_order(noised[1:-1], _sentences(row)) is not None


def test_rotation_moves_a_random_token_to_the_front(tokenizer, rows):
    batch = _collate(tokenizer, rows, mask_ratio=0.0, permute_sentences=0.0, rotate_ratio=1.0)
    offsets = []
    for noised, original in zip(*_unpadded(batch)):
        assert noised[0] == BOS and noised[-1] == EOS
        body, original_body = noised[1:-1], original[1:-1]
        matches = [
            shift for shift in range(len(original_body)) if original_body[shift:] + original_body[:shift] == body
        ]
        assert matches
        offsets.append(matches[0] / len(original_body))
    assert 0.4 < np.mean(offsets) < 0.6  # uniform over the document


# ----------------------------------------------------------------------------- batch layout and the model


def test_padding_labels_and_decoder_inputs(tokenizer, rows):
    batch = _collate(tokenizer, rows[:16], pad_to_multiple_of=8)
    input_ids, attention_mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    decoder_input_ids = batch["decoder_input_ids"]
    assert all(tensor.dtype == torch.long for tensor in batch.values())
    assert input_ids.shape == attention_mask.shape and input_ids.shape[1] % 8 == 0 and labels.shape[1] % 8 == 0
    lengths = attention_mask.sum(1)
    for row, length in enumerate(lengths.tolist()):
        assert attention_mask[row, :length].all() and not attention_mask[row, length:].any()
        assert (input_ids[row, length:] == PAD).all() and input_ids[row, length - 1] == EOS
        original = rows[row]["input_ids"]
        assert labels[row, : len(original)].tolist() == original and (labels[row, len(original) :] == -100).all()
    assert torch.equal(decoder_input_ids, shift_tokens_right(labels, PAD, EOS))
    assert (decoder_input_ids[:, 0] == EOS).all()
    assert torch.equal(decoder_input_ids[:, 1:], labels[:, :-1].masked_fill(labels[:, :-1] == -100, PAD))


@pytest.fixture
def one_thread():
    """A model this small gains nothing from 2 threads, and when other processes load the 2 cores
    the threads' spinning makes each step ~30x slower (0.74 s against 0.02 s measured here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_tiny_bart_learns_from_a_batch(tokenizer, rows, one_thread):
    torch.manual_seed(0)
    config = BartConfig(
        vocab_size=len(tokenizer), d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=MAX_SEQ_LENGTH,
        pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS, decoder_start_token_id=EOS,
    )  # fmt: skip
    model = BartForConditionalGeneration(config)
    batch = _collate(tokenizer, rows[:4])
    output = model(**batch)
    labels = batch["labels"]
    expected = torch.nn.functional.cross_entropy(output.logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
    assert torch.isfinite(output.loss) and torch.allclose(output.loss, expected)
    assert abs(output.loss.item() - math.log(len(tokenizer))) < 1.0  # an untrained model guesses uniformly
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = output.loss.item()
    for _ in range(3):
        optimizer.zero_grad()
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
    assert loss.item() < first


# ----------------------------------------------------------------------------- randomness


def test_seeded_noise_is_reproducible_and_workers_differ(tokenizer, rows):
    first, again, other = (_collate(tokenizer, rows[:32], seed=seed) for seed in (7, 7, 8))
    assert all(torch.equal(first[key], again[key]) for key in first)
    assert not torch.equal(first["input_ids"], other["input_ids"])

    unseeded = DataCollatorForBartDenoising(tokenizer)
    torch.manual_seed(3)
    a = unseeded(rows[:32])
    torch.manual_seed(3)
    b = unseeded(rows[:32])
    assert torch.equal(a["input_ids"], b["input_ids"])

    # Two DataLoader workers, two epochs, the same example everywhere: no two batches are noised alike.
    torch.manual_seed(0)
    collator = DataCollatorForBartDenoising(tokenizer, seed=7)
    loader = torch.utils.data.DataLoader([rows[0]] * 4, batch_size=2, num_workers=2, collate_fn=collator)
    batches = [tuple(batch["input_ids"][0].tolist()) for _ in range(2) for batch in loader]
    assert len(set(batches)) == len(batches)

    # An eval collator seeded by worker id: a fresh copy repeats its noise on every pass, workers included.
    evaluation = DataCollatorForBartDenoising(tokenizer, seed=7, worker_seed_from_id=True)
    passes = []
    for _ in range(2):
        torch.randn(3)  # training in between moves the RNG torch draws worker seeds from
        loader = torch.utils.data.DataLoader(
            [rows[0]] * 4, batch_size=2, num_workers=2, collate_fn=copy.deepcopy(evaluation)
        )
        passes.append([tuple(batch["input_ids"][0].tolist()) for batch in loader])
    assert passes[0] == passes[1] and passes[0][0] != passes[0][1]  # repeated; the two workers differ


def test_word_start_table_follows_the_vocabulary_marker(tokenizer, documents):
    table = word_start_table(tokenizer)
    vocab = tokenizer.get_vocab()
    assert table[vocab["ĠLord"]] and not table[vocab["ather"]] and table[[BOS, PAD, EOS, MASK]].all()
    wordpiece = train_subword_tokenizer(documents[:10], "wordpiece", "bert", vocab_size=400)
    pieces = wordpiece.convert_ids_to_tokens(wordpiece("unbelievably", add_special_tokens=False)["input_ids"])
    starts = word_start_table(wordpiece)[wordpiece.convert_tokens_to_ids(pieces)].tolist()
    assert len(pieces) > 1 and starts == [True] + [False] * (len(pieces) - 1)


def test_inserted_masks_never_push_the_input_past_max_length(tokenizer, rows):
    """With short spans many zero-length spans become inserted masks, so a noised input can grow
    past its original; max_length cuts inputs to fit, keeping </s> last, and never touches the labels."""
    loose = _collate(tokenizer, rows, poisson_lambda=1.0, seed=0)
    original_lengths = torch.tensor([len(row["input_ids"]) for row in rows])
    assert (loose["attention_mask"].sum(1) > original_lengths).any()  # the growth is real at lambda 1
    capped = _collate(tokenizer, rows, poisson_lambda=1.0, seed=0, max_length=64)
    lengths = capped["attention_mask"].sum(1)
    assert (
        capped["input_ids"].shape[1] <= 64 and (lengths == torch.clamp(loose["attention_mask"].sum(1), max=64)).all()
    )
    assert all(capped["input_ids"][i, lengths[i] - 1] == tokenizer.eos_token_id for i in range(len(rows)))
    assert torch.equal(capped["labels"], loose["labels"])
