"""Collective operations that keep the autograd graph, for losses that read other samples.

Every loss in :mod:`hfssl.losses` that needs samples from other processes (InfoNCE negatives,
batch statistics, centres, queues) goes through these functions. At world size 1 (or without an
initialised process group) they are identities, so the same code runs on one CPU and on many GPUs.
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

    Rows may differ in number between processes. The backward all-reduces (sums) the gradient of
    the gathered tensor, because every process's loss reads every slice, then returns this
    process's rows. With DDP's gradient averaging this gives exactly the gradient of the mean of
    the per-process losses (see ``tests/test_distributed.py``).
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        sizes = _gather_sizes(tensor.shape[0], tensor.device)
        ctx.sizes = sizes
        ctx.rank = dist.get_rank()
        padded = tensor.new_zeros((max(sizes),) + tuple(tensor.shape[1:]))
        padded[: tensor.shape[0]] = tensor
        buffers = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(buffers, padded.contiguous())
        return torch.cat([buffer[:size] for buffer, size in zip(buffers, sizes)], dim=0)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:
        grad = grad_output.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]]


def _gather_sizes(local_size: int, device: torch.device) -> list[int]:
    size = torch.tensor([local_size], device=device, dtype=torch.long)
    sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, size)
    return [int(s.item()) for s in sizes]


def gather(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` (N_local, ...) from every process in rank order -> (N_total, ...).

    Differentiable: gradients flow back to the process that owns each row. Identity at world
    size 1.
    """
    if not is_distributed():
        return tensor
    return _GatherWithGradient.apply(tensor)


def global_row_offset(local_size: int, device: torch.device | None = None) -> int:
    """Index of this process's first row in :func:`gather`'s output (0 at world size 1)."""
    if not is_distributed():
        return 0
    sizes = _gather_sizes(local_size, device or torch.device("cpu"))
    return sum(sizes[: dist.get_rank()])


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Mean of ``tensor`` over processes (no gradient); identity at world size 1."""
    if not is_distributed():
        return tensor
    reduced = tensor.detach().clone()
    dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
    return reduced / dist.get_world_size()
