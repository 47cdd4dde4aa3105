"""word2vec: loss and gradients by hand, the data pipeline against its formulas, persistence and
gensim interop, evaluation against gensim's, and training on the shared corpus."""

import json
import math
import os
import re
import sys

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT, register_two_process_run, require_full_data, word_vector_figure_tolerances
from transformers import AutoModel, AutoTokenizer

from hfssl import Word2VecConfig, Word2VecModel
from hfssl.data.word2vec import (
    SentenceCollator,
    SentenceDataset,
    alias_table,
    encode_corpus,
    keep_probabilities,
    noise_distribution,
    split_sentences,
    training_rows,
)
from hfssl.evaluation.word_vectors import gensim_test_file, model_word_vector_metrics, word_vector_metrics
from hfssl.models.word2vec import sequential_sgd
from hfssl.models.word2vec.negative_sampling import fused_negative_sampling_loss, negative_sampling_loss
from hfssl.tokenization import UNK_TOKEN_ID, train_word_level_tokenizer, word_level_tokenizer
from hfssl.training import Word2VecTrainer, Word2VecTrainingArguments

sys.path.insert(0, str(REPO_ROOT / "recipes"))
import pretrain_word2vec  # noqa: E402

COMMON = ["--use_cpu", "--report_to", "none", "--disable_tqdm", "true", "--seed", "0"]


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def _weights(vocab=6, dim=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(vocab, dim, generator=generator, dtype=torch.float64), torch.randn(
        vocab, dim, generator=generator, dtype=torch.float64
    )


def _hand_loss_and_grads(win, wout, centers, contexts, masks, negatives, cbow_mean):
    """One row at a time, with word2vec.c's formulas: g = label - sigmoid(u . h); the error of h goes
    in full to every context word."""
    win, wout = win.tolist(), wout.tolist()
    dim = len(win[0])
    loss, gin, gout = 0.0, [[0.0] * dim for _ in win], [[0.0] * dim for _ in wout]
    for row, center in enumerate(centers):
        words = [w for w, m in zip(contexts[row], masks[row]) if m]
        h = [sum(win[w][d] for w in words) for d in range(dim)]
        if cbow_mean:
            h = [x / len(words) for x in h]
        h_error = [0.0] * dim
        for target, label in [(center, 1)] + [(n, 0) for n in negatives[row]]:
            if label == 0 and target == center:
                continue  # gensim skips a negative equal to the target
            f = sum(wout[target][d] * h[d] for d in range(dim))
            loss += -math.log(_sigmoid(f)) if label else -math.log(_sigmoid(-f))
            g = _sigmoid(f) - label  # d loss / d f
            for d in range(dim):
                h_error[d] += g * wout[target][d]
                gout[target][d] += g * h[d]
        for w in words:
            for d in range(dim):
                gin[w][d] += h_error[d]
    return loss, torch.tensor(gin, dtype=torch.float64), torch.tensor(gout, dtype=torch.float64)


SKIPGRAM_ROWS = dict(
    centers=[1, 2, 4, 1], contexts=[3, 1, 1, 5], negatives=[[2, 5], [2, 3], [0, 3], [1, 4]]
)  # row 2 and 4 draw their own center
CBOW_ROWS = dict(
    centers=[1, 2], contexts=[[3, 4, 0], [1, 5, 3]], masks=[[1, 1, 0], [1, 1, 1]], negatives=[[2, 5], [2, 4]]
)


@pytest.mark.parametrize("implementation", ["autograd", "fused"])
def test_skipgram_loss_and_gradients_match_a_hand_computation(implementation):
    win, wout = _weights()
    rows = SKIPGRAM_ROWS
    expected_loss, expected_gin, expected_gout = _hand_loss_and_grads(
        win, wout, rows["centers"], [[c] for c in rows["contexts"]], [[1]] * 4, rows["negatives"], True
    )
    win.requires_grad_(True), wout.requires_grad_(True)
    args = (torch.tensor(rows["centers"]), torch.tensor(rows["contexts"]), None, torch.tensor(rows["negatives"]))
    loss = (
        negative_sampling_loss(win, wout, *args)
        if implementation == "autograd"
        else fused_negative_sampling_loss(win, wout, *args, chunk_size=3)
    )
    loss.backward()
    assert loss.item() == pytest.approx(expected_loss, rel=1e-12)
    torch.testing.assert_close(win.grad, expected_gin, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(wout.grad, expected_gout, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("implementation", ["autograd", "fused"])
@pytest.mark.parametrize("cbow_mean", [True, False])
def test_cbow_loss_and_gradients_match_a_hand_computation(implementation, cbow_mean):
    win, wout = _weights()
    rows = CBOW_ROWS
    expected_loss, expected_gin, expected_gout = _hand_loss_and_grads(
        win, wout, rows["centers"], rows["contexts"], rows["masks"], rows["negatives"], cbow_mean
    )
    win.requires_grad_(True), wout.requires_grad_(True)
    args = (
        torch.tensor(rows["centers"]),
        torch.tensor(rows["contexts"]),
        torch.tensor(rows["masks"], dtype=torch.bool),
        torch.tensor(rows["negatives"]),
    )
    if implementation == "autograd":
        loss = negative_sampling_loss(win, wout, *args, cbow_mean=cbow_mean)
    else:
        loss = fused_negative_sampling_loss(win, wout, *args, cbow_mean=cbow_mean, chunk_size=1)
    loss.backward()
    assert loss.item() == pytest.approx(expected_loss, rel=1e-12)
    torch.testing.assert_close(win.grad, expected_gin, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(wout.grad, expected_gout, rtol=1e-10, atol=1e-12)


def test_fused_loss_with_a_step_size_applies_the_chunks_updates_in_sequence():
    """One optimizer step on the fused gradient == SGD chunk after chunk (chunk of 1 row = word2vec)."""
    win, wout = _weights(vocab=8, dim=5)
    generator = torch.Generator().manual_seed(3)
    centers, contexts = torch.randint(1, 8, (7,), generator=generator), torch.randint(1, 8, (7,), generator=generator)
    negatives = torch.randint(1, 8, (7, 3), generator=generator)
    alpha = 0.3
    for chunk in (1, 3):
        sequential_in, sequential_out = win.clone(), wout.clone()
        for start in range(0, 7, chunk):
            a, b = sequential_in.clone().requires_grad_(True), sequential_out.clone().requires_grad_(True)
            rows = slice(start, start + chunk)
            negative_sampling_loss(a, b, centers[rows], contexts[rows], None, negatives[rows]).backward()
            sequential_in, sequential_out = (a - alpha * a.grad).detach(), (b - alpha * b.grad).detach()
        a, b = win.clone().requires_grad_(True), wout.clone().requires_grad_(True)
        fused_negative_sampling_loss(
            a, b, centers, contexts, None, negatives, chunk_size=chunk, step_size=alpha
        ).backward()
        torch.testing.assert_close(a.detach() - alpha * a.grad, sequential_in, rtol=1e-9, atol=1e-11)
        torch.testing.assert_close(b.detach() - alpha * b.grad, sequential_out, rtol=1e-9, atol=1e-11)
        torch.testing.assert_close(a.detach(), win)  # the weights are restored after forward


def _word2vec_c_sgd(win, wout, centers, contexts, masks, negatives, cbow_mean, alpha):
    """word2vec.c's loop, pair by pair and target by target (a negative drawn twice sees its own
    first update); returns the weights after the updates."""
    win, wout = win.clone(), wout.clone()
    for row, center in enumerate(centers.tolist()):
        words = [w for w, m in zip(contexts[row].tolist(), masks[row].tolist()) if m]
        h = win[words].sum(0) / (len(words) if cbow_mean else 1)
        error = torch.zeros_like(h)
        for target, label in [(center, 1)] + [(n, 0) for n in negatives[row].tolist()]:
            if label == 0 and target == center:
                continue
            g = alpha * (label - torch.sigmoid(wout[target] @ h))
            error += g * wout[target]
            wout[target] += g * h
        for w in words:
            win[w] += error
    return win, wout


@pytest.mark.skipif(not sequential_sgd.is_available(), reason="no C++ compiler for the word2vec CPU kernel")
@pytest.mark.parametrize("cbow", [False, True])
def test_sequential_kernel_applies_word2vec_cs_updates_pair_by_pair(cbow):
    """One SGD step on the kernel's gradient == word2vec.c's loop, repeated negatives included; with
    step size 0 the gradient is the autograd reference's; the weights are never written."""
    win, wout = _weights(vocab=9, dim=5)
    generator = torch.Generator().manual_seed(4)
    centers = torch.randint(1, 9, (11,), generator=generator)
    negatives = torch.randint(1, 9, (11, 4), generator=generator)  # repeats and the center itself occur
    contexts = torch.randint(1, 9, (11, 3) if cbow else (11,), generator=generator)
    mask = torch.rand(11, 3, generator=generator) > 0.4 if cbow else None
    if cbow:
        mask[:, 0] = True
    before = (win.clone(), wout.clone())
    alpha = 0.2
    _, gin, gout = sequential_sgd.sequential_sgd_loss_and_grads(
        win, wout, centers, contexts, mask, negatives, True, alpha, threads=1
    )
    reference_masks = mask if cbow else torch.ones(11, 1, dtype=torch.bool)
    expected_in, expected_out = _word2vec_c_sgd(
        win, wout, centers, contexts.view(11, -1), reference_masks, negatives, True, alpha
    )
    torch.testing.assert_close(win - alpha * gin, expected_in, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(wout - alpha * gout, expected_out, rtol=1e-10, atol=1e-12)
    assert torch.equal(win, before[0]) and torch.equal(wout, before[1])

    loss, gin, gout = sequential_sgd.sequential_sgd_loss_and_grads(
        win, wout, centers, contexts, mask, negatives, True, 0.0, threads=1
    )
    a, b = win.clone().requires_grad_(True), wout.clone().requires_grad_(True)
    reference = negative_sampling_loss(a, b, centers, contexts, mask, negatives)
    reference.backward()
    assert loss.item() == pytest.approx(reference.item(), rel=1e-12)
    torch.testing.assert_close(gin, a.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(gout, b.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.skipif(not sequential_sgd.is_available(), reason="no C++ compiler for the word2vec CPU kernel")
def test_sequential_kernel_threads_split_the_rows_and_refuse_bad_ids():
    """Two threads over rows whose words do not overlap give the one-thread result; float32 works;
    an id outside the vocabulary is an error, not a crash; the model picks the kernel on a CPU."""
    win, wout = (w.float() for w in _weights(vocab=2000, dim=8))
    generator = torch.Generator().manual_seed(5)
    ids = torch.cat(
        [
            torch.randint(1, 1000, (600, 7), generator=generator),
            torch.randint(1000, 2000, (600, 7), generator=generator),
        ]
    )
    centers, contexts, negatives = ids[:, 0], ids[:, 1], ids[:, 2:]
    one = sequential_sgd.sequential_sgd_loss_and_grads(
        win, wout, centers, contexts, None, negatives, True, 0.1, threads=1
    )
    two = sequential_sgd.sequential_sgd_loss_and_grads(
        win, wout, centers, contexts, None, negatives, True, 0.1, threads=2
    )
    assert one[0].item() == pytest.approx(two[0].item(), rel=1e-9)
    assert torch.equal(one[1], two[1]) and torch.equal(one[2], two[2])
    with pytest.raises(IndexError, match="word ids"):
        sequential_sgd.sequential_sgd_loss_and_grads(
            win, wout, centers, contexts + 5000, None, negatives, True, 0.1, threads=1
        )
    with pytest.raises(
        ValueError, match="Rows disagree"
    ):  # fewer negative rows than centers: refused, not read past the end
        sequential_sgd.sequential_sgd_loss_and_grads(
            win, wout, centers, contexts, None, negatives[:1], True, 0.1, threads=1
        )
    with pytest.raises(ValueError, match="alike"):
        sequential_sgd.sequential_sgd_loss_and_grads(
            win, wout[:, :4], centers, contexts, None, negatives, True, 0.1, threads=1
        )
    assert _small_model().training_loss_implementation() == "sequential"


def test_initialisation_follows_word2vec_c():
    model = Word2VecModel(Word2VecConfig(vocab_size=50, vector_size=10))
    weights = model.input_embeddings.weight.detach()
    assert weights[1:].abs().max() <= 0.5 / 10 and weights[1:].std() > 0.02  # uniform in [-0.5, 0.5] / D
    assert torch.all(weights[UNK_TOKEN_ID] == 0) and torch.all(model.output_embeddings.weight == 0)


def test_keep_probabilities_follow_mikolovs_formula():
    counts = np.array([0, 10_000, 1_000, 100, 10, 1])
    sample = 1e-3
    threshold = sample * counts.sum()
    expected = [0.0] + [min(1.0, (math.sqrt(c / threshold) + 1) * threshold / c) for c in counts[1:]]
    np.testing.assert_allclose(keep_probabilities(counts, sample), expected, rtol=1e-12)
    assert keep_probabilities(counts, sample)[1] < 0.2 and keep_probabilities(counts, sample)[-1] == 1.0
    np.testing.assert_array_equal(keep_probabilities(counts, 0.0), [0, 1, 1, 1, 1, 1])
    with pytest.raises(ValueError, match="sample"):
        keep_probabilities(counts, 1.5)


def test_negatives_follow_the_unigram_distribution_to_the_three_quarters():
    counts = torch.tensor([0, 5000, 800, 120, 30, 1])
    model = Word2VecModel(Word2VecConfig(vocab_size=6, vector_size=2))
    model.set_word_counts(counts)
    torch.manual_seed(0)
    draws = model.sample_negatives((400_000,))
    observed = torch.bincount(draws, minlength=6).double() / len(draws)
    expected = torch.from_numpy(noise_distribution(counts.numpy(), 0.75))
    np.testing.assert_allclose(
        expected.numpy(),
        [0] + [c**0.75 / sum(x**0.75 for x in [5000, 800, 120, 30, 1]) for c in [5000, 800, 120, 30, 1]],
    )
    assert observed[0] == 0  # [UNK] is never drawn
    threshold, alias = alias_table(expected.numpy())  # the table's own distribution, exactly
    implied = (threshold + np.bincount(alias, weights=1 - threshold, minlength=6)) / 6
    np.testing.assert_allclose(implied, expected.numpy(), rtol=1e-12, atol=1e-15)
    assert threshold[0] == 0
    tolerance = 5 * torch.sqrt(expected * (1 - expected) / len(draws)) + 1e-6
    assert torch.all((observed - expected).abs() <= tolerance), (observed, expected)


def _position_sentences(lengths):
    """Sentences of distinct ids, so an id is its position: ids 1..sum(lengths)."""
    ids = np.arange(1, sum(lengths) + 1, dtype=np.int32)
    return np.split(ids, np.cumsum(lengths)[:-1])


def test_skipgram_pairs_are_in_window_and_in_sentence():
    sentences = _position_sentences([12, 1, 7, 30])
    sentence_of = {int(i): s for s, sentence in enumerate(sentences) for i in sentence}
    window = 4
    packed, keep = SentenceCollator()(sentences), torch.ones(sum(map(len, sentences)) + 1)
    torch.manual_seed(0)
    seen_offsets = set()
    for _ in range(20):
        batch = training_rows(packed["token_ids"], packed["sentence_ids"], keep, window, sg=True)
        centers, contexts = batch["center_ids"].numpy(), batch["context_ids"].numpy()
        assert len(centers) == len(contexts) > 0
        assert all(sentence_of[c] == sentence_of[x] for c, x in zip(centers, contexts))
        offsets = contexts.astype(int) - centers.astype(int)
        assert np.all((np.abs(offsets) >= 1) & (np.abs(offsets) <= window))
        seen_offsets |= set(offsets.tolist())
        # each center's contexts are a full shrunk window: every offset up to its largest, both sides
        for center in np.unique(centers):
            own = offsets[centers == center]
            reach = np.abs(own).max()
            position = center - sentences[sentence_of[center]][0]
            length = len(sentences[sentence_of[center]])
            expected = {o for o in range(-reach, reach + 1) if o != 0 and 0 <= position + o < length}
            assert set(own.tolist()) == expected
    assert seen_offsets == {o for o in range(-window, window + 1) if o}  # every shrunk window size occurs


def test_cbow_windows_are_in_window_and_in_sentence():
    sentences = _position_sentences([9, 2, 15])
    sentence_of = {int(i): s for s, sentence in enumerate(sentences) for i in sentence}
    packed = SentenceCollator()(sentences)
    torch.manual_seed(1)
    batch = training_rows(packed["token_ids"], packed["sentence_ids"], torch.ones(27), window=3, sg=False)
    centers, contexts, mask = batch["center_ids"].numpy(), batch["context_ids"].numpy(), batch["context_mask"].numpy()
    assert contexts.shape == (len(centers), 6) and mask.any(axis=1).all()
    for center, row, keep in zip(centers, contexts, mask):
        words = row[keep].astype(int)
        assert all(sentence_of[w] == sentence_of[center] for w in words)
        offsets = set((words - int(center)).tolist())
        assert offsets and all(1 <= abs(o) <= 3 for o in offsets)


def test_subsampling_keeps_words_at_their_probability():
    keep = torch.tensor([0.0, 1.0, 0.25])
    packed = SentenceCollator()([np.array([1, 2] * 5000, dtype=np.int32)])
    torch.manual_seed(0)
    centers = training_rows(packed["token_ids"], packed["sentence_ids"], keep, window=1, sg=False)["center_ids"]
    kept_share = (centers == 2).sum().item() / 5000
    assert abs(kept_share - 0.25) < 5 * math.sqrt(0.25 * 0.75 / 5000)
    assert (centers == 1).sum().item() > 4900  # keep probability 1 (a lone kept word has no context: a few rows drop)


def test_vocabulary_tokenizer_round_trip_and_unknown_words(tmp_path, corpus_documents):
    tokenizer = train_word_level_tokenizer(corpus_documents[:50], min_count=3)
    vocab = tokenizer.get_vocab()
    assert vocab["[UNK]"] == UNK_TOKEN_ID and vocab["the"] == 1  # ids follow descending frequency
    ids = tokenizer("The zyzzyva, THE end!")["input_ids"]
    assert ids[0] == ids[2] == vocab["the"] and ids[1] == UNK_TOKEN_ID
    tokenizer.save_pretrained(tmp_path)
    restored = AutoTokenizer.from_pretrained(tmp_path)
    assert restored.get_vocab() == vocab and restored("The zyzzyva, THE end!")["input_ids"] == ids


def test_corpus_encoding_counts_words_like_the_reference_tokenisation(corpus_documents):
    docs = corpus_documents[:40]
    tokenizer = train_word_level_tokenizer(docs, min_count=1)
    corpus = encode_corpus(tokenizer, docs)
    paragraphs = [p for d in docs for p in split_sentences(d, "paragraph")]
    reference = [re.findall(r"[a-z]+(?:'[a-z]+)?", p.lower()) for p in paragraphs]
    assert corpus.num_raw_words == sum(map(len, reference)) == len(corpus.token_ids)
    assert corpus.num_sentences == sum(1 for words in reference if words)
    first = tokenizer.convert_ids_to_tokens(SentenceDataset(corpus)[0].tolist())
    assert first == next(words for words in reference if words)


def test_empty_or_tiny_corpus_gets_a_clear_error():
    with pytest.raises(ValueError, match="vocabulary is empty"):
        train_word_level_tokenizer(["", "   ", "123 456"], min_count=1)
    with pytest.raises(ValueError, match="min_count"):
        train_word_level_tokenizer(["a few words only"], min_count=5)
    tokenizer = word_level_tokenizer(["alone"])
    with pytest.raises(ValueError, match="too little text"):
        encode_corpus(tokenizer, ["alone", "nothing else here"])


def _small_model(vocabulary=("the", "cat", "sat", "mat", "dog")):
    model = Word2VecModel(Word2VecConfig(vocab_size=len(vocabulary) + 1, vector_size=8, sg=False, window=3))
    model.set_tokenizer(word_level_tokenizer(list(vocabulary)))
    model.set_word_counts([0] + [100 // (i + 1) for i in range(len(vocabulary))])
    return model


def test_save_load_round_trip_carries_the_vocabulary(tmp_path):
    model = _small_model()
    model.save_pretrained(tmp_path)
    for loader in (AutoModel.from_pretrained, Word2VecModel.from_pretrained):
        restored = loader(tmp_path)
        assert type(restored) is Word2VecModel and restored.config.sg is False and restored.config.window == 3
        assert restored.words == model.words
        for name, tensor in model.state_dict().items():
            assert torch.equal(restored.state_dict()[name], tensor), name
    assert AutoTokenizer.from_pretrained(tmp_path).get_vocab() == model.tokenizer.get_vocab()
    assert (tmp_path / "model.safetensors").exists() and not list(tmp_path.glob("*.bin"))


def test_a_vocabulary_of_another_size_is_refused():
    model = _small_model()
    with pytest.raises(ValueError, match="different vocabularies"):
        model.set_tokenizer(word_level_tokenizer(["only", "three", "words"]))


def test_keyed_vectors_and_word2vec_formats_round_trip(tmp_path):
    model = _small_model()
    keyed = model.to_keyed_vectors()
    assert keyed.index_to_key == model.words[1:]
    np.testing.assert_array_equal(keyed.vectors, model.word_vectors()[1:].numpy())
    assert keyed.get_vecattr("the", "count") == 100
    for binary, name in ((False, "vectors.txt"), (True, "vectors.bin")):
        model.save_word2vec_format(tmp_path / name, binary=binary)
        restored = Word2VecModel.from_word2vec_format(tmp_path / name, binary=binary)
        assert restored.words == model.words
        torch.testing.assert_close(restored.word_vectors(), model.word_vectors(), rtol=0, atol=0 if binary else 1e-6)
        assert restored.word_counts.sum() == 0  # the format has no counts


def test_a_trained_gensim_model_imports_with_its_output_vectors_and_settings(corpus_documents):
    from gensim.models import Word2Vec

    sentences = [re.findall(r"[a-z]+", p.lower()) for d in corpus_documents[:30] for p in d.split("\n\n")]
    trained = Word2Vec(sentences, vector_size=16, window=3, min_count=3, negative=4, sg=1, epochs=1, workers=1, seed=1)
    model = Word2VecModel.from_gensim(trained)
    assert model.words[1:] == trained.wv.index_to_key
    assert model.config.sg and model.config.window == 3 and model.config.negative == 4
    np.testing.assert_array_equal(model.word_vectors()[1:].numpy(), trained.wv.vectors)
    np.testing.assert_array_equal(model.output_embeddings.weight[1:].detach().numpy(), trained.syn1neg)
    assert model.word_counts[1].item() == trained.wv.get_vecattr(trained.wv.index_to_key[0], "count")
    assert model.most_similar("the", topn=3)["the"][0][0] == trained.wv.most_similar("the", topn=3)[0][0]
    # and training can go on from it
    loss = model(torch.tensor([1, 2]), torch.tensor([3, 4])).loss
    assert torch.isfinite(loss) and loss > 0


def test_word_vector_metrics_equal_gensims_evaluation(corpus_documents):
    from gensim.models import Word2Vec

    sentences = [re.findall(r"[a-z]+", p.lower()) for d in corpus_documents[:400] for p in d.split("\n\n")]
    keyed = Word2Vec(sentences, vector_size=20, min_count=3, epochs=1, workers=1, seed=1).wv
    ours = word_vector_metrics(keyed.index_to_key, torch.from_numpy(keyed.vectors))
    gensims = {}
    for name in ("wordsim353", "simlex999"):
        pearson, spearman, oov_percent = keyed.evaluate_word_pairs(
            gensim_test_file(f"{name}.tsv" if name == "wordsim353" else f"{name}.txt")
        )
        gensims[f"{name}_spearman"], gensims[f"{name}_oov_ratio"] = spearman.statistic, oov_percent / 100
    accuracy, sections = keyed.evaluate_word_analogies(gensim_test_file("questions-words.txt"))
    answered = sum(len(s["correct"]) + len(s["incorrect"]) for s in sections if s["section"] != "Total accuracy")
    gensims["analogy_accuracy"], gensims["analogy_oov_ratio"] = accuracy, 1 - answered / 19544
    # float32 similarities from torch and from gensim's BLAS may differ in the last bits and swap near-tied ranks:
    # the tolerances allow a few such swaps and no more (conftest.word_vector_figure_tolerances)
    tolerances = word_vector_figure_tolerances(gensims)
    for name, expected in gensims.items():
        assert ours[name] == pytest.approx(expected, abs=tolerances[name]), name


def test_trainer_refuses_settings_that_break_word2vecs_update(tmp_path):
    with pytest.raises(ValueError, match="per_device_train_batch_size"):
        Word2VecTrainingArguments(output_dir=str(tmp_path), gradient_accumulation_steps=2, use_cpu=True)
    arguments = Word2VecTrainingArguments(
        output_dir=str(tmp_path), sparse_gradients=True, use_cpu=True, report_to="none"
    )
    with pytest.raises(ValueError, match="autograd"):
        Word2VecTrainer(model=_small_model(), args=arguments)


def _recipe_arguments(shared_data, output, *extra):
    return [
        "--train_file",
        str(shared_data / "corpus" / "train.jsonl.gz"),
        "--output_dir",
        str(output),
        "--logging_steps",
        "10",
        *COMMON,
        *extra,
    ]


def test_training_on_the_corpus_beats_random_vectors(tmp_path, shared_data):
    require_full_data("corpus", "its margins and OOV ratio were measured on all 1,767 documents")
    output = tmp_path / "cbow"
    metrics = pretrain_word2vec.main(
        _recipe_arguments(shared_data, output, "--sg", "0", "--num_train_epochs", "2", "--save_strategy", "no")
    )
    trained = Word2VecModel.from_pretrained(output)
    random_vectors = Word2VecModel(trained.config)  # the same vocabulary at word2vec's initialisation
    random_vectors.set_tokenizer(trained.tokenizer)
    random_metrics = model_word_vector_metrics(random_vectors)
    print("trained", metrics, "random", random_metrics)
    assert metrics["wordsim353_spearman"] > random_metrics["wordsim353_spearman"] + 0.1  # measured: 0.119 vs -0.076
    assert metrics["analogy_accuracy"] > random_metrics["analogy_accuracy"] + 0.01  # measured: 0.029 vs 0.0003
    assert metrics["wordsim353_oov_ratio"] == pytest.approx(0.2181, abs=1e-3)  # the reference tokenisation's coverage
    results = json.loads((output / "all_results.json").read_text())
    assert {"wordsim353_spearman", "simlex999_spearman", "analogy_accuracy", "words_per_second"} <= results.keys()
    assert "word2vec CBOW" in (output / "README.md").read_text()
    assert (output / "vectors.txt").read_text().startswith(f"{trained.config.vocab_size - 1} 100\n")
    assert json.loads((output / "most_similar.json").read_text())["king"]


@pytest.fixture
def restore_determinism():
    """--full_determinism switches torch's deterministic mode on for the whole process: switch it back."""
    environment = dict(os.environ)
    yield
    torch.use_deterministic_algorithms(False)
    os.environ.clear()
    os.environ.update(environment)


def test_resume_reproduces_the_uninterrupted_run(tmp_path, shared_data, restore_determinism):
    """Exact with --full_determinism (the CPU kernel's threads share gradients without locks, as
    gensim's share weights, so several threads are not bit-reproducible)."""
    arguments = [
        "--max_train_samples", "150", "--per_device_train_batch_size", "32", "--max_steps", "8", "--min_count", "2", "--full_determinism", "true"
    ]  # fmt: skip
    straight = tmp_path / "straight"
    pretrain_word2vec.main(_recipe_arguments(shared_data, straight, *arguments, "--save_strategy", "no"))
    interrupted = tmp_path / "interrupted"
    pretrain_word2vec.main(
        _recipe_arguments(shared_data, interrupted, *arguments, "--save_strategy", "steps", "--save_steps", "4")
    )
    resumed = tmp_path / "resumed"
    pretrain_word2vec.main(
        _recipe_arguments(
            shared_data,
            resumed,
            *arguments,
            "--save_strategy",
            "no",
            "--resume_from_checkpoint",
            str(interrupted / "checkpoint-4"),
        )
    )
    expected, actual = (
        Word2VecModel.from_pretrained(straight).state_dict(),
        Word2VecModel.from_pretrained(resumed).state_dict(),
    )
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name


# made in one `accelerate launch` with the other modules' 2-process runs (conftest.two_process_runs)
register_two_process_run(
    "word2vec",
    "pretrain_word2vec.py",
    lambda shared_data, output: _recipe_arguments(
        shared_data,
        output,
        "--max_train_samples",
        "120",
        "--min_count",
        "2",
        "--max_steps",
        "4",
        "--per_device_train_batch_size",
        "16",
        "--save_strategy",
        "no",
    ),  # fmt: skip
)


def test_two_process_accelerate_launch_of_the_recipe(two_process_runs):
    output = two_process_runs["word2vec"]
    state = json.loads((output / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    results = json.loads((output / "all_results.json").read_text())
    assert {"wordsim353_spearman", "simlex999_spearman", "analogy_accuracy"} <= results.keys()
    assert Word2VecModel.from_pretrained(output).words[:2] == ["[UNK]", "the"]


def test_analogies_treat_spellings_of_a_word_as_one_answer_as_gensim_does(tmp_path):
    from gensim.models import KeyedVectors

    from hfssl.evaluation.word_vectors import analogy_accuracy, read_analogies

    words = ["man", "woman", "king", "Queen", "queen", "King", "apple"]
    vectors = np.random.default_rng(0).normal(size=(len(words), 8)).astype(np.float32)
    vectors[3] = vectors[2] - vectors[0] + vectors[1]  # "Queen" is the nearest answer
    vectors[5] = vectors[3] * 1.01  # ... after "King", a spelling of a question word that must be skipped
    (tmp_path / "questions.txt").write_text(": royal\nman woman king queen\nMAN WOMAN KING QUEEN\n")
    ours = analogy_accuracy(words, torch.from_numpy(vectors), read_analogies(str(tmp_path / "questions.txt")))
    keyed = KeyedVectors(8)
    keyed.add_vectors(words, vectors)
    assert ours["accuracy"] == keyed.evaluate_word_analogies(str(tmp_path / "questions.txt"))[0] == 1.0


@pytest.mark.parametrize("implementation", ["autograd", "fused"])
def test_shared_negatives_equal_per_pair_rows_with_the_windows_negatives(implementation):
    """Skip-gram over windows whose pairs share the negatives == the per-pair loss with each
    window's negatives repeated for its pairs (value and gradients)."""
    generator = torch.Generator().manual_seed(0)
    win, wout = _weights(vocab=20, dim=6, seed=1)
    centers, contexts = (
        torch.randint(1, 20, (9,), generator=generator),
        torch.randint(1, 20, (9, 4), generator=generator),
    )
    mask = torch.rand(9, 4, generator=generator) < 0.6
    mask[:, 0] = True
    negatives = torch.randint(1, 20, (9, 3), generator=generator)
    negatives[0, 0] = centers[0]  # skipped, as per pair
    rows, slots = mask.nonzero(as_tuple=True)
    expected_loss, expected_gin, expected_gout = _hand_loss_and_grads(
        win,
        wout,
        centers[rows].tolist(),
        [[c] for c in contexts[rows, slots].tolist()],
        [[1]] * len(rows),
        negatives[rows].tolist(),
        True,
    )
    win.requires_grad_(True), wout.requires_grad_(True)
    if implementation == "autograd":
        loss = negative_sampling_loss(win, wout, centers, contexts, mask, negatives, shared_negatives=True)
    else:
        loss = fused_negative_sampling_loss(
            win, wout, centers, contexts, mask, negatives, chunk_size=4, shared_negatives=True
        )
    loss.backward()
    assert loss.item() == pytest.approx(expected_loss, rel=1e-12)
    torch.testing.assert_close(win.grad, expected_gin, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(wout.grad, expected_gout, rtol=1e-10, atol=1e-12)


def test_shared_negatives_model_trains_on_windows():
    model = Word2VecModel(Word2VecConfig(vocab_size=40, vector_size=8, sg=True, shared_negatives=True, window=2))
    model.set_word_counts(torch.arange(40))
    packed = SentenceCollator()([np.arange(1, 30, dtype=np.int32)])
    torch.manual_seed(0)
    rows = model.training_rows(packed["token_ids"], packed["sentence_ids"])
    assert rows["context_ids"].shape[1] == 4 and "context_mask" in rows
    loss = model(**rows).loss
    loss.backward()
    assert (
        torch.isfinite(loss) and model.output_embeddings.weight.grad.abs().sum() > 0
    )  # input grads are 0: outputs start at 0
    with pytest.raises(ValueError, match="skip-gram option"):
        Word2VecConfig(sg=False, shared_negatives=True)
