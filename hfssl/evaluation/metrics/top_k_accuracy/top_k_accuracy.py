"""Top-k accuracy as an ``evaluate`` metric module, loadable offline from a local path."""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
Top-k accuracy is the fraction of samples whose true class is among their k highest-ranked predicted classes
(zero-shot classification reports top-1 and top-5, as CLIP does).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `int`): per sample, class ids ranked best first, shape (N, K); at least
        max(k) of them.
    references (`list` of `int`): the true class ids, shape (N,).
    k (`list` of `int`, default [1, 5]): the cut-offs to report.
Returns:
    top_{k}_accuracy (`float`) for each k: fraction of samples whose class is among their first k predictions.
Examples:
    >>> metric = evaluate.load("hfssl/evaluation/metrics/top_k_accuracy")
    >>> metric.compute(predictions=[[2, 0, 1], [1, 2, 0]], references=[0, 0], k=[1, 2])
    {'top_1_accuracy': 0.0, 'top_2_accuracy': 0.5}
"""

_CITATION = ""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class TopKAccuracy(evaluate.Metric):
    """Top-k accuracy over ranked class ids."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Sequence(datasets.Value("int64")), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, k=(1, 5)):
        ranked = np.asarray(predictions)
        truth = np.asarray(references)[:, None]
        if ranked.ndim != 2 or ranked.shape[1] < max(k):
            raise ValueError(
                f"top_k_accuracy needs at least {max(k)} ranked classes per sample, got shape {ranked.shape}"
            )
        return {f"top_{cut}_accuracy": float(np.mean((ranked[:, :cut] == truth).any(axis=1))) for cut in k}
