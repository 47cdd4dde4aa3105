"""Loader for the ``evaluate`` metric modules shipped inside hfssl (they load offline)."""

from pathlib import Path

import evaluate
import numpy as np
import torch

METRICS_DIR = Path(__file__).parent / "metrics"


def available_metrics() -> list[str]:
    """Names of the metric modules in ``hfssl/evaluation/metrics/<name>/<name>.py``."""
    return sorted(path.parent.name for path in METRICS_DIR.glob("*/*.py") if path.stem == path.parent.name)


def load_metric(name: str) -> evaluate.EvaluationModule:
    """Load the packaged metric module ``name`` with ``evaluate.load`` from its local path (no Hub access)."""
    names = available_metrics()
    if name not in names:
        raise ValueError(f"Unknown hfssl metric {name!r}; available metrics: {', '.join(names)}")
    return evaluate.load(str(METRICS_DIR / name))


def _to_numpy(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


def compute_accuracy(predictions, references) -> float:
    """Top-1 accuracy of class ids ``predictions`` (N,) against ``references`` (N,).

    Accepts lists, numpy arrays or tensors (on any device).
    """
    result = load_metric("accuracy").compute(predictions=_to_numpy(predictions), references=_to_numpy(references))
    return result["accuracy"]


def compute_spearmanr(predictions, references) -> float:
    """Spearman rank correlation of ``predictions`` (N,) and ``references`` (N,)."""
    result = load_metric("spearmanr").compute(predictions=_to_numpy(predictions), references=_to_numpy(references))
    return result["spearmanr"]
