"""Spearman rank correlation as an ``evaluate`` metric module, loadable offline from a local path."""

import datasets
import evaluate
import numpy as np
from scipy import stats

_DESCRIPTION = """
Spearman's rank correlation coefficient between predictions and references: the Pearson
correlation of their ranks (ties get their average rank), in [-1, 1]. Computed with
scipy.stats.spearmanr, as gensim's word-similarity evaluation does.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `float`): predicted scores, shape (N,), e.g. cosine similarities.
    references (`list` of `float`): reference scores, shape (N,), e.g. human similarity ratings.
Returns:
    spearmanr (`float`): the rank correlation (nan when fewer than 2 pairs or a constant input).
    spearmanr_pvalue (`float`): two-sided p-value of the test of no correlation.
Examples:
    >>> metric = evaluate.load("hfssl/evaluation/metrics/spearmanr")
    >>> metric.compute(predictions=[0.1, 0.4, 0.3], references=[1, 3, 2])["spearmanr"]
    1.0
"""

_CITATION = ""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Spearmanr(evaluate.Metric):
    """Spearman rank correlation of float predictions and references."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}
            ),
        )

    def _compute(self, predictions, references):
        predictions, references = np.asarray(predictions, dtype=np.float64), np.asarray(references, dtype=np.float64)
        if len(predictions) < 2:
            return {"spearmanr": float("nan"), "spearmanr_pvalue": float("nan")}
        result = stats.spearmanr(predictions, references)
        return {"spearmanr": float(result.statistic), "spearmanr_pvalue": float(result.pvalue)}
