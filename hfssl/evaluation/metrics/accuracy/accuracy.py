"""Top-1 accuracy as an ``evaluate`` metric module, loadable offline from a local path."""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
Accuracy is the fraction of predictions equal to their references:
accuracy = (number of correct predictions) / (number of predictions).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): predicted class ids, shape (N,).
    references (`list` of `int`): ground-truth class ids, shape (N,).
Returns:
    accuracy (`float`): fraction of correct predictions, in [0, 1].
Examples:
    >>> metric = evaluate.load("hfssl/evaluation/metrics/accuracy")
    >>> metric.compute(predictions=[0, 1, 1], references=[0, 1, 0])
    {'accuracy': 0.6666666666666666}
"""

_CITATION = ""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Accuracy(evaluate.Metric):
    """Top-1 classification accuracy over integer class ids."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references):
        return {"accuracy": float(np.mean(np.asarray(predictions) == np.asarray(references)))}
