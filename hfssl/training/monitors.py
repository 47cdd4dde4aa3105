"""Collapse monitors: cheap statistics of a batch of embeddings that fall when a method collapses."""

from __future__ import annotations

import math

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


# A share of the uniform value 1/sqrt(D) below which the embeddings count as collapsed: a healthy run stays
# at 0.3-1 of it (SimSiam's fig. 2 shows the collapsed curve at 0 and the working one near 1).
COLLAPSE_STD_SHARE = 0.05

GENERIC_COLLAPSE_HINT = (
    "check the learning rate (too high), the augmentation (two views too alike) and the method's settings."
)


def collapse_warning(std: float, dim: int, step: int, hint: str | None = None) -> str | None:
    """A warning when the :func:`embedding_std` ``std`` of (N, ``dim``) embeddings is below
    :data:`COLLAPSE_STD_SHARE` of a uniform spread's 1/sqrt(dim), else None. ``hint``: the method's likely
    causes (a model's ``collapse_hint``)."""
    uniform = 1 / math.sqrt(dim)
    if std >= COLLAPSE_STD_SHARE * uniform:
        return None
    return (
        f"The embeddings have collapsed at step {step}: their std is {std:.2e}, against about {uniform:.3f} "
        f"(1/sqrt({dim})) for embeddings spread over the sphere, so every image maps to nearly one point and "
        f"the features will be useless downstream. Likely cause: {hint or GENERIC_COLLAPSE_HINT}"
    )
