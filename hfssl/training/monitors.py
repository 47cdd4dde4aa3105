"""Collapse monitors: cheap statistics of a batch of embeddings that fall when a method collapses."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def embedding_std(embeddings: torch.Tensor) -> float:
    """Mean over dimensions of the per-dimension std of L2-normalised embeddings (N, D).

    Complete collapse gives 0; embeddings spread uniformly on the sphere give about 1/sqrt(D)
    (Chen & He 2021, "Exploring Simple Siamese Representation Learning", sec. 4.1).
    """
    return F.normalize(embeddings.float(), dim=1).std(dim=0).mean().item()


def effective_rank(embeddings: torch.Tensor, eps: float = 1e-7) -> float:
    """RankMe effective rank of embeddings (N, D): exp of the entropy of the normalised singular values.

    Garrido et al. 2023, "RankMe: Assessing the Downstream Performance of Pretrained Self-Supervised
    Representations by Their Rank". Between 1 (collapse to a line) and min(N, D).
    """
    singular_values = torch.linalg.svdvals(embeddings.float())
    p = singular_values / (singular_values.sum() + eps) + eps
    return torch.exp(-(p * p.log()).sum()).item()
