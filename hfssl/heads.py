"""Heads that sit on top of a backbone's pooled features.

One building block, :class:`MLP` (Linear -> BatchNorm -> activation between layers, a bare Linear
at the end), and small named heads built from it, one per concept:

- :class:`ProjectionHead`: SimCLR's projection g(.) (also the projector of MoCo v3, BYOL, VICReg, ...).
- :class:`PredictionHead`: the predictor q(.) of BYOL, SimSiam and MoCo v3.
- :class:`DINOHead`: DINO's MLP, L2-normalised bottleneck and weight-normalised last layer.
- :class:`Prototypes`: SwAV's prototype vectors.

Every head maps (B, input_dim) features to (B, output_dim); BatchNorm layers need B >= 2 in training.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = {"relu": lambda: nn.ReLU(inplace=True), "gelu": nn.GELU}


def _check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}.")


def _widths(input_dim: int, hidden_dim: int, output_dim: int, num_layers: int, head: str) -> list[int]:
    """[input_dim, hidden_dim x (num_layers - 1), output_dim]: the widths of a num_layers-Linear MLP."""
    if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
        raise ValueError(f"{head} needs num_layers >= 1 (the number of Linear layers), got {num_layers!r}.")
    return [input_dim, *[hidden_dim] * (num_layers - 1), output_dim]


class MLP(nn.Sequential):
    """A multilayer perceptron built from its widths.

    ``MLP([d0, d1, ..., dn])`` stacks n Linear layers d_{i-1} -> d_i; every Linear but the last is
    followed by BatchNorm1d (when ``batch_norm``) and the activation. After the last Linear comes
    nothing, or BatchNorm1d when ``last_batch_norm`` (without affine parameters by default, as at
    the output of MoCo v3's and SimSiam's projectors and on Barlow Twins' embeddings). Modules sit flat
    in the sequence, so the state-dict keys are ``0.weight``, ``1.weight`` (BatchNorm), ...

    Args:
        dims: the widths, input first and output last; at least 2 (one Linear).
        batch_norm: BatchNorm1d after each hidden Linear.
        activation: ``"relu"`` or ``"gelu"``, after each hidden Linear (and BatchNorm).
        hidden_bias: bias of the hidden Linear layers; by default only without BatchNorm, whose
            shift makes a bias before it redundant.
        last_bias: bias of the last Linear.
        last_batch_norm: BatchNorm1d after the last Linear.
        last_batch_norm_affine: give that BatchNorm a learnt scale and shift.

    Shapes: (B, dims[0]) -> (B, dims[-1]).
    """

    def __init__(
        self,
        dims: Sequence[int],
        batch_norm: bool = True,
        activation: str = "relu",
        hidden_bias: bool | None = None,
        last_bias: bool = True,
        last_batch_norm: bool = False,
        last_batch_norm_affine: bool = False,
    ):
        dims = list(dims)
        if len(dims) < 2:
            raise ValueError(f"MLP needs at least 2 widths (input and output of one Linear), got {dims}.")
        if any(isinstance(width, bool) or not isinstance(width, int) or width < 1 for width in dims):
            raise ValueError(f"MLP widths must be integers >= 1, got {dims}.")
        if activation not in ACTIVATIONS:
            raise ValueError(f"MLP activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}.")
        if hidden_bias is None:
            hidden_bias = not batch_norm
        layers: list[nn.Module] = []
        for in_dim, out_dim in zip(dims[:-2], dims[1:-1]):
            layers.append(nn.Linear(in_dim, out_dim, bias=hidden_bias))
            if batch_norm:
                layers.append(nn.BatchNorm1d(out_dim))
            layers.append(ACTIVATIONS[activation]())
        layers.append(nn.Linear(dims[-2], dims[-1], bias=last_bias))
        if last_batch_norm:
            layers.append(nn.BatchNorm1d(dims[-1], affine=last_batch_norm_affine))
        super().__init__(*layers)

    def __getitem__(self, index):
        # nn.Sequential slices by calling type(self)(OrderedDict), which this constructor does not take
        if isinstance(index, slice):
            return nn.Sequential(OrderedDict(list(self._modules.items())[index]))
        return super().__getitem__(index)


class ProjectionHead(nn.Module):
    """MLP projection head: (Linear -> BatchNorm -> ReLU) x (num_layers - 1) -> Linear (-> BatchNorm).

    The nonlinear projection g(.) of SimCLR (Chen et al. 2020, "A Simple Framework for Contrastive
    Learning of Visual Representations", sec. 2.1 and 4.2, BatchNorm as in their released code); the
    loss is computed on g(h) and the representation h is kept. Hidden Linear layers have no bias
    (BatchNorm follows); the last has one unless ``last_batch_norm`` adds a BatchNorm without affine
    parameters after it (SimCLR v2, MoCo v3).

    State-dict keys: ``layers.0.weight``, ``layers.1.{weight,bias,running_mean,...}``, ...

    Shapes: (B, input_dim) -> (B, output_dim).
    """

    def __init__(
        self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int = 2, last_batch_norm: bool = False
    ):
        super().__init__()
        self.layers = MLP(
            _widths(input_dim, hidden_dim, output_dim, num_layers, "ProjectionHead"),
            batch_norm=True,
            activation="relu",
            hidden_bias=False,
            last_bias=not last_batch_norm,
            last_batch_norm=last_batch_norm,
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)


class PredictionHead(nn.Module):
    """Predictor MLP: (Linear -> BatchNorm -> ReLU) x (num_layers - 1) -> Linear (-> BatchNorm).

    The predictor q(.) that maps one view's projection onto the other's, as configured in its papers:

    - BYOL (Grill et al. 2020, "Bootstrap Your Own Latent", sec. 3.3):
      ``PredictionHead(256, 4096, 256)``.
    - SimSiam (Chen & He 2021, "Exploring Simple Siamese Representation Learning", sec. 4), a bottleneck:
      ``PredictionHead(2048, 512, 2048)``.
    - MoCo v3 (Chen, Xie & He 2021, "An Empirical Study of Training Self-Supervised Vision
      Transformers", sec. 3 and their code), no bias: ``PredictionHead(256, 4096, 256, last_bias=False)``
      for ResNets, with ``last_batch_norm=True`` (no affine parameters) as well for ViTs.

    Hidden Linear layers have no bias (BatchNorm follows).

    Shapes: (B, input_dim) -> (B, output_dim).
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int,
        output_dim: int,
        num_layers: int = 2,
        last_bias: bool = True,
        last_batch_norm: bool = False,
    ):
        super().__init__()
        self.layers = MLP(
            _widths(input_dim, hidden_dim, output_dim, num_layers, "PredictionHead"),
            batch_norm=True,
            activation="relu",
            hidden_bias=False,
            last_bias=last_bias,
            last_batch_norm=last_batch_norm,
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)


class WeightNormLinear(nn.Module):
    """Linear layer without bias whose weight is g * v / ||v|| row by row (Salimans & Kingma 2016,
    "Weight Normalization").

    ``weight_v`` (out_features, in_features) holds the directions v; ``weight_g`` (out_features, 1)
    the magnitudes g, or is ``None`` when ``trainable_magnitude=False``: then g is fixed to 1 and
    every row of :attr:`weight` has unit norm. The names match ``torch.nn.utils.weight_norm``'s.
    Plain parameters (no parametrization hooks) survive ``copy.deepcopy``, pickling and safetensors.

    Shapes: (B, in_features) -> (B, out_features).
    """

    def __init__(self, in_features: int, out_features: int, trainable_magnitude: bool = True):
        super().__init__()
        _check_positive_int("in_features", in_features)
        _check_positive_int("out_features", out_features)
        self.in_features, self.out_features = in_features, out_features
        self.weight_v = nn.Parameter(torch.empty(out_features, in_features))
        if trainable_magnitude:
            self.weight_g = nn.Parameter(torch.empty(out_features, 1))
        else:
            self.register_parameter("weight_g", None)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """v as ``nn.Linear`` initialises its weight, g = 1."""
        nn.init.kaiming_uniform_(self.weight_v, a=math.sqrt(5))
        if self.weight_g is not None:
            nn.init.ones_(self.weight_g)

    @property
    def weight(self) -> torch.Tensor:
        """The effective (out_features, in_features) weight g * v / ||v||."""
        direction = F.normalize(self.weight_v, dim=1)
        return direction if self.weight_g is None else self.weight_g * direction

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"trainable_magnitude={self.weight_g is not None}"
        )


class DINOHead(nn.Module):
    """DINO's projection head (Caron et al. 2021, "Emerging Properties in Self-Supervised Vision
    Transformers", sec. 3.1 and appendix, and their code).

    An MLP of ``num_layers`` Linear layers with GELU (hidden width ``hidden_dim``, BatchNorm when
    ``batch_norm``, biases everywhere) down to a ``bottleneck_dim`` bottleneck, L2-normalisation, then
    a weight-normalised Linear layer without bias to ``output_dim`` logits. With ``norm_last_layer``
    (the paper's default) the magnitude g of that layer is fixed to 1, so its rows are unit vectors and
    the logits are cosine similarities; otherwise g is learnt, starting at 1. The MLP's Linear weights
    start from a truncated normal with std 0.02 and zero biases, as in DINO.

    The teacher is a ``copy.deepcopy`` of the student's head. During the first epoch DINO freezes
    the last layer: call :meth:`cancel_last_layer_gradients` between ``backward`` and the optimizer step.

    State-dict keys: ``mlp.0.weight``, ... and ``last_layer.weight_v`` (+ ``last_layer.weight_g``
    without ``norm_last_layer``), the names of DINO's released checkpoints.

    Shapes: (B, input_dim) -> (B, output_dim).
    """

    def __init__(
        self,
        input_dim: int,
        output_dim: int = 65536,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        num_layers: int = 3,
        batch_norm: bool = False,
        norm_last_layer: bool = True,
    ):
        super().__init__()
        self.mlp = MLP(
            _widths(input_dim, hidden_dim, bottleneck_dim, num_layers, "DINOHead"),
            batch_norm=batch_norm,
            activation="gelu",
            hidden_bias=True,
            last_bias=True,
        )
        for module in self.mlp.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        self.last_layer = WeightNormLinear(bottleneck_dim, output_dim, trainable_magnitude=not norm_last_layer)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        bottleneck = F.normalize(self.mlp(features), dim=-1)  # (B, bottleneck_dim), unit rows
        return self.last_layer(bottleneck)  # (B, output_dim)

    def cancel_last_layer_gradients(self) -> None:
        """Drop the last layer's gradients (set them to ``None``), so that the next optimizer step
        neither updates nor weight-decays it: optimizers skip parameters without a gradient."""
        for parameter in self.last_layer.parameters():
            parameter.grad = None


class Prototypes(nn.Linear):
    """SwAV's prototypes (Caron et al. 2020, "Unsupervised Learning of Visual Features by
    Contrasting Cluster Assignments", sec. 3.1): ``num_prototypes`` trainable vectors c_k of size
    ``dim``, the rows of a Linear layer without bias (``weight``: (num_prototypes, dim)).

    ``forward`` L2-normalises the features and returns their dot products with the prototypes, the
    scores z^T c_k; call :meth:`normalize_` before each training step, as SwAV does, so that the
    prototypes are unit vectors and the scores are cosine similarities in [-1, 1]. SwAV freezes the
    prototypes during the first iterations: call :meth:`cancel_gradients` before the optimizer step.

    Shapes: (B, dim) -> (B, num_prototypes).
    """

    def __init__(self, dim: int, num_prototypes: int = 3000):
        _check_positive_int("Prototypes dim", dim)
        _check_positive_int("num_prototypes", num_prototypes)
        super().__init__(dim, num_prototypes, bias=False)

    @property
    def num_prototypes(self) -> int:
        return self.out_features

    @torch.no_grad()
    def normalize_(self) -> None:
        """L2-normalise each prototype vector in place (outside autograd)."""
        self.weight.copy_(F.normalize(self.weight, dim=1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(features, dim=-1), self.weight)

    def cancel_gradients(self) -> None:
        """Drop the prototypes' gradient, so that the next optimizer step leaves them unchanged."""
        self.weight.grad = None


def classifier_head(input_dim: int, hidden_dim: int, num_classes: int) -> MLP:
    """A pretext task's classifier: Linear -> BatchNorm -> ReLU -> Linear to ``num_classes`` logits, or one Linear
    when ``hidden_dim`` is 0. (B, input_dim) -> (B, num_classes)."""
    return MLP([input_dim, hidden_dim, num_classes] if hidden_dim else [input_dim, num_classes])
