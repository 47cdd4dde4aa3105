"""Macro-averaged F1 as an ``evaluate`` metric module, loadable offline from a local path."""

import datasets
import evaluate
from sklearn.metrics import f1_score

_DESCRIPTION = """
Macro F1 is the unweighted mean over classes of each class's F1 = 2 * precision * recall / (precision + recall),
so every class counts the same however rare it is. Computed with scikit-learn's
f1_score(average="macro", zero_division=0): the classes are those in the references or the predictions
(or `labels` when given), and a class never predicted and never present scores 0.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): predicted class ids, shape (N,).
    references (`list` of `int`): ground-truth class ids, shape (N,).
    labels (`list` of `int`, optional): the classes to average over; default: those in references or predictions.
Returns:
    macro_f1 (`float`): mean per-class F1, in [0, 1].
Examples:
    >>> metric = evaluate.load("hfssl/evaluation/metrics/macro_f1")
    >>> metric.compute(predictions=[0, 1, 1], references=[0, 1, 0])
    {'macro_f1': 0.6666666666666666}
"""

_CITATION = ""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MacroF1(evaluate.Metric):
    """Macro-averaged F1 over integer class ids."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, labels=None):
        score = f1_score(references, predictions, labels=labels, average="macro", zero_division=0)
        return {"macro_f1": float(score)}
