"""Class labels, scores and results shared by the text linear probe and text fine-tuning.

Labels come as class names (strings, numbered in sorted order) or non-negative class ids;
predictions are scored with the packaged ``evaluate`` modules ``accuracy`` and ``macro_f1``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import datasets
import numpy as np

from .metric_modules import _to_numpy, compute_accuracy, load_metric

logger = logging.getLogger(__name__)


@dataclass
class ClassLabels:
    """Class ids of the train and eval rows, and the class names (None for plain integer labels)."""

    train: np.ndarray
    eval: np.ndarray
    names: Optional[list[str]]

    @property
    def num_labels(self) -> int:
        return len(self.names) if self.names is not None else int(max(self.train.max(), self.eval.max())) + 1

    def name(self, label_id: int):
        """The name of ``label_id`` when classes have names, else the id itself."""
        return self.names[label_id] if self.names is not None else int(label_id)


def encode_class_labels(train_labels: Sequence, eval_labels: Sequence, feature=None) -> ClassLabels:
    """Class ids for label columns holding strings (ids follow the sorted names) or non-negative ints.

    ``feature`` is the column's ``datasets`` feature: a ``ClassLabel`` supplies the names of its ids.
    """
    values = list(train_labels) + list(eval_labels)
    if any(value is None for value in values):
        raise ValueError("Some rows have no label (None); classification needs a label on every train and eval row.")
    if all(isinstance(value, str) for value in values):
        names = sorted(set(values))
        unseen = sorted(set(eval_labels) - set(train_labels))
        if unseen:
            logger.warning("Eval classes absent from the train split (never predicted by a classifier): %s", unseen)
        index = {name: i for i, name in enumerate(names)}
        return ClassLabels(
            np.array([index[v] for v in train_labels]), np.array([index[v] for v in eval_labels]), names
        )
    if not all(isinstance(value, (int, np.integer)) and not isinstance(value, bool) for value in values):
        kinds = sorted({type(value).__name__ for value in values})
        raise ValueError(
            f"Labels must be class names (str) or class ids (int); found {kinds}. Regression targets are not "
            "supported: pass --label_column_name with a column of classes."
        )
    if min(values) < 0:
        raise ValueError(
            f"Labels must be non-negative class ids, found {min(values)} (a -1 label usually marks an unlabelled test "
            "split): pass --eval_split or --validation_file with a labelled split."
        )
    names = list(feature.names) if isinstance(feature, datasets.ClassLabel) else None
    return ClassLabels(np.asarray(train_labels, dtype=np.int64), np.asarray(eval_labels, dtype=np.int64), names)


def compute_macro_f1(predictions, references) -> float:
    """Macro-averaged F1 of class ids ``predictions`` (N,) against ``references`` (N,): sklearn's
    ``f1_score(average="macro")`` over the classes present in either."""
    result = load_metric("macro_f1").compute(predictions=_to_numpy(predictions), references=_to_numpy(references))
    return result["macro_f1"]


def classification_metrics(predictions, references, prefix: str) -> dict[str, float]:
    """``{prefix}_accuracy`` and ``{prefix}_macro_f1`` of class ids (N,) against references (N,)."""
    return {
        f"{prefix}_accuracy": compute_accuracy(predictions, references),
        f"{prefix}_macro_f1": compute_macro_f1(predictions, references),
    }


@dataclass
class ClassificationResult:
    """Figures of one protocol and its predicted class ids (M,) on the eval rows."""

    metrics: dict[str, float]
    predictions: np.ndarray
