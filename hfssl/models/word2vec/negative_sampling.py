"""The negative-sampling loss of word2vec with its exact gradients computed in forward, chunk by chunk.

Autograd on ``output_embeddings(targets)`` materialises an (N, 1 + K, D) gather and an equally
large gradient, and the embedding backward then sorts N * (1 + K) indices: with N ~ 100k rows a
step is memory bound (about 0.1 M rows/s on 2 CPU cores). The gradient of this loss has a closed
form, so :class:`FusedNegativeSamplingLoss` computes loss and gradients together over chunks of
``chunk_size`` rows whose gathers stay in cache, and accumulates the gradients of both weight
matrices with ``index_add_`` (no sort). Backward only scales the stored gradients. The values are
those of autograd on :func:`negative_sampling_loss` (tested), several times faster (measured in
``benchmarks/word2vec_vs_gensim.py``).

Notation: for row i, ``h_i`` is the input-side vector (one context word's input vector for
skip-gram; the mean or sum of the context words' input vectors for CBOW), ``u`` the output
vectors, ``s_i0 = u_{center_i} . h_i`` and ``s_ik = u_{negative_ik} . h_i``:

    loss = sum_i [ -log sigmoid(s_i0) - sum_k valid_ik * log sigmoid(-s_ik) ]
    d loss / d s_i0 = sigmoid(s_i0) - 1,    d loss / d s_ik = valid_ik * sigmoid(s_ik)

where ``valid_ik`` is 0 when the negative equals the center word (gensim skips those draws).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def context_vectors(
    input_weight: torch.Tensor,
    context_ids: torch.Tensor,
    context_mask: torch.Tensor | None,
    cbow_mean: bool,
    sparse: bool = False,
) -> torch.Tensor:
    """h for each row: (N,) context ids -> (N, D) (skip-gram), or (N, C) ids + mask -> (N, D) (CBOW)."""
    vectors = F.embedding(context_ids, input_weight, sparse=sparse)
    if context_mask is None:
        return vectors
    mask = context_mask.to(input_weight.dtype)[:, :, None]
    total = (vectors * mask).sum(1)
    if not cbow_mean:
        return total
    count = mask.sum(1).clamp_min(1)
    # The mean's value with the sum's gradient: every context vector gets the full error (word2vec.c).
    return total - (total - total / count).detach()


def negative_sampling_loss(
    input_weight: torch.Tensor,
    output_weight: torch.Tensor,
    center_ids: torch.Tensor,
    context_ids: torch.Tensor,
    context_mask: torch.Tensor | None,
    negative_ids: torch.Tensor,
    cbow_mean: bool = True,
    sparse: bool = False,
    shared_negatives: bool = False,
) -> torch.Tensor:
    """Reference implementation through autograd (the formula of the module docstring). Shapes:
    weights (V, D); ``center_ids`` (N,); ``context_ids`` (N,) or (N, C) with ``context_mask`` (N, C);
    ``negative_ids`` (N, K). Returns the scalar loss summed over rows. ``sparse`` gives the weights
    sparse gradients (rows touched only), which plain SGD accepts.

    ``shared_negatives``: skip-gram over windows: row i holds a center and its C context slots,
    each real context word makes a (context, center) pair, and the pairs of a row share its K
    negatives (Ji et al. 2016, "Parallelizing Word2Vec in Shared and Distributed Memory")."""
    if shared_negatives:
        targets = torch.cat([center_ids[:, None], negative_ids], dim=1)
        scores = torch.bmm(
            F.embedding(context_ids, input_weight, sparse=sparse),
            F.embedding(targets, output_weight, sparse=sparse).transpose(1, 2),
        )
        mask = context_mask.to(scores.dtype)  # (N, C); scores (N, C, 1 + K)
        valid = (negative_ids != center_ids[:, None]).to(scores.dtype)
        return (
            -(F.logsigmoid(scores[:, :, 0]) * mask).sum()
            - (F.logsigmoid(-scores[:, :, 1:]) * mask[:, :, None] * valid[:, None, :]).sum()
        )
    h = context_vectors(input_weight, context_ids, context_mask, cbow_mean, sparse)  # (N, D)
    targets = F.embedding(
        torch.cat([center_ids[:, None], negative_ids], dim=1), output_weight, sparse=sparse
    )  # (N, 1 + K, D)
    scores = torch.bmm(targets, h[:, :, None]).squeeze(-1)  # (N, 1 + K)
    positive, negative = scores[:, 0], scores[:, 1:]
    valid = (negative_ids != center_ids[:, None]).to(h.dtype)
    return -F.logsigmoid(positive).sum() - (F.logsigmoid(-negative) * valid).sum()


class FusedNegativeSamplingLoss(torch.autograd.Function):
    """:func:`negative_sampling_loss` with its gradients computed in forward over chunks of rows;
    the gradients are dense (V, D).

    With ``step_size = 0`` the gradient is the exact gradient of the loss. With ``step_size =
    alpha > 0`` every chunk is evaluated at the weights that the SGD steps of the chunks before it
    have left (``w - alpha * gradient so far``), so that the optimizer's one step
    ``w -= alpha * gradient`` applies the chunks' updates one after the other, as word2vec applies
    its pairs' updates one after the other. Summing the whole batch's gradient at the same
    weights instead diverges once a frequent word collects hundreds of updates in one step.
    The weights are advanced in place during forward and restored before it returns.
    """

    @staticmethod
    def forward(
        ctx,
        input_weight,
        output_weight,
        center_ids,
        context_ids,
        context_mask,
        negative_ids,
        cbow_mean,
        chunk_size,
        step_size,
        shared_negatives,
    ):
        with torch.no_grad():
            if step_size > 0:
                start = (input_weight.clone(), output_weight.clone())
                try:
                    loss = _loss_over_chunks(
                        input_weight,
                        output_weight,
                        center_ids,
                        context_ids,
                        context_mask,
                        negative_ids,
                        cbow_mean,
                        shared_negatives,
                        chunk_size,
                        accumulators=(input_weight, output_weight),
                        scale=-step_size,
                    )
                    grads = tuple(
                        torch.sub(before, after).div_(step_size)
                        for before, after in zip(start, (input_weight, output_weight))
                    )
                finally:
                    input_weight.copy_(start[0])
                    output_weight.copy_(start[1])
            else:
                grads = (torch.zeros_like(input_weight), torch.zeros_like(output_weight))
                loss = _loss_over_chunks(
                    input_weight,
                    output_weight,
                    center_ids,
                    context_ids,
                    context_mask,
                    negative_ids,
                    cbow_mean,
                    shared_negatives,
                    chunk_size,
                    accumulators=grads,
                    scale=1.0,
                )
        ctx.save_for_backward(*grads)
        return loss.to(input_weight.dtype)

    @staticmethod
    def backward(ctx, grad_loss):
        input_grad, output_grad = ctx.saved_tensors
        return input_grad * grad_loss, output_grad * grad_loss, None, None, None, None, None, None, None, None


def _loss_over_chunks(
    input_weight,
    output_weight,
    center_ids,
    context_ids,
    context_mask,
    negative_ids,
    cbow_mean,
    shared_negatives,
    chunk_size,
    accumulators,
    scale,
):
    """Summed loss of all rows; each chunk adds ``scale`` times its gradients into ``accumulators``."""
    loss = torch.zeros((), dtype=torch.float64, device=input_weight.device)
    chunk_loss = _window_chunk_loss_and_grads if shared_negatives else _chunk_loss_and_grads
    extra = () if shared_negatives else (cbow_mean,)
    if shared_negatives:  # a window holds up to C pairs: keep about chunk_size pairs a chunk
        chunk_size = max(1, chunk_size // context_ids.shape[1])
    for start in range(0, center_ids.shape[0], chunk_size):
        rows = slice(start, start + chunk_size)
        mask = None if context_mask is None else context_mask[rows]
        loss += chunk_loss(
            input_weight,
            output_weight,
            center_ids[rows],
            context_ids[rows],
            mask,
            negative_ids[rows],
            *extra,
            *accumulators,
            scale,
        )
    return loss


def _window_chunk_loss_and_grads(
    input_weight, output_weight, center_ids, context_ids, context_mask, negative_ids, input_acc, output_acc, scale
):
    """Skip-gram with the negatives shared by a window's pairs: three small matrix products per chunk."""
    rows, slots = context_mask.nonzero(as_tuple=True)
    words = context_ids[rows, slots]
    h = input_weight.new_zeros(*context_ids.shape, input_weight.shape[1])  # (n, C, D), zero at padding
    h[rows, slots] = input_weight.index_select(0, words)
    targets = torch.cat([center_ids[:, None], negative_ids], dim=1)  # (n, 1 + K)
    u = output_weight.index_select(0, targets.reshape(-1)).view(*targets.shape, -1)  # (n, 1 + K, D)
    scores = torch.bmm(h, u.transpose(1, 2))  # (n, C, 1 + K)
    mask = context_mask.to(scores.dtype)[:, :, None]
    valid = (negative_ids != center_ids[:, None]).to(scores.dtype)[:, None, :]  # (n, 1, K)
    positive, negative = scores[:, :, :1], scores[:, :, 1:]
    loss = -(F.logsigmoid(positive) * mask).sum() - (F.logsigmoid(-negative) * mask * valid).sum()
    score_grad = torch.cat([torch.sigmoid(positive) - 1, torch.sigmoid(negative) * valid], dim=2) * (
        mask * scale
    )  # (n, C, 1 + K)
    output_acc.index_add_(0, targets.reshape(-1), torch.bmm(score_grad.transpose(1, 2), h).reshape(-1, h.shape[2]))
    input_acc.index_add_(0, words, torch.bmm(score_grad, u)[rows, slots])
    return loss.double()


def _chunk_loss_and_grads(
    input_weight,
    output_weight,
    center_ids,
    context_ids,
    context_mask,
    negative_ids,
    cbow_mean,
    input_acc,
    output_acc,
    scale,
):
    """Loss of one chunk of rows; adds ``scale`` times the chunk's gradients into ``input_acc``/``output_acc``."""
    targets = torch.cat([center_ids[:, None], negative_ids], dim=1)  # (n, 1 + K)
    if context_mask is None:
        h = input_weight.index_select(0, context_ids)  # (n, D)
    else:  # gather the real context words only (about half of the padded slots)
        rows, slots = context_mask.nonzero(as_tuple=True)
        words = context_ids[rows, slots]
        h = input_weight.new_zeros(len(center_ids), input_weight.shape[1]).index_add_(
            0, rows, input_weight.index_select(0, words)
        )
        if cbow_mean:
            h /= torch.bincount(rows, minlength=len(center_ids)).clamp_min(1).to(h.dtype)[:, None]
    u = output_weight.index_select(0, targets.reshape(-1)).view(*targets.shape, -1)  # (n, 1 + K, D)
    scores = torch.bmm(u, h[:, :, None]).squeeze(-1)  # (n, 1 + K)
    valid = (negative_ids != center_ids[:, None]).to(scores.dtype)
    positive, negative = scores[:, 0], scores[:, 1:]
    loss = -F.logsigmoid(positive).sum() - (F.logsigmoid(-negative) * valid).sum()
    score_grad = torch.cat(
        [(torch.sigmoid(positive) - 1)[:, None], torch.sigmoid(negative) * valid], dim=1
    )  # (n, 1 + K)
    score_grad *= scale  # scales both gradients below (cheaper than index_add_'s alpha)
    h_grad = torch.bmm(score_grad[:, None, :], u).squeeze(1)  # (n, D)
    output_acc.index_add_(0, targets.reshape(-1), (score_grad[:, :, None] * h[:, None, :]).reshape(-1, h.shape[1]))
    if context_mask is None:
        input_acc.index_add_(0, context_ids, h_grad)
    else:  # every real context word gets the error of its row (not divided by the count: word2vec.c)
        input_acc.index_add_(0, words, h_grad.index_select(0, rows))
    return loss.double()


def fused_negative_sampling_loss(
    input_weight,
    output_weight,
    center_ids,
    context_ids,
    context_mask,
    negative_ids,
    cbow_mean: bool = True,
    chunk_size: int = 2048,
    step_size: float = 0.0,
    shared_negatives: bool = False,
) -> torch.Tensor:
    """:class:`FusedNegativeSamplingLoss` with keyword defaults (arguments as :func:`negative_sampling_loss`)."""
    return FusedNegativeSamplingLoss.apply(
        input_weight,
        output_weight,
        center_ids,
        context_ids,
        context_mask,
        negative_ids,
        cbow_mean,
        chunk_size,
        step_size,
        shared_negatives,
    )
