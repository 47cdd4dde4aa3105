"""Optimizers and parameter groups for SSL pretraining."""

from __future__ import annotations

import torch
from torch import nn

# Learned tokens and position embeddings of transformer backbones: no weight decay (DINO, MAE, timm).
NO_DECAY_NAME_SUFFIXES = (
    "cls_token",
    "mask_token",
    "distillation_token",
    "register_tokens",
    "position_embeddings",
    "pos_embed",
)


def decay_parameter_names(model: nn.Module) -> list[str]:
    """Names of the parameters that get weight decay: every weight matrix or kernel (ndim > 1)
    except learned tokens and position embeddings.

    Biases and the scales/shifts of every normalisation layer (LayerNorm, BatchNorm, GroupNorm,
    ...) are 1-d and excluded, as in SimCLR, BYOL and solo-learn.
    """
    return [
        name
        for name, parameter in model.named_parameters()
        if parameter.ndim > 1 and not name.endswith(NO_DECAY_NAME_SUFFIXES)
    ]


class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise adaptive rate scaling.

    You et al. 2017, "Large Batch Training of Convolutional Networks"; the variant used by SimCLR
    and BYOL: for each parameter, the update ``g + weight_decay * w`` is scaled by the trust ratio
    ``eta * ||w|| / ||g + weight_decay * w||`` before momentum. Parameter groups with
    ``lars_exclude=True`` (biases, norms) get neither weight decay nor adaptation.
    """

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0, eta: float = 0.001):
        if lr < 0 or momentum < 0 or weight_decay < 0 or eta <= 0:
            raise ValueError(
                f"Invalid LARS hyperparameters: lr={lr}, momentum={momentum}, weight_decay={weight_decay}, eta={eta}"
            )
        super().__init__(
            params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta, lars_exclude=False)
        )

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for parameter in group["params"]:
                if parameter.grad is None:
                    continue
                update = parameter.grad
                if not group["lars_exclude"]:
                    update = update.add(parameter, alpha=group["weight_decay"])
                    weight_norm, update_norm = torch.linalg.vector_norm(parameter), torch.linalg.vector_norm(update)
                    trust_ratio = torch.where(
                        (weight_norm > 0) & (update_norm > 0),
                        group["eta"] * weight_norm / update_norm,
                        torch.ones_like(weight_norm),
                    )
                    update = update.mul(trust_ratio)
                state = self.state[parameter]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = update.clone()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(update)
                parameter.add_(state["momentum_buffer"], alpha=-group["lr"])
        return loss
