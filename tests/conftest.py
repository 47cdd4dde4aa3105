import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pathlib  # noqa: E402

import pytest  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
# The full data sets (../shared/data/README.md lists them): HFSSL_DATA_DIR, by default ../shared/data beside the checkout.
DATA_DIR = pathlib.Path(os.environ.get("HFSSL_DATA_DIR") or REPO_ROOT.parent / "shared" / "data")
SHARED_DATA = DATA_DIR  # the name older tests import
# Small cuts of the same sets, kept in the repository (tests/fixtures/README.md): what a clone without the data runs on.
FIXTURES = REPO_ROOT / "tests" / "fixtures"
DATA_SETS = ("fashion-mnist", "corpus", "wordnet-supersenses", "emoji-captions")


def has_full_data(name: str) -> bool:
    """Whether the full set ``name`` is in HFSSL_DATA_DIR (else the tests read its fixture)."""
    return (DATA_DIR / name).is_dir()


def data_path(name: str) -> pathlib.Path:
    """The folder of set ``name``: the full set when HFSSL_DATA_DIR holds it, else its in-repo fixture."""
    return DATA_DIR / name if has_full_data(name) else FIXTURES / name


def require_full_data(name: str, why: str) -> pathlib.Path:
    """The full set ``name``, or a skip saying why the fixture cannot stand in for it."""
    if not has_full_data(name):
        pytest.skip(f"needs the full {name} set ({why}): set HFSSL_DATA_DIR to a folder holding {name}/")
    return DATA_DIR / name


@pytest.fixture(scope="session")
def shared_data(tmp_path_factory) -> pathlib.Path:
    """A folder with the shared data layout (``corpus/train.jsonl.gz``, ``fashion-mnist/...``): HFSSL_DATA_DIR
    when it holds every set, else one whose sets are the full ones where present and the fixtures otherwise."""
    if all(has_full_data(name) for name in DATA_SETS):
        return DATA_DIR
    if not any(has_full_data(name) for name in DATA_SETS):
        return FIXTURES
    folder = tmp_path_factory.mktemp("data")
    for name in DATA_SETS:
        (folder / name).symlink_to(data_path(name), target_is_directory=True)
    return folder


def word_vector_figure_tolerances(figures: dict[str, float]) -> dict[str, float]:
    """How far the six word-vector figures (``wordsim353_spearman``, ``simlex999_spearman``, ``analogy_accuracy`` and
    their ``_oov_ratio``) computed by another code path from the same float32 vectors may be from ``figures``.

    Cosine similarities computed by torch (MKL) and by gensim (numpy's OpenBLAS) differ in their last bit or two, and
    so do those of OpenBLAS' own kernels (``OPENBLAS_CORETYPE=Haswell`` against another) and thread counts. Two pairs
    whose float32 similarities are that close can swap ranks: measured, one swap moved SimLex-999's Spearman by
    4.4e-6. One swap of adjacent ranks among n pairs changes the sum of squared rank differences by at most
    2(n - 1), so Spearman by at most 12 / (n (n + 1)); three such swaps are allowed. An analogy whose two best
    answers are that close can go either way: one question is allowed. The out-of-vocabulary ratios are counts:
    exact.
    """
    from hfssl.evaluation.word_vectors import gensim_test_file, read_word_pairs

    tolerances = {}
    for name, filename in (("wordsim353", "wordsim353.tsv"), ("simlex999", "simlex999.txt")):
        scored = round(len(read_word_pairs(gensim_test_file(filename))) * (1 - figures[f"{name}_oov_ratio"]))
        tolerances[f"{name}_spearman"] = 3 * 12 / (scored * (scored + 1))
        tolerances[f"{name}_oov_ratio"] = 1e-12
    answered = round(19544 * (1 - figures["analogy_oov_ratio"]))  # questions-words.txt holds 19,544 analogies
    tolerances["analogy_accuracy"] = 1 / answered + 1e-12
    tolerances["analogy_oov_ratio"] = 1e-12
    return tolerances


def tiny_vit_config(image_size: int = 16, num_channels: int = 3) -> dict:
    return dict(
        model_type="vit",
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=image_size,
        patch_size=4,
        num_channels=num_channels,
    )


def tiny_resnet_config(num_channels: int = 3) -> dict:
    return dict(
        model_type="resnet",
        embedding_size=8,
        hidden_sizes=[8, 16],
        depths=[1, 1],
        layer_type="basic",
        num_channels=num_channels,
    )


def tiny_convnext_config(num_channels: int = 3) -> dict:
    return dict(model_type="convnext", hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, num_channels=num_channels)


@pytest.fixture(scope="session")
def corpus_documents(shared_data) -> list[str]:
    """The corpus' training documents (1,767 texts, or the fixture's 201; paragraphs separated by blank lines)."""
    import gzip
    import json

    with gzip.open(shared_data / "corpus" / "train.jsonl.gz", "rt") as handle:
        return [json.loads(line)["text"] for line in handle]


def launch_two_processes(recipe: str, arguments: list[str], cwd: pathlib.Path, timeout: int = 300):
    """``accelerate launch`` of ``recipes/<recipe>`` on 2 CPU processes (gloo, one thread each);
    returns the finished ``subprocess.CompletedProcess``, having asserted a zero exit code."""
    import subprocess
    import sys

    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(REPO_ROOT / "accelerate_config.yaml"),
        "--num_processes", "2", str(REPO_ROOT / "recipes" / recipe), *arguments,
    ]  # fmt: skip
    result = subprocess.run(
        command, capture_output=True, text=True, cwd=cwd, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=timeout
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def assert_backbones_load_without_hfssl(backbones: dict, tmp_path: pathlib.Path, weight: str, class_name: str):
    """Each exported folder ``tmp_path / name`` of ``backbones`` (name -> the module it was exported from) loads
    with plain transformers ``AutoModel`` in a fresh process that never imports hfssl, as a ``class_name``,
    with its ``weight`` tensor equal to the module's (the expected values travel as safetensors)."""
    import subprocess
    import sys

    from safetensors.torch import save_file

    expected = tmp_path / "expected_backbone_weights.safetensors"
    save_file({name: module.state_dict()[weight].contiguous() for name, module in backbones.items()}, expected)
    script = f"""
import sys, torch
from safetensors.torch import load_file
from transformers import AutoModel
expected = load_file(r"{expected}")
for folder, value in expected.items():
    model = AutoModel.from_pretrained(r"{tmp_path}" + "/" + folder)
    assert type(model).__name__ == "{class_name}", type(model)
    assert torch.equal(model.state_dict()["{weight}"], value), folder
assert "hfssl" not in sys.modules
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-3000:]
