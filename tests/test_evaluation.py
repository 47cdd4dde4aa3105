"""Tests of hfssl.evaluation: metric modules, feature extraction, kNN, linear probe and fine-tuning."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import math  # noqa: E402

import datasets  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from transformers import TrainingArguments  # noqa: E402

from hfssl.evaluation import (  # noqa: E402
    ImageClassifier,
    compute_accuracy,
    extract_features,
    finetune_classifier,
    knn_accuracy,
    knn_predict,
    linear_probe_accuracy,
    load_metric,
)


def to_float(pixel_values: torch.Tensor) -> torch.Tensor:
    return pixel_values.float() / 255


def collate(rows: list[dict]) -> dict:
    """Rows with "image" (H, W) arrays or PIL images -> {"pixel_values": uint8 (B, 1, H, W), "labels": int64 (B,)}."""
    # datasets' numpy format returns integer arrays as int64 whatever their stored type.
    images = torch.from_numpy(np.stack([np.asarray(row["image"], dtype=np.uint8) for row in rows]))
    return {"pixel_values": images[:, None], "labels": torch.tensor([row["label"] for row in rows], dtype=torch.long)}


def image_dataset(images: np.ndarray, labels: np.ndarray) -> datasets.Dataset:
    """A datasets.Dataset with "image" uint8 (H, W) and "label" columns, read back as numpy arrays."""
    features = datasets.Features(
        {"image": datasets.Array2D(images.shape[1:], "uint8"), "label": datasets.Value("int64")}
    )
    return datasets.Dataset.from_dict({"image": images, "label": labels}, features=features).with_format("numpy")


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from intra-op threads, and on shared 2-core machines they can be 10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits():
    """load_digits as uint8 8x8 images in 0..255, split 75/25 stratified: (train_x, test_x, train_y, test_y)."""
    data = load_digits()
    images = np.round(data.images * 255 / 16).astype(np.uint8)
    return train_test_split(images, data.target, test_size=0.25, stratify=data.target, random_state=0)


def flat_features(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images.reshape(len(images), -1)).float()


# --- metric modules ---------------------------------------------------------------------------------------------


def test_accuracy_metric_loads_offline_and_matches_numpy():
    rng = np.random.default_rng(0)
    predictions, references = rng.integers(0, 5, 500), rng.integers(0, 5, 500)
    expected = np.mean(predictions == references)
    assert load_metric("accuracy").compute(predictions=predictions, references=references)["accuracy"] == expected
    assert compute_accuracy(torch.from_numpy(predictions), list(references)) == expected
    assert compute_accuracy([1, 2, 3], [1, 2, 0]) == pytest.approx(2 / 3)


def test_unknown_metric_lists_available_ones():
    with pytest.raises(ValueError, match=r"'no-such-metric'.*available metrics: .*accuracy"):
        load_metric("no-such-metric")


# --- kNN --------------------------------------------------------------------------------------------------------


def reference_knn(train, train_labels, queries, num_classes, k, temperature):
    """Weighted kNN written plainly: per query, sort by cosine similarity, weighted vote of the top k."""
    train = train / np.linalg.norm(train, axis=1, keepdims=True)
    predictions = []
    for query in queries:
        similarities = train @ (query / np.linalg.norm(query))
        votes = np.zeros(num_classes)
        for index in np.argsort(-similarities)[:k]:
            votes[train_labels[index]] += math.exp(similarities[index] / temperature)
        predictions.append(int(np.argmax(votes)))
    return np.array(predictions)


@pytest.mark.parametrize("k, temperature", [(1, 0.1), (10, 0.1), (25, 0.05), (50, 1.0), (1000, 0.5)])
def test_knn_predict_matches_brute_force(k, temperature):
    generator = torch.Generator().manual_seed(k)
    train = torch.randn(300, 16, generator=generator, dtype=torch.float64)
    train_labels = torch.randint(0, 4, (300,), generator=generator)
    queries = torch.randn(120, 16, generator=generator, dtype=torch.float64)
    predictions = knn_predict(train, train_labels, queries, num_classes=4, k=k, temperature=temperature)
    assert predictions.dtype == torch.int64 and predictions.shape == (120,)
    expected = reference_knn(train.numpy(), train_labels.numpy(), queries.numpy(), 4, k, temperature)
    np.testing.assert_array_equal(predictions.numpy(), expected)


def test_knn_predict_chunking_gives_identical_results():
    generator = torch.Generator().manual_seed(1)
    train, queries = torch.randn(500, 32, generator=generator), torch.randn(203, 32, generator=generator)
    train_labels = torch.randint(0, 7, (500,), generator=generator)
    full = knn_predict(train, train_labels, queries, num_classes=7, k=20, chunk_size=1024)
    for chunk_size in (1, 10, 64, 203):
        chunked = knn_predict(train, train_labels, queries, num_classes=7, k=20, chunk_size=chunk_size)
        assert torch.equal(chunked, full)


def test_knn_predict_hand_computed_temperature_decides_the_vote():
    # One class-1 neighbour at cosine similarity 1 against two class-0 neighbours at cosine similarity 0.5.
    # Class 1 scores exp(1 / t), class 0 scores 2 exp(0.5 / t): class 1 wins iff t < 0.5 / ln 2 = 0.72.
    # t = 1: e = 2.72 < 2 e^0.5 = 3.30, the 2-vs-1 majority wins; t = 0.5: e^2 = 7.39 > 2 e = 5.44, it loses.
    train = torch.tensor([[1.0, 0.0], [0.5, math.sqrt(3) / 2], [0.5, -math.sqrt(3) / 2]]) * 3  # norms are ignored
    train_labels = torch.tensor([1, 0, 0])
    query = torch.tensor([[2.0, 0.0]])
    assert knn_predict(train, train_labels, query, num_classes=2, k=3, temperature=1.0).tolist() == [0]
    assert knn_predict(train, train_labels, query, num_classes=2, k=3, temperature=0.5).tolist() == [1]
    assert knn_predict(train, train_labels, query, num_classes=2, k=1, temperature=1.0).tolist() == [1]
    assert knn_predict(train, train_labels, query, num_classes=2, k=3, temperature=1e-3).tolist() == [1]  # no overflow


def test_knn_rejects_non_positive_k():
    with pytest.raises(ValueError, match="k must be at least 1"):
        knn_predict(torch.randn(3, 2), torch.zeros(3, dtype=torch.long), torch.randn(1, 2), num_classes=1, k=0)


# --- kNN and linear probe on real data ----------------------------------------------------------------------------


def test_knn_and_linear_probe_on_digits_pixels(digits):
    train_x, test_x, train_y, test_y = digits
    train_features, test_features = flat_features(train_x), flat_features(test_x)
    train_labels, test_labels = torch.from_numpy(train_y), torch.from_numpy(test_y)
    # Measured: kNN 0.942 with k=200 (15% of the 1347 training digits), 0.982 with k=5; linear probe 0.971 (C=0.1
    # chosen), 0.969 with C=1. Chance is 0.1.
    assert knn_accuracy(train_features, train_labels, test_features, test_labels) > 0.9
    assert knn_accuracy(train_features, train_labels, test_features, test_labels, k=5) > 0.95
    result = linear_probe_accuracy(train_features, train_labels, test_features, test_labels)
    assert result["linear_probe_accuracy"] > 0.94
    assert result["linear_probe_C"] in (0.1, 1.0, 10.0)
    flat_train, flat_test = train_x.reshape(len(train_x), -1), test_x.reshape(len(test_x), -1)  # numpy inputs
    single = linear_probe_accuracy(flat_train, train_y, flat_test, test_y, C=1.0)
    assert single["linear_probe_C"] == 1.0 and single["linear_probe_accuracy"] > 0.94


def test_linear_probe_with_a_class_too_rare_to_stratify_uses_the_middle_C(digits, caplog):
    # 90 training digits: 10% is 9 held-out rows for 10 classes, so a stratified share cannot exist
    # (sklearn raised, and with it the end of a pretraining run); the probe still fits and scores.
    train_x, test_x, train_y, test_y = digits
    few_x, few_y = flat_features(train_x[:90]), train_y[:90]
    with caplog.at_level("WARNING", logger="hfssl.evaluation.linear_probe"):
        result = linear_probe_accuracy(few_x, few_y, flat_features(test_x), test_y, C=(0.1, 1.0, 10.0))
    assert result["linear_probe_C"] == 1.0 and "too few train rows" in caplog.text
    assert result["linear_probe_accuracy"] > 0.7  # 90 digits still teach a linear classifier (chance 0.1)


def test_knn_and_linear_probe_on_random_labels_are_near_chance(digits):
    train_x, test_x, _, _ = digits
    rng = np.random.default_rng(0)
    # Test labels independent of everything the classifiers see make each test prediction right with probability
    # 0.1: accuracy over 450 test digits has standard deviation 0.014. (Permuting only the training labels would
    # not: a class whose training digits mostly keep their own label is then right for all its test digits.)
    train_y, test_y = rng.integers(0, 10, len(train_x)), rng.integers(0, 10, len(test_x))
    train_features, test_features = flat_features(train_x), flat_features(test_x)
    knn = knn_accuracy(train_features, torch.from_numpy(train_y), test_features, torch.from_numpy(test_y))
    probe = linear_probe_accuracy(train_features, train_y, test_features, test_y)["linear_probe_accuracy"]
    assert knn < 0.17 and probe < 0.17


# --- feature extraction -------------------------------------------------------------------------------------------


class MeanEncoder(nn.Module):
    """(B, C, H, W) -> (B, 2, 1, 1): [mean pixel, 2 * mean pixel] times a parameter equal to 1, in float64."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, pixel_values):
        mean = pixel_values.mean(dim=(1, 2, 3), dtype=torch.float64) * self.scale
        return torch.stack([mean, 2 * mean], dim=1)[:, :, None, None]


def indexed_dataset(num_samples: int) -> datasets.Dataset:
    """Images whose every pixel equals their index; labels are index % 3."""
    images = np.broadcast_to(np.arange(num_samples, dtype=np.uint8)[:, None, None], (num_samples, 4, 4)).copy()
    return image_dataset(images, np.arange(num_samples) % 3)


def test_extract_features_shapes_order_and_labels():
    encoder = MeanEncoder().train()
    loader = DataLoader(indexed_dataset(10), batch_size=4, collate_fn=collate)
    features, labels = extract_features(encoder, loader, preprocess=lambda x: x.double())
    expected = torch.arange(10, dtype=torch.float32)
    assert features.dtype == torch.float32 and features.shape == (10, 2) and features.device.type == "cpu"
    torch.testing.assert_close(features, torch.stack([expected, 2 * expected], dim=1))
    assert labels.dtype == torch.int64 and labels.tolist() == [i % 3 for i in range(10)]
    assert encoder.training  # the eval-mode switch is undone


def test_extract_features_with_a_plain_function():
    loader = DataLoader(indexed_dataset(5), batch_size=2, collate_fn=collate)
    features, labels = extract_features(lambda x: x.flatten(1), loader, preprocess=to_float)
    assert features.shape == (5, 16) and labels.shape == (5,)
    torch.testing.assert_close(features[:, 0], torch.arange(5) / 255)


def _extract_features_two_processes():
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState

    # The forked processes inherit any accelerate state the pytest process built (e.g. in a Trainer).
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    torch.set_num_threads(1)
    accelerator = Accelerator(cpu=True)
    assert accelerator.num_processes == 2
    loader = accelerator.prepare(DataLoader(indexed_dataset(11), batch_size=2, collate_fn=collate))
    features, labels = extract_features(
        MeanEncoder(), loader, preprocess=lambda x: x.double(), accelerator=accelerator
    )
    assert features.shape == (11, 2), features.shape  # 12 batched with even_batches padding, duplicate dropped
    assert features[:, 0].tolist() == list(range(11))
    assert labels.tolist() == [i % 3 for i in range(11)]


def test_extract_features_gathers_across_two_processes():
    from accelerate import debug_launcher

    debug_launcher(_extract_features_two_processes, num_processes=2)


# --- fine-tuning --------------------------------------------------------------------------------------------------


def test_image_classifier_output():
    model = ImageClassifier(nn.Flatten(), feature_dim=4, num_labels=3)
    pixel_values, labels = torch.randn(5, 1, 2, 2), torch.tensor([0, 1, 2, 0, 1])
    output = model(pixel_values, labels=labels)
    assert output.logits.shape == (5, 3)
    torch.testing.assert_close(output.loss, nn.functional.cross_entropy(output.logits, labels))
    assert model(pixel_values).loss is None


class RecordingTransform:
    """to_float that records the dtypes it was called on."""

    def __init__(self):
        self.dtypes = []

    def __call__(self, pixel_values):
        self.dtypes.append(pixel_values.dtype)
        return to_float(pixel_values)


def test_finetune_classifier_on_digits(digits, tmp_path):
    train_x, test_x, train_y, test_y = digits
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU())
    args = TrainingArguments(
        output_dir=str(tmp_path),
        num_train_epochs=3,
        per_device_train_batch_size=32,
        per_device_eval_batch_size=128,
        learning_rate=3e-3,
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        use_cpu=True,
        seed=0,
    )
    train_transform, eval_transform = RecordingTransform(), RecordingTransform()
    result = finetune_classifier(
        backbone,
        feature_dim=64,
        num_labels=10,
        train_dataset=image_dataset(train_x, train_y),
        eval_dataset=image_dataset(test_x, test_y),
        data_collator=collate,
        train_transform=train_transform,
        eval_transform=eval_transform,
        training_args=args,
    )
    assert result["finetune_accuracy"] > 0.85  # chance is 0.1
    assert len(train_transform.dtypes) == 3 * math.ceil(len(train_x) / 32)
    assert len(eval_transform.dtypes) == math.ceil(len(test_x) / 128)
    assert set(train_transform.dtypes) == set(eval_transform.dtypes) == {torch.uint8}
    assert args.remove_unused_columns  # the caller's arguments are left as they were
