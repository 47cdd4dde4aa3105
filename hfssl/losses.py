"""Self-supervised losses as pure functions.

Each function documents its shapes and cites its paper. Losses that read other samples take
their negatives or statistics from every process through :mod:`hfssl.distributed`, so the
result under data parallelism equals the result on the concatenated batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .distributed import gather_with_offset


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
