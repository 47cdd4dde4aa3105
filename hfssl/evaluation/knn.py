"""Weighted k-nearest-neighbour classification of frozen features.

Wu, Xiong, Yu & Lin, "Unsupervised Feature Learning via Non-Parametric Instance Discrimination", CVPR 2018
(arXiv:1805.01978), Sec. 3.4: each of the k most cosine-similar training features votes for its label with
weight exp(sim / temperature).
"""

from typing import Optional

import torch
import torch.nn.functional as F

from .metric_modules import compute_accuracy


def _knn_votes(similarity: torch.Tensor, train_labels: torch.Tensor, num_classes: int, k: int, temperature: float):
    """Class votes (Q, num_classes) from similarities (Q, N) to a bank labelled ``train_labels`` (N,)."""
    top_similarity, top_index = similarity.topk(k, dim=1)
    # Subtracting each row's maximum rescales a query's weights by one constant: the vote is unchanged and
    # exp cannot overflow for small temperatures.
    weights = ((top_similarity - top_similarity[:, :1]) / temperature).exp()
    votes = torch.zeros(similarity.shape[0], num_classes, dtype=weights.dtype, device=weights.device)
    return votes.scatter_add_(1, train_labels[top_index], weights)


@torch.no_grad()
def knn_predict(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    query_features: torch.Tensor,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.1,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Predict a class for each query by a similarity-weighted vote of its k nearest training features.

    Args:
        train_features: (N, D) feature bank.
        train_labels: (N,) int class ids in ``[0, num_classes)``.
        query_features: (Q, D) features to classify.
        num_classes: number of classes.
        k: number of neighbours, clipped to N.
        temperature: tau in the vote weight exp(cosine similarity / tau).
        chunk_size: queries scored at once; peak memory is about chunk_size x N similarities.

    Returns:
        int64 (Q,) predicted class ids, on the device of ``train_features``. Ties go to the lowest class id.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    device = train_features.device
    bank = F.normalize(train_features.float(), dim=1)
    bank_labels = train_labels.to(device=device, dtype=torch.long)
    k = min(k, bank.shape[0])
    predictions = []
    for queries in query_features.split(chunk_size):
        similarity = F.normalize(queries.to(device).float(), dim=1) @ bank.T
        predictions.append(_knn_votes(similarity, bank_labels, num_classes, k, temperature).argmax(dim=1))
    return torch.cat(predictions)


def knn_accuracy(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    query_features: torch.Tensor,
    query_labels: torch.Tensor,
    k: int = 200,
    temperature: float = 0.1,
    num_classes: Optional[int] = None,
) -> float:
    """Top-1 accuracy of :func:`knn_predict` on ``query_features`` (Q, D) labelled ``query_labels`` (Q,).

    ``num_classes`` defaults to one more than the largest label in either set.
    """
    if num_classes is None:
        num_classes = int(max(train_labels.max(), query_labels.max())) + 1
    predictions = knn_predict(train_features, train_labels, query_features, num_classes, k, temperature)
    return compute_accuracy(predictions, query_labels)
