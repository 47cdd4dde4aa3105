"""Collective operations that keep the autograd graph, for losses that read other samples.

Every loss in :mod:`hfssl.losses` that needs samples from other processes (InfoNCE negatives,
batch statistics, centres, queues) goes through these functions. At world size 1 (or without an
initialised process group) they are identities, so the same code runs on one CPU and on many GPUs.

Which loss takes what:

* :func:`gather_with_offset`: losses that score this process's rows against every process's rows
  and need the index of their own rows among them (SimCLR's NT-Xent, CLIP's image-text logits).
* :func:`gather`: the same without the offset (MoCo's queue keys, gathered without gradient, and
  VICReg's variance and covariance when computed on the gathered embeddings).
* :func:`all_reduce_sum` with ``differentiable=True``: sums that the loss differentiates (Barlow
  Twins' cross-correlation ``z1.T @ z2`` summed over processes); without gradient: SwAV's Sinkhorn
  row and column sums, counts.
* :func:`all_reduce_mean` with ``differentiable=True``: batch statistics that the loss
  differentiates (VICReg's covariance and variance, Barlow Twins' batch normalisation of the
  embeddings); without gradient: DINO's centre, metrics.

Gradients under DDP. Process p's loss ``L_p`` reads every process's rows through a collective,
but p's autograd graph reaches only p's own inputs ``x_p``. The backward of every differentiable
collective here therefore sums the incoming gradient over processes, so that process p obtains
``d(sum_q L_q) / d x_p``. DDP then averages the parameter gradients over the P processes, which
gives the gradient of ``(1 / P) sum_q L_q``: the loss on the concatenated global batch whenever
the per-process losses average to it (NT-Xent's mean over p's anchors, with equal per-process
batches) or all equal it (a loss of all-reduced statistics, as Barlow Twins). The backward must run on every
process, since it is a collective itself.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """True when a process group with more than one process is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


class _GatherWithGradient(torch.autograd.Function):
    """All-gather along dim 0 whose backward sends each process the gradient of its own slice.

    Rows may differ in number between processes (``sizes``, one per rank). The backward all-reduces
    (sums) the gradient of the gathered tensor, because every process's loss reads every slice,
    then returns this process's rows (see the module docstring for why the sum is right under DDP).
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, sizes: list[int]) -> torch.Tensor:
        ctx.sizes = sizes
        ctx.rank = dist.get_rank()
        padded = tensor.new_zeros((max(sizes),) + tuple(tensor.shape[1:]))
        padded[: tensor.shape[0]] = tensor
        buffers = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(buffers, padded.contiguous())
        return torch.cat([buffer[:size] for buffer, size in zip(buffers, sizes)], dim=0)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        grad = grad_output.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]], None


def _gather_sizes(local_size: int, device: torch.device) -> list[int]:
    size = torch.tensor([local_size], device=device, dtype=torch.long)
    sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, size)
    return [int(s.item()) for s in sizes]


def gather_with_offset(tensor: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Concatenate ``tensor`` (N_local, ...) from every process in rank order, with this process's offset.

    N_local may differ between processes; one all-gather of the row counts serves both the
    padding of the gather and the offset.

    Returns:
        ``(gathered, offset)``: ``gathered`` is (N_total, ...), differentiable (each process gets
        the summed gradient of its own rows, see the module docstring), and
        ``gathered[offset : offset + N_local]`` are this process's rows. ``(tensor, 0)`` at world
        size 1.
    """
    if not is_distributed():
        return tensor, 0
    sizes = _gather_sizes(tensor.shape[0], tensor.device)
    return _GatherWithGradient.apply(tensor, sizes), sum(sizes[: dist.get_rank()])


def gather(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` (N_local, ...) from every process in rank order -> (N_total, ...).

    :func:`gather_with_offset` without the offset. Differentiable: gradients flow back to the
    process that owns each row. Identity at world size 1.
    """
    return gather_with_offset(tensor)[0]


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes whose backward is the same sum of the incoming gradient.

    The sum is self-adjoint, so the backward applies this function again. Returning
    ``grad_output`` unchanged instead would give each process only its own loss's gradient, and
    DDP's averaging would then divide the global-batch gradient by the world size (see
    :func:`all_reduce_sum`).
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        reduced = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
        return reduced

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:
        return _AllReduceSum.apply(grad_output)


def all_reduce_sum(tensor: torch.Tensor, differentiable: bool = False) -> torch.Tensor:
    """Element-wise sum of ``tensor`` (any shape, the same on every process) over processes.

    Args:
        tensor: this process's term, e.g. Barlow Twins' local ``z1.T @ z2`` (D, D) or SwAV's
            Sinkhorn row sums (K,).
        differentiable: ``False``: the result is detached (no gradient, at every world size).
            ``True``: the forward is the sum over processes and the backward all-reduces (sums)
            the incoming gradient over processes. Process p then gets ``d(sum_q L_q) / d x_p``,
            and DDP's averaging makes the parameter gradient that of ``(1 / P) sum_q L_q``: for
            a loss that every process computes alike from the summed statistic, e.g.
            ``L(all_reduce_sum(z1.T @ z2, True) / N_global)``, exactly the gradient of that loss on
            the concatenated global batch. A backward that returned the incoming gradient
            unchanged (the error of lightly's distributed Barlow Twins loss) gives each process
            only the partial derivative of its own loss: through one collective the update is then
            exactly 1 / P times too small, through nested ones (a cross-correlation of embeddings
            standardised with all-reduced statistics) its direction is wrong as well.

    Returns:
        Same shape as ``tensor``. At world size 1: ``tensor`` itself (``tensor.detach()`` when not
        differentiable).
    """
    if not differentiable:
        return _reduced_copy(tensor, dist.ReduceOp.SUM)
    if not is_distributed():
        return tensor
    return _AllReduceSum.apply(tensor)


def all_reduce_mean(tensor: torch.Tensor, differentiable: bool = False) -> torch.Tensor:
    """Element-wise mean of ``tensor`` (any shape, the same on every process) over processes.

    :func:`all_reduce_sum` divided by the world size P. With ``differentiable=True`` the backward
    all-reduces the incoming gradient and divides it by P, so that under DDP the parameter
    gradient is that of the loss on the concatenated global batch (as for :func:`all_reduce_sum`),
    e.g. for VICReg's covariance ``all_reduce_mean(zc.T @ zc / N_local, True)`` with equal
    per-process batches, or for DINO's centre ``all_reduce_mean(teacher.mean(0))`` without gradient.
    Note that a mean of per-process means is the global mean only when every process has the same
    number of rows; otherwise sum the rows and the counts with :func:`all_reduce_sum`.

    Returns:
        Same shape as ``tensor`` (a floating tensor for integer input at world size > 1). At world
        size 1: ``tensor`` itself (``tensor.detach()`` when not differentiable).
    """
    if not is_distributed():
        return tensor if differentiable else tensor.detach()
    return all_reduce_sum(tensor, differentiable) / dist.get_world_size()


def broadcast_(tensor: torch.Tensor, source: int = 0) -> torch.Tensor:
    """``tensor`` overwritten in place by process ``source``'s (without gradient); unchanged at world size 1. Returns
    ``tensor``."""
    if is_distributed():
        with torch.no_grad():
            dist.broadcast(tensor, src=source)
    return tensor


def all_reduce_max(tensor: torch.Tensor) -> torch.Tensor:
    """Element-wise maximum of ``tensor`` over processes, without gradient (the peaks of SwAV's log-domain
    Sinkhorn-Knopp). ``tensor.detach()`` at world size 1."""
    return _reduced_copy(tensor, dist.ReduceOp.MAX)


def _reduced_copy(tensor: torch.Tensor, op) -> torch.Tensor:
    """A detached copy of ``tensor`` all-reduced with ``op`` (``tensor.detach()`` itself at world size 1)."""
    tensor = tensor.detach()
    if not is_distributed():
        return tensor
    reduced = tensor.clone()
    dist.all_reduce(reduced, op=op)
    return reduced
