"""recipes/evaluate_word2vec.py: the same figures from an hfssl checkpoint, a word2vec file and a
gensim model, equal to gensim's own evaluation; one source exactly."""

import gzip
import json
import re
import sys

import pytest
from conftest import REPO_ROOT, word_vector_figure_tolerances

from hfssl import Word2VecModel
from hfssl.evaluation.word_vectors import gensim_test_file

sys.path.insert(0, str(REPO_ROOT / "recipes"))
import evaluate_word2vec  # noqa: E402

SIMILARITY_FILES = {"wordsim353": "wordsim353.tsv", "simlex999": "simlex999.txt"}
METRICS = (
    "wordsim353_spearman",
    "wordsim353_oov_ratio",
    "simlex999_spearman",
    "simlex999_oov_ratio",
    "analogy_accuracy",
    "analogy_oov_ratio",
)
QUERIES = "city,king,zzzunknownword,war"


def gensim_metrics(keyed, restrict_vocab=300_000) -> dict[str, float]:
    """The six figures as gensim's KeyedVectors computes them."""
    metrics = {}
    for name, filename in SIMILARITY_FILES.items():
        _, spearman, oov_percent = keyed.evaluate_word_pairs(gensim_test_file(filename), restrict_vocab=restrict_vocab)
        metrics[f"{name}_spearman"], metrics[f"{name}_oov_ratio"] = spearman.statistic, oov_percent / 100
    accuracy, sections = keyed.evaluate_word_analogies(
        gensim_test_file("questions-words.txt"), restrict_vocab=restrict_vocab
    )
    answered = sum(len(s["correct"]) + len(s["incorrect"]) for s in sections if s["section"] != "Total accuracy")
    metrics["analogy_accuracy"], metrics["analogy_oov_ratio"] = accuracy, 1 - answered / 19544
    return metrics


@pytest.fixture(scope="module")
def sources(shared_data, tmp_path_factory):
    """One gensim model (300 documents, 3 epochs, 20 dimensions) saved as the three sources."""
    from gensim.models import Word2Vec

    with gzip.open(shared_data / "corpus" / "train.jsonl.gz", "rt") as handle:
        documents = [json.loads(line)["text"] for line, _ in zip(handle, range(300))]
    sentences = [words for d in documents for p in d.split("\n\n") if (words := re.findall(r"[a-z]+", p.lower()))]
    trained = Word2Vec(sentences, vector_size=20, window=5, min_count=3, epochs=3, workers=1, seed=1)
    folder = tmp_path_factory.mktemp("word_vectors")
    trained.save(str(folder / "gensim.model"))
    model = Word2VecModel.from_gensim(trained)
    model.save_pretrained(folder / "checkpoint")
    model.save_word2vec_format(folder / "vectors.txt")
    model.save_word2vec_format(folder / "vectors.bin", binary=True)
    return {
        "keyed": trained.wv,
        "expected": gensim_metrics(trained.wv),
        "checkpoint": ["--model_name_or_path", str(folder / "checkpoint")],
        "text": ["--word2vec_file", str(folder / "vectors.txt")],
        "binary": ["--word2vec_file", str(folder / "vectors.bin"), "--binary"],
        "gensim": ["--gensim_model", str(folder / "gensim.model")],
    }


@pytest.mark.parametrize("source", ["checkpoint", "text", "binary", "gensim"])
def test_every_source_gives_gensims_figures(source, sources, tmp_path, capsys):
    metrics = evaluate_word2vec.main(
        [*sources[source], "--output_dir", str(tmp_path), "--most_similar_words", QUERIES, "--topn", "5"]
    )
    expected = sources["expected"]
    assert set(metrics) == set(METRICS)
    tolerances = word_vector_figure_tolerances(expected)  # float32 from another BLAS: a few near-tied ranks may swap
    for name in METRICS:
        assert metrics[name] == pytest.approx(expected[name], abs=tolerances[name]), name
    assert expected["analogy_accuracy"] > 0 and expected["wordsim353_oov_ratio"] < 1  # something was actually scored
    results = json.loads((tmp_path / "all_results.json").read_text())
    assert {name: results[name] for name in METRICS} == metrics
    neighbours = json.loads((tmp_path / "most_similar.json").read_text())
    assert list(neighbours) == ["city", "king", "war"]  # the unknown word is left out
    keyed = sources["keyed"]
    for word, near in neighbours.items():
        assert len(near) == 5 and word not in [w for w, _ in near]
        assert [s for _, s in near] == pytest.approx([s for _, s in keyed.most_similar(word, topn=5)], abs=1e-5)
        assert [s for _, s in near] == pytest.approx([keyed.similarity(word, w) for w, _ in near], abs=1e-5)
    assert "WordSim-353 Spearman" in capsys.readouterr().out


def test_restrict_vocab_is_gensims(sources, tmp_path):
    metrics = evaluate_word2vec.main([*sources["gensim"], "--output_dir", str(tmp_path), "--restrict_vocab", "1500"])
    expected = gensim_metrics(sources["keyed"], restrict_vocab=1500)
    assert expected["wordsim353_oov_ratio"] > sources["expected"]["wordsim353_oov_ratio"]  # the restriction bites
    tolerances = word_vector_figure_tolerances(expected)
    for name in METRICS:
        assert metrics[name] == pytest.approx(expected[name], abs=tolerances[name]), name


def test_zero_or_two_sources_is_an_error(sources, tmp_path):
    with pytest.raises(ValueError, match="exactly one source.*none was given"):
        evaluate_word2vec.main(["--output_dir", str(tmp_path)])
    with pytest.raises(ValueError, match="exactly one source.*--model_name_or_path and --gensim_model"):
        evaluate_word2vec.main([*sources["checkpoint"], *sources["gensim"], "--output_dir", str(tmp_path)])
    with pytest.raises(ValueError, match="--binary"):
        evaluate_word2vec.main([*sources["gensim"], "--binary", "--output_dir", str(tmp_path)])
    assert not (tmp_path / "all_results.json").exists()


def test_a_checkpoint_of_another_model_is_refused(tmp_path):
    from transformers import BertConfig

    BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8).save_pretrained(
        tmp_path / "bert"
    )
    with pytest.raises(ValueError, match="'bert' checkpoint, not an hfssl word2vec one"):
        evaluate_word2vec.main(["--model_name_or_path", str(tmp_path / "bert"), "--output_dir", str(tmp_path / "out")])
