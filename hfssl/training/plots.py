"""Pictures of a training run: curves from ``Trainer.state.log_history``, a 2-D map of eval features, and grids
of images (a reconstruction method's inputs and outputs).

Figures are built with matplotlib's object-oriented API on an Agg canvas: nothing touches pyplot's
global figure registry or a display, so plotting works headless and no figure outlives its call.
The model card embeds the PNGs these functions write next to the checkpoint
(:func:`hfssl.training.model_card.build_card`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 100
MAX_LEGEND_CLASSES = 20
TSNE_MIN_POINTS = 100  # below this a t-SNE map says little; PCA shows the same points faithfully
TSNE_PCA_DIMS = 50
TSNE_MAX_ITER = 300  # sklearn's minimum is 250 (the early-exaggeration phase alone)

# Quantities in the order their panels appear; eval accuracies and perplexities are found by name.
_TRAIN_KEYS = ("loss", "learning_rate")
_MONITOR_KEYS = ("embedding_std", "embedding_rank", "feature_rank")
_EVAL_SUFFIXES = ("accuracy", "spearman", "perplexity")
_TITLES = {
    "loss": "training loss",
    "learning_rate": "learning rate",
    "eval_loss": "eval loss",
    "eval_knn_accuracy": "kNN accuracy (eval)",
    "embedding_std": "embedding std (collapse: 0)",
    "embedding_rank": "embedding effective rank",
    "feature_rank": "feature effective rank",
}


# ----------------------------------------------------------------------------- training curves


def training_curve_panels(log_history: Sequence[dict]) -> list[str]:
    """The log keys :func:`plot_training_curves` draws a panel for, in panel order.

    A key counts when at least one entry logs it as a finite number: training loss, learning rate,
    eval loss, kNN accuracy, every other ``eval_*accuracy``, ``eval_*spearman`` (word similarity)
    and ``eval_*perplexity``, then the collapse monitors ``embedding_std``, ``embedding_rank`` and
    ``feature_rank``.
    """
    logged = {key for entry in log_history for key, value in entry.items() if _finite_number(value)}
    eval_keys = ["eval_knn_accuracy"] + [
        key
        for suffix in _EVAL_SUFFIXES
        for key in sorted(logged)
        if key.startswith("eval_") and key.endswith(suffix) and key != "eval_knn_accuracy"
    ]
    ordered = [*_TRAIN_KEYS, "eval_loss", *eval_keys, *_MONITOR_KEYS]
    return [key for key in ordered if key in logged]


def training_curves_figure(log_history: Sequence[dict]) -> Figure | None:
    """A figure with one panel per quantity of :func:`training_curve_panels` against the optimizer
    step, or None when nothing plottable was logged. Non-finite values are left as gaps."""
    panels = training_curve_panels(log_history)
    if not panels:
        return None
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure = Figure(figsize=(4.0 * columns, 2.8 * rows), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    for index, key in enumerate(panels):
        axes = figure.add_subplot(rows, columns, index + 1)
        _draw_curve(axes, key, *_series(log_history, key))
    return figure


def plot_training_curves(log_history: Sequence[dict], path: str | os.PathLike) -> str | None:
    """Write the curves of a ``Trainer``'s ``state.log_history`` as a PNG at ``path``.

    Returns the path written, or None (writing nothing) when no plottable quantity was logged.
    """
    figure = training_curves_figure(log_history)
    if figure is None:
        return None
    return _save(figure, path)


def _finite_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _series(log_history: Sequence[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    """Steps and values of ``key``; non-numeric and non-finite values become NaN (a gap in the line)."""
    steps, values = [], []
    for index, entry in enumerate(log_history):
        if key in entry:
            steps.append(entry.get("step", index))
            values.append(entry[key] if _finite_number(entry[key]) else math.nan)
    return np.asarray(steps, dtype=float), np.asarray(values, dtype=float)


def _draw_curve(axes, key: str, steps: np.ndarray, values: np.ndarray) -> None:
    gaps = int(np.isnan(values).sum())
    title = _TITLES.get(key, key.removeprefix("eval_").replace("_", " ") + " (eval)")
    if gaps:
        title += f" [{gaps} non-finite]"
    axes.plot(steps, values, marker="o" if len(values) <= 30 else None, markersize=3, linewidth=1.2)
    axes.set_title(title, fontsize=9)
    axes.set_xlabel("step", fontsize=8)
    axes.tick_params(labelsize=7)
    axes.grid(alpha=0.3)
    if key == "learning_rate":
        axes.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))


# ----------------------------------------------------------------------------- embedding map


def subsample_indices(num_points: int, max_points: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most ``max_points`` of ``num_points`` rows, drawn without replacement
    from ``seed`` alone, so the same inputs always map the same points."""
    if num_points <= max_points:
        return np.arange(num_points)
    return np.sort(np.random.default_rng(seed).choice(num_points, size=max_points, replace=False))


def project_2d(features: np.ndarray, seed: int = 0) -> tuple[np.ndarray, str]:
    """2-D coordinates of ``features`` (N, D) and the name of the projection used.

    * D <= 2: the features themselves (a zero second axis when D == 1).
    * N < ``TSNE_MIN_POINTS``: PCA to 2 dimensions.
    * otherwise: PCA to 50 dimensions, then Barnes-Hut t-SNE (perplexity 30, PCA initialisation,
      300 iterations, one thread).

    Why t-SNE: SSL features are rarely linearly separable in their top two principal directions; on
    scikit-learn's digits, a 10-NN classifier on the 2-D map scores 0.62 with PCA-2D and 0.98 with
    this t-SNE. Why these settings: measured on 2 shared CPU cores, 1,800 points cost 2.9 s of CPU
    with 300 iterations against 8 s with sklearn's default 1,000, for the same map quality (0.975
    vs 0.977), and OpenMP threads contending for busy cores made it up to 5x slower, hence one.
    """
    features = np.asarray(features, dtype=np.float32)
    num_points, dims = features.shape
    if dims <= 2:
        return np.pad(features, ((0, 0), (0, 2 - dims))), "features"
    from sklearn.decomposition import PCA
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        if num_points < TSNE_MIN_POINTS:
            return PCA(2, random_state=seed).fit_transform(features), "PCA"
        from sklearn.manifold import TSNE

        reduced = PCA(min(TSNE_PCA_DIMS, dims, num_points), random_state=seed).fit_transform(features)
        tsne = TSNE(2, perplexity=30.0, init="pca", max_iter=TSNE_MAX_ITER, random_state=seed)
        return tsne.fit_transform(reduced), f"t-SNE of PCA-{reduced.shape[1]}"


def embedding_map_figure(
    features,
    labels,
    class_names: Sequence[str] | None = None,
    max_points: int = 2000,
    seed: int = 0,
) -> Figure:
    """A scatter of :func:`project_2d` of ``features`` (N, D), coloured by ``labels`` (N,) ints.

    At most ``max_points`` rows are drawn (:func:`subsample_indices`); rows with non-finite
    features are dropped first. The legend names the classes (``class_names[label]`` when given)
    and shows the ``MAX_LEGEND_CLASSES`` most frequent of them at most. ``labels`` may be None.
    """
    features = _as_array(features).astype(np.float32).reshape(len(features), -1)
    labels = None if labels is None else _as_array(labels).astype(np.int64).reshape(-1)
    if labels is not None and len(labels) != len(features):
        raise ValueError(f"features has {len(features)} rows but labels has {len(labels)}; pass one label per row.")
    finite = np.isfinite(features).all(axis=1)
    if not finite.any():
        raise ValueError("No row of features is finite (all contain NaN or inf); there is nothing to map.")
    keep = np.flatnonzero(finite)[subsample_indices(int(finite.sum()), max_points, seed)]
    coordinates, projection = project_2d(features[keep], seed)
    figure = Figure(figsize=(6.4, 5.6), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    _scatter_by_label(axes, coordinates, None if labels is None else labels[keep], class_names)
    dropped = f", {int((~finite).sum())} non-finite rows left out" if not finite.all() else ""
    axes.set_title(f"eval features: {projection}, {len(keep)} of {len(features)} points{dropped}", fontsize=9)
    axes.set_xticks([])
    axes.set_yticks([])
    return figure


def plot_embedding_map(
    features,
    labels,
    path: str | os.PathLike,
    class_names: Sequence[str] | None = None,
    max_points: int = 2000,
    seed: int = 0,
) -> str:
    """Write a 2-D map of eval ``features`` (N, D) coloured by ``labels`` (N,) as a PNG at ``path``.

    The projection is PCA to 50 dimensions then t-SNE (PCA to 2 dimensions below 100 points, the
    features themselves when D <= 2); :func:`project_2d` gives the measurements behind that choice.
    ``max_points`` rows are kept by a seeded draw, so a rerun maps the same points. Returns ``path``.
    """
    return _save(embedding_map_figure(features, labels, class_names, max_points, seed), path)


def _as_array(values) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor, maybe on an accelerator
        values = values.detach().cpu().float().numpy()
    return np.asarray(values)


def _scatter_by_label(axes, coordinates: np.ndarray, labels: np.ndarray | None, class_names) -> None:
    if labels is None:
        axes.scatter(coordinates[:, 0], coordinates[:, 1], s=4, alpha=0.7, linewidths=0)
        return
    classes, counts = np.unique(labels, return_counts=True)
    colormap = _colormap(len(classes))
    for position, label in enumerate(classes):
        chosen = labels == label
        axes.scatter(
            coordinates[chosen, 0],
            coordinates[chosen, 1],
            s=4,
            alpha=0.7,
            linewidths=0,
            color=colormap(position if len(classes) <= 20 else position / max(len(classes) - 1, 1)),
            label=_class_name(label, class_names),
        )
    shown = set(classes[np.argsort(-counts, kind="stable")[:MAX_LEGEND_CLASSES]])
    handles = [h for h, label in zip(axes.collections, classes) if label in shown]
    title = None if len(classes) <= MAX_LEGEND_CLASSES else f"{MAX_LEGEND_CLASSES} of {len(classes)} classes"
    axes.legend(
        handles=handles,
        title=title,
        fontsize=7,
        title_fontsize=7,
        markerscale=3,
        loc="center left",
        bbox_to_anchor=(1, 0.5),
    )


def _colormap(num_classes: int):
    from matplotlib import colormaps

    if num_classes <= 10:
        return colormaps["tab10"]
    return colormaps["tab20"] if num_classes <= 20 else colormaps["turbo"]


def _class_name(label: int, class_names) -> str:
    if class_names is not None and 0 <= label < len(class_names):
        return str(class_names[label])
    return str(label)


# ----------------------------------------------------------------------------- image panels


def image_panels_figure(panels: dict, title: str | None = None) -> Figure:
    """A grid of images: one row per panel (its name on the left), one column per image.

    Args:
        panels: name -> float tensor or array (B, C, H, W) with values in [0, 1], C 1 (shown grey) or 3; every
            panel holds the same B images.
        title: the figure's title, e.g. the training step.
    """
    rows = {name: _as_array(images) for name, images in panels.items()}
    if not rows:
        raise ValueError("image_panels_figure needs at least one panel.")
    count = len(next(iter(rows.values())))
    if any(len(images) != count for images in rows.values()):
        raise ValueError(f"Every panel must hold the same images, got {[len(images) for images in rows.values()]}.")
    figure = Figure(figsize=(1.2 * count + 1.6, 1.2 * len(rows) + (0.4 if title else 0.1)))
    FigureCanvasAgg(figure)
    grid = figure.subplots(len(rows), count, squeeze=False)
    for row, (name, images) in enumerate(rows.items()):
        for column in range(count):
            axes = grid[row][column]
            image = np.clip(np.moveaxis(images[column], 0, -1), 0, 1)
            if image.shape[-1] == 1:
                axes.imshow(image[..., 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            else:
                axes.imshow(image, interpolation="nearest")
            axes.set_xticks([])
            axes.set_yticks([])
        grid[row][0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    if title:
        figure.suptitle(title, fontsize=9)
    figure.subplots_adjust(left=1.5 / figure.get_figwidth(), right=0.99, bottom=0.02, wspace=0.05, hspace=0.05)
    return figure


def plot_image_panels(panels: dict, path: str | os.PathLike, title: str | None = None) -> str:
    """:func:`image_panels_figure` saved as a PNG at ``path``; returns the path."""
    return _save(image_panels_figure(panels, title), path)


def _save(figure: Figure, path: str | os.PathLike) -> str:
    path = os.fspath(path)
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    figure.savefig(path, format="png", dpi=DPI)
    figure.clear()
    return path
