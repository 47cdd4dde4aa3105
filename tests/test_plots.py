"""Training pictures: curves from a Trainer log history and the 2-D map of eval features."""

import math

import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

from hfssl.training.plots import (
    embedding_map_figure,
    plot_embedding_map,
    plot_training_curves,
    project_2d,
    subsample_indices,
    training_curve_panels,
    training_curves_figure,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small tensors (conftest.one_torch_thread)

MONITORS = ("embedding_std", "embedding_rank", "feature_rank")


def _history(knn=True, monitors=True, nan_loss=False, text_metrics=False) -> list[dict]:
    """A log history shaped like Trainer's: training logs, eval logs, and the closing summary."""
    history = []
    for step in range(10, 110, 10):
        entry = {"loss": 3.0 - step / 100, "grad_norm": 1.5, "learning_rate": 1e-3 * step / 100, "epoch": step / 50}
        if monitors:
            entry |= {"embedding_std": 0.1, "embedding_rank": 6.0 + step / 100, "feature_rank": 9.0}
        history.append({**entry, "step": step})
    if nan_loss:
        history[3]["loss"] = math.nan
        history[4]["loss"] = math.inf
    for step in (50, 100):
        entry = {
            "eval_loss": 2.0 - step / 200,
            "eval_runtime": 0.5,
            "eval_samples_per_second": 300.0,
            "epoch": step / 50,
        }
        if knn:
            entry["eval_knn_accuracy"] = step / 200
        if text_metrics:
            entry |= {"eval_perplexity": 300.0, "eval_nsp_accuracy": 0.6, "eval_mlm_accuracy": 0.05}
            entry |= {"eval_wordsim353_spearman": 0.1, "eval_wordsim353_oov_ratio": 0.2}
        history.append({**entry, "step": step})
    history.append({"train_runtime": 12.0, "train_loss": 2.5, "total_flos": 1.0, "epoch": 2.0, "step": 100})
    return history


def _open_png(path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


@pytest.mark.parametrize(
    "options, expected",
    [
        (dict(), ["loss", "learning_rate", "eval_loss", "eval_knn_accuracy", *MONITORS]),
        (dict(knn=False, monitors=False), ["loss", "learning_rate", "eval_loss"]),
        (
            dict(knn=False, monitors=False, text_metrics=True),
            [
                "loss",
                "learning_rate",
                "eval_loss",
                "eval_mlm_accuracy",
                "eval_nsp_accuracy",
                "eval_wordsim353_spearman",
                "eval_perplexity",
            ],  # fmt: skip
        ),
    ],
)
def test_curves_have_a_panel_per_logged_quantity(tmp_path, options, expected):
    history = _history(**options)
    assert training_curve_panels(history) == expected
    figure = training_curves_figure(history)
    assert len(figure.axes) == len(expected)
    assert [axes.get_title() for axes in figure.axes][:3] == ["training loss", "learning rate", "eval loss"]
    path = plot_training_curves(history, tmp_path / "curves" / "training_curves.png")
    assert path == str(tmp_path / "curves" / "training_curves.png")
    width, height = _open_png(path)
    assert width > 300 and height > 200
    assert (tmp_path / "curves" / "training_curves.png").stat().st_size < 200_000


def test_non_finite_losses_are_gaps_not_crashes(tmp_path):
    history = _history(nan_loss=True)
    figure = training_curves_figure(history)
    loss_panel = figure.axes[0]
    drawn = loss_panel.lines[0].get_ydata()
    assert len(drawn) == 10 and np.isnan(drawn).sum() == 2  # the NaN and the inf break the line
    assert "2 non-finite" in loss_panel.get_title()
    _open_png(plot_training_curves(history, tmp_path / "curves.png"))


def test_nothing_plottable_writes_nothing(tmp_path):
    path = tmp_path / "curves.png"
    summary_only = [{"train_runtime": 3.0, "train_loss": 1.0, "epoch": 1.0, "step": 5}]
    for history in ([], summary_only, [{"loss": math.nan, "step": 1}]):
        assert training_curves_figure(history) is None
        assert plot_training_curves(history, path) is None
    assert not path.exists()


def _clusters(num_points=300, num_classes=3, dims=16, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, num_points)
    centres = 10.0 * np.eye(num_classes, dims)
    return (centres[labels] + rng.normal(size=(num_points, dims))).astype(np.float32), labels


def test_embedding_map_of_separated_clusters(tmp_path):
    features, labels = _clusters()
    path = plot_embedding_map(features, labels, tmp_path / "embedding_map.png", class_names=["cat", "dog", "eel"])
    assert path == str(tmp_path / "embedding_map.png")
    _open_png(path)
    assert (tmp_path / "embedding_map.png").stat().st_size < 200_000
    coordinates, projection = project_2d(features)
    assert projection.startswith("t-SNE")
    centroids = np.stack([coordinates[labels == label].mean(0) for label in range(3)])
    spread = max(np.linalg.norm(coordinates[labels == label] - centroids[label], axis=1).mean() for label in range(3))
    gaps = [np.linalg.norm(centroids[a] - centroids[b]) for a in range(3) for b in range(a + 1, 3)]
    assert min(gaps) > 2 * spread  # the map keeps the clusters apart


def test_projection_falls_back_to_pca_or_the_features_themselves():
    features, _ = _clusters(num_points=40)
    coordinates, projection = project_2d(features)
    assert projection == "PCA" and coordinates.shape == (40, 2)
    flat = np.arange(10, dtype=np.float32).reshape(5, 2)
    coordinates, projection = project_2d(flat)
    assert projection == "features" and np.array_equal(coordinates, flat)
    coordinates, _ = project_2d(np.arange(5, dtype=np.float32).reshape(5, 1))
    assert coordinates.shape == (5, 2) and not coordinates[:, 1].any()


def test_subsampling_is_deterministic():
    first = subsample_indices(5000, 200, seed=3)
    assert np.array_equal(first, subsample_indices(5000, 200, seed=3))
    assert len(np.unique(first)) == 200 and np.all(np.diff(first) > 0) and first.max() < 5000
    assert not np.array_equal(first, subsample_indices(5000, 200, seed=4))
    assert np.array_equal(subsample_indices(50, 200), np.arange(50))
    features, labels = _clusters(num_points=500)
    maps = [embedding_map_figure(features, labels, max_points=150, seed=1) for _ in range(2)]
    offsets = [figure.axes[0].collections[0].get_offsets() for figure in maps]
    assert np.array_equal(offsets[0], offsets[1])
    assert "150 of 500 points" in maps[0].axes[0].get_title()


def test_legend_names_the_classes_and_is_capped():
    features, labels = _clusters(num_points=120, num_classes=3)
    figure = embedding_map_figure(features, labels, class_names=["cat", "dog", "eel"])
    assert [text.get_text() for text in figure.axes[0].get_legend().get_texts()] == ["cat", "dog", "eel"]
    unnamed = embedding_map_figure(features, labels)
    assert [text.get_text() for text in unnamed.axes[0].get_legend().get_texts()] == ["0", "1", "2"]
    many_labels = np.arange(120) % 30
    legend = embedding_map_figure(features, many_labels).axes[0].get_legend()
    assert len(legend.get_texts()) == 20 and legend.get_title().get_text() == "20 of 30 classes"


def test_bad_features_are_refused_or_dropped(tmp_path):
    features, labels = _clusters(num_points=120)
    with pytest.raises(ValueError, match="one label per row"):
        plot_embedding_map(features, labels[:-1], tmp_path / "map.png")
    with pytest.raises(ValueError, match="nothing to map"):
        plot_embedding_map(np.full((10, 4), np.nan), labels[:10], tmp_path / "map.png")
    features[:5] = np.nan
    figure = embedding_map_figure(features, labels)
    assert "5 non-finite rows left out" in figure.axes[0].get_title()


def test_torch_inputs_and_no_pyplot_figures_left_open(tmp_path):
    import torch

    before = plt.get_fignums()
    features, labels = _clusters(num_points=60)
    plot_embedding_map(torch.from_numpy(features), torch.from_numpy(labels), tmp_path / "map.png")
    plot_training_curves(_history(), tmp_path / "curves.png")
    assert plt.get_fignums() == before  # figures never enter pyplot's registry, so none outlives its call
