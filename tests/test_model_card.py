"""Model cards: one template for every method, with metrics tables and the run's pictures."""

import json
import re
import shutil

import pytest
import yaml
from conftest import tiny_resnet_config

import hfssl
from hfssl.tokenization import train_subword_tokenizer, word_level_tokenizer
from hfssl.training.model_card import (
    build_card,
    hub_datasets,
    method_paper,
    pictures_section,
    results_tables,
    training_table,
    write_language_model_card,
    write_model_card,
    write_word2vec_model_card,
)
from hfssl.training.plots import plot_training_curves

TRAINING = json.dumps({"optimizer": "adamw_torch", "learning_rate": 0.001, "seed": 0})
HISTORY = [{"loss": 2.0, "learning_rate": 1e-3, "step": 1}, {"loss": 1.5, "learning_rate": 5e-4, "step": 2}]
TEXTS = [
    "The cat sat on the mat. The dog sat on the log.",
    "A bird flew over the house. The cat watched the bird.",
    "Dogs and cats are animals. Birds are animals too.",
] * 5


@pytest.fixture(scope="module")
def simclr():
    config = hfssl.SimCLRConfig(backbone_config=tiny_resnet_config(), projection_hidden_dim=8, projection_dim=4)
    return hfssl.SimCLRModel(config)


@pytest.fixture(scope="module")
def wordpiece():
    return train_subword_tokenizer(TEXTS, "wordpiece", "bert", vocab_size=150, min_frequency=1)


def _front_matter(card: str) -> dict:
    header = re.match(r"---\n(.*?)\n---\n", card, re.DOTALL)
    assert header, "the card must start with YAML front matter"
    return yaml.safe_load(header.group(1))


def _section_titles(card: str) -> list[str]:
    return re.findall(r"^## (.+)$", card, re.MULTILINE)


def _linked_images(card: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", card)


def test_vision_card_has_metrics_and_only_the_pictures_that_exist(tmp_path, simclr):
    output = tmp_path / "simclr-run"
    plot_training_curves(HISTORY, output / "training_curves.png")
    metrics = {"knn_accuracy": 0.8125, "linear_probe_accuracy": 0.84, "eval_runtime": 2.5}
    card = write_model_card(
        str(output), simclr, "simclr", "Hub dataset uoft-cs/cifar10 (100 train / 20 eval)", TRAINING, metrics
    )
    assert (output / "README.md").read_text() == card
    front = _front_matter(card)
    assert front["library_name"] == "transformers"
    assert {"hfssl", "self-supervised-learning", "simclr", "resnet"} <= set(front["tags"])
    assert front["datasets"] == ["uoft-cs/cifar10"]
    assert "\n---\n\n# simclr-run\n\nA resnet backbone pretrained with **SimCLR** using hfssl." in card
    assert _section_titles(card) == ["Method", "Data", "Training", "Results", "Pictures", "Use"]
    assert "**SimCLR**" in card and "https://arxiv.org/abs/2002.05709" in card
    assert "| knn_accuracy | 0.8125 |" in card and "| linear_probe_accuracy | 0.8400 |" in card
    assert "| eval_runtime | 2.5000 |" in card.split("### Run")[1]  # the run's cost has its own table
    assert "| optimizer | adamw_torch |" in card and "| learning_rate | 0.001 |" in card
    assert _linked_images(card) == ["training_curves.png"]  # no link to the embedding map that was never drawn
    assert 'AutoModel.from_pretrained("simclr-run", subfolder="backbone")' in card


def test_every_png_in_the_output_directory_is_embedded_with_a_caption(tmp_path, simclr):
    plot_training_curves(HISTORY, tmp_path / "training_curves.png")
    for name in ("reconstructions.png", "embedding_map.png", "attention maps.png"):
        shutil.copy(tmp_path / "training_curves.png", tmp_path / name)
    (tmp_path / "notes.txt").write_text("not a picture")
    card = write_model_card(
        str(tmp_path), simclr, "simclr", "imagefolder data", "adamw", {}, repo_id="me/simclr", write=False
    )
    assert not (tmp_path / "README.md").exists()  # write=False only returns the text
    links = _linked_images(card)
    assert links == ["training_curves.png", "embedding_map.png", "reconstructions.png", "attention%20maps.png"]
    assert all("/" not in link for link in links)  # relative to the card, as the Hub resolves them
    pictures = card.split("## Pictures")[1].split("## Use")[0]
    captions = re.findall(r"^\*(.+)\*$", pictures, re.MULTILINE)
    assert len(captions) == 4 and captions[-1] == "Attention maps."
    assert "datasets" not in _front_matter(card)  # local data names no Hub dataset
    assert "No evaluation was run." in card and 'AutoModel.from_pretrained("me/simclr")' in card
    assert "adamw" in card.split("## Training")[1]


@pytest.mark.parametrize("method", ["bert", "gpt"])
def test_language_model_card(tmp_path, wordpiece, method):
    if method == "bert":
        backbone = dict(model_type="bert", hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, vocab_size=len(wordpiece), max_position_embeddings=32)  # fmt: skip
        model = hfssl.BertPretrainingModel(hfssl.BertPretrainingConfig(backbone_config=backbone))
        objective, paper, auto_class = "masked language modelling and next-sentence prediction", "Devlin et al. 2019", "AutoModelForPreTraining"  # fmt: skip
        metrics = {"eval_loss": 6.25, "eval_mlm_accuracy": 0.0712, "eval_nsp_accuracy": 0.61}
    else:
        backbone = dict(model_type="gpt2", n_layer=1, n_embd=16, n_head=2, n_positions=32, vocab_size=len(wordpiece))
        model = hfssl.GPTModel(hfssl.GPTConfig(backbone_config=backbone))
        objective, paper, auto_class = "causal language modelling", "Radford et al. 2018/2019", "AutoModelForCausalLM"
        metrics = {"eval_loss": 5.9, "perplexity": 365.04}
    plot_training_curves(HISTORY, tmp_path / "training_curves.png")
    card = write_language_model_card(
        str(tmp_path), model, method, objective, paper, "file corpus.jsonl", wordpiece, TRAINING, metrics
    )
    assert (tmp_path / "README.md").read_text() == card
    assert {"hfssl", method, backbone["model_type"]} <= set(_front_matter(card)["tags"])
    assert f"pretrained with **{objective}**" in card and paper in card
    assert f"WordPiece, {len(wordpiece):,} tokens" in card
    for key, value in metrics.items():
        assert f"| {key} | {value:.4f} |" in card
    assert _linked_images(card) == ["training_curves.png"]
    assert f'{auto_class}.from_pretrained("{tmp_path.name}", subfolder="backbone")' in card
    assert _section_titles(card) == ["Method", "Data", "Training", "Results", "Pictures", "Use"]


def test_language_card_without_pictures_has_no_pictures_section(tmp_path, wordpiece):
    backbone = dict(model_type="gpt2", n_layer=1, n_embd=16, n_head=2, n_positions=32, vocab_size=len(wordpiece))
    model = hfssl.GPTModel(hfssl.GPTConfig(backbone_config=backbone))
    card = write_language_model_card(
        str(tmp_path), model, "gpt", "causal language modelling", "Radford et al. 2018/2019",
        "Hub dataset wikitext (wikitext-2-raw-v1) (300 train / 30 eval)", wordpiece, TRAINING, {"eval_loss": 5.9},
    )  # fmt: skip
    assert "Pictures" not in _section_titles(card) and _linked_images(card) == []
    assert _front_matter(card)["datasets"] == ["wikitext"]


@pytest.mark.parametrize("sg, mode", [(0, "CBOW"), (1, "skip-gram")])
def test_word2vec_card(tmp_path, sg, mode):
    words = ["the", "cat", "sat", "on", "mat"]
    model = hfssl.Word2VecModel(hfssl.Word2VecConfig(vocab_size=len(words) + 1, vector_size=4, sg=sg, min_count=1))
    model.set_tokenizer(word_level_tokenizer(words))
    plot_training_curves(HISTORY, tmp_path / "training_curves.png")
    metrics = {"wordsim353_spearman": 0.1191, "analogy_accuracy": 0.029, "words_per_second": 51234.5}
    card = write_word2vec_model_card(str(tmp_path), model, "file corpus.jsonl", TRAINING, metrics)
    assert (tmp_path / "README.md").read_text() == card
    assert f"word2vec {mode}" in card and "https://arxiv.org/abs/1310.4546" in card
    assert "**Vocabulary:** 5 words (`min_count=1`)" in card and "vector_size 4" in card
    assert "| wordsim353_spearman | 0.1191 |" in card and "| analogy_accuracy | 0.0290 |" in card
    assert "| words_per_second | 51234.5000 |" in card.split("### Run")[1]
    assert _linked_images(card) == ["training_curves.png"]
    assert {"hfssl", "word2vec", "word-embeddings"} <= set(_front_matter(card)["tags"])


def test_build_card_lays_out_the_sections_in_order(tmp_path):
    card = build_card(
        name="me/model",
        tags=["self-supervised-learning", "hfssl"],
        intro="An intro.",
        method="What the method does.",
        details=["**Model:** tiny"],
        data="some data",
        training="plain text settings",
        results={"Linear probe": {"accuracy": 0.5}, "kNN": {"accuracy": 0.25}},
        usage="```python\nload()\n```",
        datasets=["a/b", "a/b"],
        output_dir=tmp_path / "missing",
    )
    assert _front_matter(card) == {"library_name": "transformers", "tags": ["hfssl", "self-supervised-learning"], "datasets": ["a/b"]}  # fmt: skip
    assert _section_titles(card) == ["Method", "Data", "Training", "Results", "Use"]
    assert "What the method does.\n\n- **Model:** tiny" in card
    assert card.index("### Linear probe") < card.index("| accuracy | 0.5000 |") < card.index("### kNN")
    assert "## Training\n\nplain text settings" in card and card.endswith("load()\n```\n")


def test_helpers():
    assert training_table('{"optimizer": "sgd"}') == "| setting | value |\n|---|---|\n| optimizer | sgd |"
    assert training_table("LARS, lr 0.3") == "LARS, lr 0.3"
    assert training_table('{"optimizer": "a|b"}').endswith("| optimizer | a\\|b |")  # a pipe cannot split the cell
    assert results_tables({}) == "No evaluation was run."
    assert "###" not in results_tables({"knn_accuracy": 0.5})  # one group, no headings
    assert hub_datasets("Hub dataset uoft-cs/cifar10 (config) (10 train / 2 eval)") == ["uoft-cs/cifar10"]
    assert hub_datasets("local dataset /data/x (10 train, no eval)") == []
    assert pictures_section("/nonexistent/folder") == ""

    class NewMethodConfig:
        """Configuration of a method hfssl's paper list does not know.

        Smith et al. 2031, "A Method From the Future".
        """

    paper = method_paper("new_method", NewMethodConfig)
    assert (paper.citation, paper.title, paper.url) == ("Smith et al. 2031", "A Method From the Future", None)
    assert method_paper("simclr", hfssl.SimCLRConfig).url == "https://arxiv.org/abs/2002.05709"
