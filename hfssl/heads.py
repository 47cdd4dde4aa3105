"""Heads that sit on top of a backbone's pooled features."""

from __future__ import annotations

from torch import nn


class ProjectionHead(nn.Module):
    """MLP projection head: (Linear -> BatchNorm -> ReLU) x (num_layers - 1) -> Linear.

    The nonlinear projection g(.) of SimCLR (Chen et al. 2020, sec. 2.1 and 4.2, BatchNorm as in
    their released code); the loss is computed on g(h) and the representation h is kept.

    Shapes: (B, input_dim) -> (B, output_dim).
    """

    def __init__(
        self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int = 2, last_batch_norm: bool = False
    ):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"ProjectionHead needs num_layers >= 1, got {num_layers}")
        layers: list[nn.Module] = []
        dim = input_dim
        for _ in range(num_layers - 1):
            layers += [nn.Linear(dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True)]
            dim = hidden_dim
        layers.append(nn.Linear(dim, output_dim, bias=not last_batch_norm))
        if last_batch_norm:
            layers.append(nn.BatchNorm1d(output_dim, affine=False))
        self.layers = nn.Sequential(*layers)

    def forward(self, features):
        return self.layers(features)
