"""Ring buffers of past embeddings kept as model buffers (MoCo's queue of keys, SwAV's queue of embeddings).

A queue is a ``(K, ...)`` buffer with a ``pointer`` (a 0-d long buffer: where the next row goes) and, optionally,
a ``filled`` count (a 0-d long buffer: how many rows hold real entries, at most K). Both are persistent buffers,
so checkpoints carry them and a resumed run continues with the queue the interrupted one had.
"""

from __future__ import annotations

import torch


@torch.no_grad()
def enqueue(
    queue: torch.Tensor, pointer: torch.Tensor, rows: torch.Tensor, filled: torch.Tensor | None = None
) -> None:
    """Write ``rows`` (N, ...) over the oldest entries of ``queue`` (K, ...), in order, in place.

    Positions wrap around the end, so K need not be a multiple of N; when N > K only the newest K rows are kept.
    A row with a non-finite value (a diverging step that ``--nan_policy skip`` drops) keeps the slot's old entry
    instead of poisoning every later loss that reads the queue. ``pointer`` advances by N (mod K) and ``filled``
    by N (capped at K) either way, so every process keeps the same pointer whatever its rows held.
    """
    size, count = queue.shape[0], rows.shape[0]
    if rows.shape[1:] != queue.shape[1:]:
        raise ValueError(f"enqueue: rows of shape {tuple(rows.shape[1:])} do not fit a queue of {tuple(queue.shape)}.")
    rows = rows.to(queue.dtype)
    start = pointer
    if count > size:  # the earlier rows would be overwritten by the later ones
        start, rows = start + count - size, rows[-size:]
    positions = (start + torch.arange(rows.shape[0], device=queue.device)) % size
    finite = torch.isfinite(rows.flatten(1)).all(dim=1).view(-1, *[1] * (rows.dim() - 1))
    queue[positions] = torch.where(finite, rows, queue[positions])
    pointer.copy_((pointer + count) % size)
    if filled is not None:
        filled.copy_((filled + count).clamp_max(size))
