"""Self-supervised losses as pure functions.

Each function documents its shapes and cites its paper. Losses that read other samples take
their negatives or statistics from every process through :mod:`hfssl.distributed`, so the
result under data parallelism equals the result on the concatenated batch.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from .distributed import all_reduce_max, all_reduce_sum, gather_with_offset, world_size


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """NT-Xent, the normalised temperature-scaled cross entropy of SimCLR.

    Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual Representations",
    eq. (1). For each of the 2N views in the (global) batch, the positive is the other view of the
    same image and the negatives are the other 2N - 2 views; similarities are cosine.

    Args:
        z1, z2: (B, D) projections of two views of the same B images on this process (not
            necessarily normalised). Negatives are gathered from every process with gradients.
        tau: softmax temperature.

    Returns:
        Scalar: the mean loss over this process's 2B anchors. Under DDP (gradient averaging) the
        update equals the one for the mean loss over the concatenated global batch.
    """
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ValueError(
            f"nt_xent expects two (B, D) tensors of equal shape, got {tuple(z1.shape)} and {tuple(z2.shape)}"
        )
    z1 = F.normalize(z1, dim=1)
    z2 = F.normalize(z2, dim=1)
    local_size, dim = z1.shape
    # both views in one gather: a single size exchange, all-gather and backward all-reduce
    all_z, offset = gather_with_offset(torch.cat([z1, z2], dim=1))
    all_z1, all_z2 = all_z.split(dim, dim=1)
    global_size = all_z.shape[0]

    anchors = torch.cat([z1, z2])  # (2B, D)
    candidates = torch.cat([all_z1, all_z2])  # (2N, D)
    logits = anchors @ candidates.T / tau  # (2B, 2N)

    own_rows = torch.arange(local_size, device=z1.device) + offset
    self_index = torch.cat([own_rows, own_rows + global_size])
    positive_index = torch.cat([own_rows + global_size, own_rows])
    is_self = F.one_hot(self_index, num_classes=2 * global_size).bool()
    logits = logits.masked_fill(is_self, float("-inf"))
    return F.cross_entropy(logits, positive_index)


# BYOL and SimSiam compare each sample with its own other view only: no cross-sample term, so under data
# parallelism the per-process mean (with DDP's gradient averaging) equals the mean over the global batch and
# these losses need no gather (nor a 2-process test).


def normalized_mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BYOL's regression loss: the mean squared error of L2-normalised vectors, ``2 - 2 cos(q, z')``.

    Grill et al. 2020, "Bootstrap Your Own Latent", eq. (2):
    ``L = || q / ||q|| - z' / ||z'|| ||^2 = 2 - 2 <q, z'> / (||q|| ||z'||)``. The target is a stop-gradient
    (``sg(z')``): it is detached here, whatever produced it.

    Args:
        prediction: (B, D) online predictions q.
        target: (B, D) target projections z' of the other view.

    Returns:
        Scalar in [0, 4]: the mean over the B pairs.
    """
    _check_pair("normalized_mse", prediction, target)
    return (2 - 2 * F.cosine_similarity(prediction, target.detach(), dim=-1)).mean()


def byol_loss(p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """BYOL's symmetrised loss ``L + L~`` (Grill et al. 2020, sec. 3.1): each view's prediction regresses the
    target projection of the other view, ``normalized_mse(p1, z2) + normalized_mse(p2, z1)``.

    Args:
        p1, p2: (B, D) online predictions of views 1 and 2.
        z1, z2: (B, D) target projections of views 1 and 2 (detached).

    Returns:
        Scalar in [0, 8].
    """
    return normalized_mse(p1, z2) + normalized_mse(p2, z1)


def negative_cosine(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """SimSiam's ``D(p, stopgrad(z)) = - <p / ||p||, z / ||z||>``, averaged over the batch.

    Chen & He 2021, "Exploring Simple Siamese Representation Learning", eq. (1) and Algorithm 1; the
    stop-gradient on ``z`` (eq. 3) is applied here: no gradient flows into ``target``.

    Args:
        prediction: (B, D) predictions p of one view.
        target: (B, D) projections z of the other view.

    Returns:
        Scalar in [-1, 1]: the mean over the B pairs.
    """
    _check_pair("negative_cosine", prediction, target)
    return -F.cosine_similarity(prediction, target.detach(), dim=-1).mean()


def simsiam_loss(p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """SimSiam's symmetrised loss ``L = D(p1, stopgrad(z2)) / 2 + D(p2, stopgrad(z1)) / 2`` (Chen & He 2021, eq. 4).

    Args:
        p1, p2: (B, D) predictions of views 1 and 2.
        z1, z2: (B, D) projections of views 1 and 2 (detached inside).

    Returns:
        Scalar in [-1, 1]; -1 is its minimum.
    """
    return negative_cosine(p1, z2) / 2 + negative_cosine(p2, z1) / 2


# MoCo v2 scores each query against its own key and a queue that every process holds alike (the model enqueues
# the gathered keys): no cross-sample term within the batch, so like BYOL's loss it needs no gather; DDP's
# gradient averaging of the per-process means gives the global-batch mean. MoCo v3 scores each query against
# the keys of the whole global batch, gathered.


def info_nce(query: torch.Tensor, key: torch.Tensor, queue: torch.Tensor, tau: float = 0.2) -> torch.Tensor:
    """MoCo's InfoNCE against a queue of negative keys.

    He et al. 2020, "Momentum Contrast for Unsupervised Visual Representation Learning", eq. (1) and Algorithm 1
    (with MoCo v2's tau = 0.2, Chen et al. 2020): for each query q with positive key k+ and the K queued keys k_i,
    ``L_q = -log( exp(q.k+ / tau) / (exp(q.k+ / tau) + sum_i exp(q.k_i / tau)) )``, i.e. the cross entropy of the
    logits ``[q.k+, q.k_1, ..., q.k_K] / tau`` with label 0. Queries and keys are L2-normalised here; keys and
    queue are stop-gradients (detached), as the key encoder is trained by momentum only.

    Args:
        query: (B, C) queries q (normalised here).
        key: (B, C) the positive key of each query, the other view of its image from the key encoder
            (normalised here).
        queue: (K, C) the queued negative keys, L2-normalised already (as the model stores them). Pass a copy
            when the queue is updated in place before the backward pass.
        tau: softmax temperature.

    Returns:
        Scalar: the mean loss over the B queries.
    """
    if query.shape != key.shape or query.dim() != 2 or queue.dim() != 2 or queue.shape[1] != query.shape[1]:
        raise ValueError(
            f"info_nce expects query and key of shape (B, C) and a queue (K, C), got {tuple(query.shape)}, "
            f"{tuple(key.shape)} and {tuple(queue.shape)}"
        )
    q = F.normalize(query, dim=1)
    k = F.normalize(key.detach(), dim=1)
    positive = (q * k).sum(dim=1, keepdim=True)  # (B, 1): q . k+
    negative = q @ queue.detach().T  # (B, K): q . k_i
    logits = torch.cat([positive, negative], dim=1) / tau  # (B, 1 + K)
    labels = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)  # the positive is the 0-th
    return F.cross_entropy(logits, labels)


def moco_v2_loss(
    q1: torch.Tensor, q2: torch.Tensor, k1: torch.Tensor, k2: torch.Tensor, queue: torch.Tensor, tau: float = 0.2
) -> torch.Tensor:
    """MoCo v2's InfoNCE symmetrised over the two views: ``(info_nce(q1, k2) + info_nce(q2, k1)) / 2``, each
    view's query against the other view's key and the same queue (see :func:`info_nce`, and
    :class:`hfssl.models.moco_v2.MoCoV2Model` for why symmetrised).

    Args:
        q1, q2: (B, C) queries of views 1 and 2.
        k1, k2: (B, C) keys of views 1 and 2 (detached inside).
        queue: (K, C) L2-normalised negative keys.
        tau: softmax temperature (MoCo v2: 0.2).

    Returns:
        Scalar >= 0, the mean of the two directions.
    """
    return (info_nce(q1, k2, queue, tau) + info_nce(q2, k1, queue, tau)) / 2


def _moco_v3_ctr(query: torch.Tensor, all_keys: torch.Tensor, offset: int, tau: float) -> torch.Tensor:
    q = F.normalize(query, dim=1)
    logits = q @ all_keys.T / tau  # (B, N): this process's queries against every process's keys
    labels = torch.arange(q.shape[0], device=q.device) + offset  # each query's key is its own global row
    return 2 * tau * F.cross_entropy(logits, labels)


def moco_v3_contrastive(query: torch.Tensor, key: torch.Tensor, tau: float = 0.2) -> torch.Tensor:
    """MoCo v3's ``ctr(q, k)``: InfoNCE of each query against the keys of the whole global batch, scaled by
    ``2 tau``.

    Chen, Xie & He 2021, "An Empirical Study of Training Self-Supervised Vision Transformers", eq. (1) and
    Algorithm 1: ``logits = q @ k.T`` over the N images of the global batch (N = B x processes), labels the
    diagonal, ``2 * tau * CrossEntropyLoss(logits / tau, labels)``. The keys are gathered from every process
    (:func:`hfssl.distributed.gather_with_offset`), so a query's positive is the key at its global row (its
    local row plus this process's offset) and its negatives the other N - 1 keys. Queries and keys are
    L2-normalised here; the keys are stop-gradients (detached; they come from the momentum encoder).

    Args:
        query: (B, C) queries q (predictor outputs) on this process.
        key: (B, C) keys k of the other view of the same B images (momentum encoder).
        tau: softmax temperature (paper: 0.2 for ViTs; 1.0 in their ResNet-50 code).

    Returns:
        Scalar: ``2 tau`` times the mean cross entropy over this process's B queries. Under DDP (gradient
        averaging of equal per-process batches) the update equals the one for the mean over the global batch.
    """
    _check_pair("moco_v3_contrastive", query, key)
    all_keys, offset = gather_with_offset(F.normalize(key.detach(), dim=1))
    return _moco_v3_ctr(query, all_keys, offset, tau)


def moco_v3_loss(
    q1: torch.Tensor, q2: torch.Tensor, k1: torch.Tensor, k2: torch.Tensor, tau: float = 0.2
) -> torch.Tensor:
    """MoCo v3's symmetrised loss ``ctr(q1, k2) + ctr(q2, k1)`` (Chen, Xie & He 2021, Algorithm 1; see
    :func:`moco_v3_contrastive`), with one gather for both views' keys.

    Args:
        q1, q2: (B, C) queries of views 1 and 2 (predictions of the online encoder).
        k1, k2: (B, C) keys of views 1 and 2 (momentum encoder; detached inside).
        tau: softmax temperature.

    Returns:
        Scalar >= 0.
    """
    for query, key in ((q1, k2), (q2, k1)):
        _check_pair("moco_v3_loss", query, key)
    dim = k1.shape[1]
    keys = torch.cat([F.normalize(k1.detach(), dim=1), F.normalize(k2.detach(), dim=1)], dim=1)  # (B, 2C)
    all_keys, offset = gather_with_offset(keys)  # (N, 2C): one size exchange and all-gather for both views
    all_k1, all_k2 = all_keys.split(dim, dim=1)
    return _moco_v3_ctr(q1, all_k2, offset, tau) + _moco_v3_ctr(q2, all_k1, offset, tau)


def _check_pair(name: str, prediction: torch.Tensor, target: torch.Tensor) -> None:
    if prediction.shape != target.shape or prediction.dim() != 2:
        raise ValueError(
            f"{name} expects two (B, D) tensors of equal shape, got {tuple(prediction.shape)} and {tuple(target.shape)}"
        )


def dino_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    center: torch.Tensor,
    teacher_temperature: float,
    student_temperature: float = 0.1,
) -> torch.Tensor:
    """DINO's self-distillation loss (Caron et al. 2021, "Emerging Properties in Self-Supervised Vision
    Transformers", eq. (2)-(3) and Algorithm 1; their ``DINOLoss``).

    The teacher's targets are its centred, sharpened softmax ``P_t = softmax((t - c) / tau_t)`` of each global
    crop (no gradient); the student's predictions its softmax ``P_s = softmax(s / tau_s)`` of every crop. The
    loss is the cross-entropy ``H(P_t, P_s) = - sum_k P_t[k] log P_s[k]`` of every (teacher crop g, student crop
    v) pair with ``v != g`` (a global crop is not matched with itself), averaged over the batch and then over
    the ``G V - G`` pairs.

    No sample meets another (the centre, the one cross-sample quantity, is a constant here: the model updates
    it after the step from all-reduced batch means), so under data parallelism the mean of the per-process
    losses, and DDP's average of their gradients, are those of the concatenated batch.

    Args:
        student_logits: (V, B, K) the student's head outputs of the V crops of B images, the G global crops
            first, in the teacher's order.
        teacher_logits: (G, B, K) the teacher's head outputs of the G global crops (detached here).
        center: (K,) the centre c (detached here).
        teacher_temperature: tau_t (paper: 0.04 warming up to 0.07).
        student_temperature: tau_s (paper: 0.1).

    Returns:
        Scalar >= 0 (``log K`` for a uniform student): the mean over the pairs of the mean over the batch of
        ``H(P_t, P_s)``, computed in float32.
    """
    if student_logits.dim() != 3 or teacher_logits.dim() != 3:
        raise ValueError(
            "dino_loss expects student logits (V, B, K) and teacher logits (G, B, K), got "
            f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}."
        )
    num_views, batch_size, dim = student_logits.shape
    num_global = teacher_logits.shape[0]
    if teacher_logits.shape[1:] != (batch_size, dim) or center.shape != (dim,) or not 1 <= num_global <= num_views:
        raise ValueError(
            f"dino_loss needs teacher logits (G, B, K) with 1 <= G <= V and a centre (K,) matching student logits "
            f"(V, B, K) = {tuple(student_logits.shape)}; got {tuple(teacher_logits.shape)} and {tuple(center.shape)}."
        )
    if num_views == 1:
        raise ValueError("dino_loss needs at least 2 crops: a crop is never matched with itself.")
    targets = F.softmax((teacher_logits.detach().float() - center.detach().float()) / teacher_temperature, dim=-1)
    log_predictions = F.log_softmax(student_logits.float() / student_temperature, dim=-1)
    # cross_entropy[g, v] = mean_b H(P_t(global crop g), P_s(crop v))
    cross_entropy = -torch.einsum("gbk,vbk->gv", targets, log_predictions) / batch_size
    other_crop = ~torch.eye(num_global, num_views, dtype=torch.bool, device=cross_entropy.device)
    return cross_entropy[other_crop].mean()


# Barlow Twins and VICReg read statistics of the whole global batch (means, variances, a cross-correlation, a
# covariance). Each is a sum of rows divided by a row count, both all-reduced, the sum with gradients
# (:func:`hfssl.distributed.all_reduce_sum`): every process computes the loss of the concatenated batch, unequal
# per-process batches included, and DDP's averaging of the per-process gradients gives that loss's gradient.


def _at_least_float32(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` in float32, or in its own dtype when that is wider (float64 stays float64)."""
    return tensor.to(torch.promote_types(tensor.dtype, torch.float32))


def _global_row_count(rows: torch.Tensor) -> torch.Tensor:
    """N, the rows of ``rows`` (B, ...) summed over processes, as a float scalar."""
    return all_reduce_sum(rows.new_tensor(float(rows.shape[0])))


def _global_mean(rows: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """(D,) mean over the global batch of ``rows`` (B, D), differentiable."""
    return all_reduce_sum(rows.sum(0), differentiable=True) / count


def off_diagonal(matrix: torch.Tensor) -> torch.Tensor:
    """The D (D - 1) off-diagonal entries of a square (D, D) matrix, flattened."""
    dim = matrix.shape[0]
    if matrix.dim() != 2 or matrix.shape[1] != dim:
        raise ValueError(f"off_diagonal expects a square matrix, got shape {tuple(matrix.shape)}.")
    return matrix.flatten()[:-1].view(dim - 1, dim + 1)[:, 1:].flatten()


def batch_standardize(z: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Batch normalisation without affine parameters over the **global** batch: ``(z - mean) / sqrt(var + eps)``
    per dimension, with the biased variance (as ``nn.BatchNorm1d(affine=False)`` in training, and as Barlow
    Twins' ``bn`` under SyncBatchNorm). Mean and variance are all-reduced with gradients.

    Args:
        z: (B, D) this process's embeddings.
        eps: added to the variance (BatchNorm's 1e-5).

    Returns:
        (B, D): standardised with the statistics of the N rows of every process.
    """
    count = _global_row_count(z)
    mean = _global_mean(z, count)
    variance = _global_mean((z - mean).pow(2), count)
    return (z - mean) / torch.sqrt(variance + eps)


def cross_correlation(z1: torch.Tensor, z2: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Barlow Twins' cross-correlation matrix ``C_ij = sum_b z1n_bi z2n_bj / N`` of the two views' embeddings,
    each standardised over the global batch (:func:`batch_standardize`); the sum runs over the N rows of every
    process (Zbontar et al. 2021, eq. 2).

    Args:
        z1, z2: (B, D) embeddings of the two views of this process's B images.

    Returns:
        (D, D), entries in [-1, 1] (up to ``eps``), the same on every process; float32 or wider.
    """
    _check_pair("cross_correlation", z1, z2)
    count = _global_row_count(z1)
    z1, z2 = batch_standardize(_at_least_float32(z1), eps), batch_standardize(_at_least_float32(z2), eps)
    return all_reduce_sum(z1.T @ z2, differentiable=True) / count


def barlow_twins_loss(
    z1: torch.Tensor, z2: torch.Tensor, off_diagonal_weight: float = 5e-3, eps: float = 1e-5
) -> torch.Tensor:
    """Barlow Twins' redundancy-reduction loss (Zbontar et al. 2021, "Barlow Twins: Self-Supervised Learning via
    Redundancy Reduction", eq. 1 and Algorithm 1)::

        L = sum_i (1 - C_ii)^2 + lambda sum_i sum_{j != i} C_ij^2

    with C the cross-correlation of the two views' batch-standardised embeddings over the global batch
    (:func:`cross_correlation`): the invariance term pulls the diagonal to 1, the redundancy-reduction term
    the off-diagonal to 0.

    Args:
        z1, z2: (B, D) projector outputs of the two views (standardised here, over every process's rows).
        off_diagonal_weight: lambda (paper: 5e-3; ``1 / D`` balances the two terms at any width, Tsai et al.
            2021, "A Note on Connecting Barlow Twins with Negative-Sample-Free Contrastive Learning").
        eps: added to the variance of the standardisation.

    Returns:
        Scalar >= 0 (0 only for C = I), the same on every process; in float32 or wider.
    """
    c = cross_correlation(z1, z2, eps)
    on_diagonal = (1 - torch.diagonal(c)).pow(2).sum()
    return on_diagonal + off_diagonal_weight * off_diagonal(c).pow(2).sum()


class VICRegTerms(NamedTuple):
    """VICReg's three terms (scalars), before their weights: ``invariance`` s(Z, Z'), ``variance`` the mean of
    v(Z) and v(Z'), ``covariance`` c(Z) + c(Z')."""

    invariance: torch.Tensor
    variance: torch.Tensor
    covariance: torch.Tensor


def vicreg_terms(z1: torch.Tensor, z2: torch.Tensor, variance_target: float = 1.0, eps: float = 1e-4) -> VICRegTerms:
    """The three terms of VICReg (Bardes et al. 2022, "VICReg: Variance-Invariance-Covariance Regularization for
    Self-Supervised Learning", sec. 3.1-3.2), as in the authors' code (``vicreg/main_vicreg.py``), over the
    global batch of N rows:

    * invariance ``s(Z, Z') = mean_{b, d} (z_bd - z'_bd)^2`` (``F.mse_loss``);
    * variance ``v(Z) = mean_d max(0, gamma - sqrt(Var(z_d) + eps))`` with the unbiased variance over the batch,
      averaged over the two views;
    * covariance ``c(Z) = sum_{i != j} C(Z)_ij^2 / D`` with ``C(Z) = sum_b (z_b - mean)(z_b - mean)^T / (N - 1)``,
      summed over the two views.

    Means, variances and covariances are all-reduced sums with gradients: every process gets the terms of the
    concatenated batch.

    Args:
        z1, z2: (B, D) expander outputs of the two views on this process (N >= 2 rows over all processes).
        variance_target: gamma, the standard deviation the hinge asks of each dimension (paper: 1).
        eps: added to the variance before its square root (paper: 1e-4), against vanishing gradients at 0.

    Returns:
        :class:`VICRegTerms`, scalars in float32 or wider, the same on every process.
    """
    _check_pair("vicreg_terms", z1, z2)
    z1, z2 = _at_least_float32(z1), _at_least_float32(z2)
    count = _global_row_count(z1)
    if count < 2:
        raise ValueError("VICReg's variance and covariance need at least 2 images in the global batch.")
    dim = z1.shape[1]
    invariance = all_reduce_sum((z1 - z2).pow(2).sum(), differentiable=True) / (count * dim)
    variance, covariance = z1.new_zeros(()), z1.new_zeros(())
    for z in (z1, z2):
        centred = z - _global_mean(z, count)
        cov = all_reduce_sum(centred.T @ centred, differentiable=True) / (count - 1)  # (D, D)
        std = torch.sqrt(torch.diagonal(cov) + eps)
        variance = variance + F.relu(variance_target - std).mean() / 2
        covariance = covariance + off_diagonal(cov).pow(2).sum() / dim
    return VICRegTerms(invariance, variance, covariance)


def vicreg_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    invariance_weight: float = 25.0,
    variance_weight: float = 25.0,
    covariance_weight: float = 1.0,
    variance_target: float = 1.0,
    eps: float = 1e-4,
) -> torch.Tensor:
    """VICReg's loss ``lambda s(Z, Z') + mu (v(Z) + v(Z')) / 2 + nu (c(Z) + c(Z'))`` (Bardes et al. 2022, eq. 6,
    with the authors' code's mean of the two variance terms; see :func:`vicreg_terms`).

    Args:
        z1, z2: (B, D) expander outputs of the two views.
        invariance_weight, variance_weight, covariance_weight: lambda, mu, nu (paper: 25, 25, 1).
        variance_target, eps: gamma and epsilon of the variance term (paper: 1 and 1e-4).

    Returns:
        Scalar >= 0, the same on every process; in float32 or wider.
    """
    terms = vicreg_terms(z1, z2, variance_target, eps)
    return (
        invariance_weight * terms.invariance + variance_weight * terms.variance + covariance_weight * terms.covariance
    )


def _log_total_over_samples(log_q: torch.Tensor, dim: int | None) -> torch.Tensor:
    """``log sum exp(log_q)`` over the samples of every process: along ``dim`` (keeping it), or over every entry
    (``dim`` None). The peak is all-reduced first, so no term overflows and the largest is exp(0)."""
    peak = log_q.amax() if dim is None else log_q.amax(dim=dim, keepdim=True)
    peak = all_reduce_max(peak)
    terms = torch.exp(log_q - peak)
    total = all_reduce_sum(terms.sum() if dim is None else terms.sum(dim=dim, keepdim=True))
    return peak + total.log()


@torch.no_grad()
def sinkhorn_knopp(scores: torch.Tensor, epsilon: float = 0.05, iterations: int = 3) -> torch.Tensor:
    """SwAV's equipartitioned soft assignment of samples to prototypes (Caron et al. 2020, "Unsupervised Learning
    of Visual Features by Contrasting Cluster Assignments", sec. 3.1 and Algorithm 1; their
    ``distributed_sinkhorn``), over the **global** batch.

    ``Q = exp(scores / epsilon)`` read as a (K, N) transport plan over the K prototypes and the N samples of every
    process is scaled to total mass 1, then ``iterations`` times: each prototype's row to mass 1/K (sums over
    samples all-reduced), each sample's column to mass 1/N (columns are local). The result is scaled by N so that
    every sample's assignment sums to 1. The same steps as SwAV's code, in the log domain (log-sum-exps with
    all-reduced peaks), so that no ``epsilon`` overflows ``exp`` or underflows a whole sample to 0. No gradient.

    Args:
        scores: (B, K) this process's scores z^T c_k (queued rows included, see
            :class:`hfssl.models.swav.SwAVModel`).
        epsilon: the entropy regularisation (paper: 0.05); smaller is sharper.
        iterations: Sinkhorn-Knopp iterations (paper: 3).

    Returns:
        (B, K) codes in float32 (or wider), rows summing to 1; over the global batch each prototype's column sums
        to about N / K (exactly after enough iterations).
    """
    if scores.dim() != 2 or scores.shape[0] == 0:
        raise ValueError(f"sinkhorn_knopp expects (B, K) scores with B >= 1, got shape {tuple(scores.shape)}.")
    log_q = _at_least_float32(scores.detach()).T / epsilon  # (K, B)
    num_prototypes = log_q.shape[0]
    log_count = _global_row_count(scores).log()
    log_q = log_q - _log_total_over_samples(log_q, None)
    for _ in range(iterations):
        log_q = log_q - _log_total_over_samples(log_q, dim=1) - math.log(num_prototypes)  # prototypes: mass 1/K
        log_q = log_q - torch.logsumexp(log_q, dim=0, keepdim=True) - log_count  # samples: mass 1/N
    return torch.exp(log_q + log_count).T


def swav_loss(scores: torch.Tensor, codes: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """SwAV's swapped prediction (Caron et al. 2020, eq. 1-2 and their ``main_swav.py``): the code q of each
    assigned crop g (a global crop) is predicted from every other crop v's scores,
    ``l(z_v, q_g) = - sum_k q_gk log softmax(z_v^T c / tau)_k``, averaged over the batch, then over the
    ``G V - G`` pairs (v != g).

    Each sample meets only its own crops (the codes, the one cross-sample quantity, are constants computed
    beforehand over the global batch), so DDP's average of the per-process losses is that of the concatenated
    batch.

    Args:
        scores: (V, B, K) prototype scores of the V crops of B images, the G assigned crops first.
        codes: (G, B, K) the Sinkhorn codes of the G assigned crops (detached here), rows summing to 1.
        temperature: tau (paper: 0.1).

    Returns:
        Scalar >= 0; in float32 or wider.
    """
    if scores.dim() != 3 or codes.dim() != 3 or codes.shape[1:] != scores.shape[1:]:
        raise ValueError(
            f"swav_loss expects scores (V, B, K) and codes (G, B, K), got {tuple(scores.shape)} and "
            f"{tuple(codes.shape)}."
        )
    num_views, batch_size, _ = scores.shape
    num_assigned = codes.shape[0]
    if num_views < 2 or not 1 <= num_assigned <= num_views:
        raise ValueError(
            f"swav_loss needs at least 2 crops and 1 <= G <= V assigned ones, got V={num_views}, G={num_assigned}."
        )
    log_predictions = F.log_softmax(_at_least_float32(scores) / temperature, dim=-1)
    codes = codes.detach().to(log_predictions.dtype)
    cross_entropy = -torch.einsum("gbk,vbk->gv", codes, log_predictions) / batch_size
    other_crop = ~torch.eye(num_assigned, num_views, dtype=torch.bool, device=cross_entropy.device)
    return cross_entropy[other_crop].mean()


def masked_patch_mse(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MAE's reconstruction loss (He et al. 2022, sec. 3, "Reconstruction target"): the mean squared error
    per patch, averaged over the masked patches only.

    Every image hides the same number of patches, so with equal per-process batches DDP's average of the
    per-process losses is the loss of the concatenated batch (the loss reads no other sample).

    Args:
        prediction: (B, N, P) predicted pixels of every patch (P = p * p * C).
        target: (B, N, P) the patches' pixels (normalised per patch with ``norm_pix_loss``).
        mask: (B, N), 1 for a masked patch, 0 for a visible one.

    Returns:
        Scalar >= 0; in float32 or wider.
    """
    if prediction.shape != target.shape or prediction.dim() != 3 or mask.shape != prediction.shape[:2]:
        raise ValueError(
            f"masked_patch_mse expects prediction and target (B, N, P) and a mask (B, N), got "
            f"{tuple(prediction.shape)}, {tuple(target.shape)} and {tuple(mask.shape)}."
        )
    per_patch = (_at_least_float32(prediction) - target).pow(2).mean(dim=-1)
    mask = mask.to(per_patch.dtype)
    return (per_patch * mask).sum() / mask.sum()


def clip_loss(
    image_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale: torch.Tensor, local_loss: bool = False
) -> torch.Tensor:
    """CLIP's symmetric InfoNCE between images and their captions.

    Radford et al. 2021, "Learning Transferable Visual Models From Natural Language Supervision", figure 3::

        I_e = l2_normalize(I_f @ W_i); T_e = l2_normalize(T_f @ W_t)
        logits = I_e @ T_e.T * exp(t)
        loss = (cross_entropy(logits, arange(n), axis=0) + cross_entropy(logits, arange(n), axis=1)) / 2

    over the global batch: both embeddings are gathered from every process with gradients (open_clip's
    ``--gather-with-grad``), so every image is scored against every caption of the step.

    Args:
        image_embeds, text_embeds: (B, E) this process's projected image and caption embeddings, row i of one
            paired with row i of the other (normalised here).
        logit_scale: scalar, the multiplier exp(t) of the logits (clamped by the caller).
        local_loss: score only this process's B rows against the N gathered columns, in both directions
            (open_clip's ``--local-loss``): B x N logits instead of N x N per process, the same gradient.

    Returns:
        Scalar. Global: the loss of the N x N logits, the same on every process. Local: this process's rows'
        summed cross entropies times P / (2N), whose mean over the P processes is the global loss. Either way the
        update under DDP (gradient averaging) equals the one for the concatenated batch on one process.
    """
    if image_embeds.shape != text_embeds.shape or image_embeds.dim() != 2:
        raise ValueError(
            "clip_loss expects image and text embeddings of the same shape (B, E), got "
            f"{tuple(image_embeds.shape)} and {tuple(text_embeds.shape)}"
        )
    images = F.normalize(image_embeds, dim=1)
    texts = F.normalize(text_embeds, dim=1)
    dim = images.shape[1]
    # both modalities in one gather: one size exchange, one all-gather, one backward all-reduce
    everything, offset = gather_with_offset(torch.cat([images, texts], dim=1))
    all_images, all_texts = everything.split(dim, dim=1)
    if not local_loss:
        logits_per_image = logit_scale * all_images @ all_texts.T  # (N, N)
        labels = torch.arange(logits_per_image.shape[0], device=images.device)
        return (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_image.T, labels)) / 2
    labels = torch.arange(images.shape[0], device=images.device) + offset  # each row's pair is its global row
    image_to_text = F.cross_entropy(logit_scale * images @ all_texts.T, labels, reduction="sum")  # (B, N) logits
    text_to_image = F.cross_entropy(logit_scale * texts @ all_images.T, labels, reduction="sum")
    return (image_to_text + text_to_image) * world_size() / (2 * everything.shape[0])


def cpc_info_nce(
    predictions: torch.Tensor, positive_index: torch.Tensor, keys: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """CPC's InfoNCE (van den Oord et al. 2018, eq. 4; Henaff et al. 2020, eq. 3 for images): each prediction
    ``z_hat`` of a future patch embedding is scored by the dot product ``z_hat . z`` against every patch embedding
    ``z`` of the global batch (other places and other images are its negatives), and the cross entropy picks the
    true future patch.

    Keys are gathered from every process with gradients (:func:`hfssl.distributed.gather_with_offset`), so each
    process scores its predictions against the global batch's patches; DDP's average of the processes' losses is
    the loss of the concatenated batch.

    Args:
        predictions: (N, D) this process's predictions.
        positive_index: (N,) the row of each prediction's true patch among this process's ``keys``.
        keys: (M, D) this process's patch embeddings.

    Returns:
        ``(loss, accuracy)``: the mean cross entropy over the N predictions, and the share whose true patch scores
        highest.
    """
    if predictions.dim() != 2 or keys.dim() != 2 or predictions.shape[1] != keys.shape[1]:
        raise ValueError(
            f"cpc_info_nce expects predictions (N, D) and keys (M, D), got {tuple(predictions.shape)} and "
            f"{tuple(keys.shape)}."
        )
    gathered, offset = gather_with_offset(keys)
    logits = predictions.float() @ gathered.float().T  # (N, M_global)
    labels = positive_index + offset
    loss = F.cross_entropy(logits, labels)
    accuracy = (logits.argmax(dim=1) == labels).float().mean()
    return loss, accuracy
