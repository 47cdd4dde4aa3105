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
