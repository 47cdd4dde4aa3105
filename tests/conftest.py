import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pathlib  # noqa: E402

import pytest  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(
            f"The shared data folder is missing at {SHARED_DATA}; tests need ../shared/data beside the checkout."
        )
    return SHARED_DATA


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
    """The shared corpus' training documents (1,767 texts, paragraphs separated by blank lines)."""
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
