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
        pytest.fail(f"The shared data folder is missing at {SHARED_DATA}; tests need ../shared/data beside the checkout.")
    return SHARED_DATA


def tiny_vit_config(image_size: int = 16, num_channels: int = 3) -> dict:
    return dict(
        model_type="vit", hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        image_size=image_size, patch_size=4, num_channels=num_channels,
    )


def tiny_resnet_config(num_channels: int = 3) -> dict:
    return dict(model_type="resnet", embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic", num_channels=num_channels)


def tiny_convnext_config(num_channels: int = 3) -> dict:
    return dict(model_type="convnext", hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, num_channels=num_channels)


@pytest.fixture(scope="session")
def corpus_documents(shared_data) -> list[str]:
    """The shared corpus' training documents (1,767 texts, paragraphs separated by blank lines)."""
    import gzip
    import json

    with gzip.open(shared_data / "corpus" / "train.jsonl.gz", "rt") as handle:
        return [json.loads(line)["text"] for line in handle]
