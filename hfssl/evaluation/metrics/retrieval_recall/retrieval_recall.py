"""Retrieval recall@k as an ``evaluate`` metric module, loadable offline from a local path."""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
Recall@k of a retrieval: the fraction of queries with at least one relevant item among their k highest-ranked
results (the image-text retrieval metric of CLIP and open_clip: for image-to-text, the captions of the image are
relevant; for text-to-image, the image of the caption).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `int`): per query, item ids ranked best first, shape (Q, K); at least max(k).
    references (`list` of `list` of `int`): per query, the ids of the relevant items (at least one).
    k (`list` of `int`, default [1, 5, 10]): the cut-offs to report.
Returns:
    recall@{k} (`float`) for each k: fraction of queries with a relevant item among their first k results.
Examples:
    >>> metric = evaluate.load("hfssl/evaluation/metrics/retrieval_recall")
    >>> metric.compute(predictions=[[3, 1, 0], [0, 2, 1]], references=[[1], [1, 2]], k=[1, 2])
    {'recall@1': 0.0, 'recall@2': 1.0}
"""

_CITATION = ""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RetrievalRecall(evaluate.Metric):
    """Recall@k over ranked item ids and sets of relevant ids."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("int64")),
                    "references": datasets.Sequence(datasets.Value("int64")),
                }
            ),
        )

    def _compute(self, predictions, references, k=(1, 5, 10)):
        ranked = np.asarray(predictions)
        if ranked.ndim != 2 or ranked.shape[1] < max(k):
            raise ValueError(
                f"retrieval_recall needs at least {max(k)} ranked items per query, got shape {ranked.shape}"
            )
        if any(len(relevant) == 0 for relevant in references):
            raise ValueError("retrieval_recall: every query needs at least one relevant item")
        hits = np.array([np.isin(row, relevant) for row, relevant in zip(ranked, references)])
        return {f"recall@{cut}": float(np.mean(hits[:, :cut].any(axis=1))) for cut in k}
