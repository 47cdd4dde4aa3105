"""VICReg as a transformers ``PreTrainedModel``.

Bardes, Ponce & LeCun 2022, "VICReg: Variance-Invariance-Covariance Regularization for Self-Supervised
Learning". Reads like the paper's Algorithm 1::

    x_a, x_b = augment(x)                       # two random views
    z_a, z_b = f(x_a), f(x_b)                   # expander outputs, N x D
    sim_loss = mse_loss(z_a, z_b)               # invariance
    std_z_a = sqrt(z_a.var(dim=0) + 1e-4)       # variance, over the (global) batch
    std_loss = mean(relu(1 - std_z_a)) / 2 + mean(relu(1 - std_z_b)) / 2
    cov_z_a = (z_a - z_a.mean(0)).T @ (z_a - z_a.mean(0)) / (N - 1)
    cov_loss = off_diagonal(cov_z_a).pow(2).sum() / D + off_diagonal(cov_z_b).pow(2).sum() / D
    loss = 25 * sim_loss + 25 * std_loss + 1 * cov_loss

with f the backbone followed by the expander, and every statistic over the global batch with gradients
(:func:`hfssl.losses.vicreg_loss`). The views are made on the device, inside the training step, by the batch
transform :func:`vicreg_batch_transform` builds from the config.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from transformers.utils import ModelOutput

from ...augment import byol_recipes
from ...heads import MLP
from ...losses import vicreg_loss
from ...transforms import MultiViewTransform
from ..vision import VisionSSLPreTrainedModel, multi_view_transform
from .configuration_vicreg import VICRegConfig


@dataclass
class VICRegOutput(ModelOutput):
    """
    Args:
        loss: scalar VICReg loss (>= 0), present when ``return_loss``.
        embeddings: (2B, projection_dim) expander outputs z of both views, view-major.
        features: (2B, D) pooled backbone features of both views, view-major (the representation VICReg keeps).
    """

    loss: torch.FloatTensor | None = None
    embeddings: torch.FloatTensor | None = None
    features: torch.FloatTensor | None = None


class VICRegModel(VisionSSLPreTrainedModel):
    """VICReg: ``backbone`` followed by ``projection_head``, the expander of ``projection_num_layers`` Linear layers
    (BatchNorm and ReLU after each but the last, no bias before a BatchNorm nor at the output). Both views go
    through the backbone in one pass. The variance and covariance are over the global batch (the authors' code
    gathers the embeddings of every GPU); the expander's hidden BatchNorms normalise over each process's rows, as
    everywhere under DDP (``--sync_batchnorm`` on GPUs makes them global)."""

    config_class = VICRegConfig
    # Read by the trainer's guards (hfssl.training.guards.check_run_can_learn) before the first step.
    min_global_batch_size = 2
    min_global_batch_reason = (
        "VICReg's variance and covariance terms are statistics over the batch (an unbiased variance needs at least "
        "2 images; the paper trains on 2048, and its accuracy holds down to 256)."
    )
    collapse_hint = (
        "VICReg's variance hinge keeps every dimension's standard deviation near variance_target, so a collapse "
        "means that term lost: check that variance_weight is not far below invariance_weight (25 and 25 are the "
        "paper's), that the learning rate is not too high (diverging runs collapse), and that the expander is "
        "wide enough."
    )

    def __init__(self, config: VICRegConfig):
        super().__init__(config)
        hidden = [config.projection_hidden_dim] * (config.projection_num_layers - 1)
        self.projection_head = MLP(
            [self.feature_dim, *hidden, config.projection_dim], batch_norm=True, hidden_bias=False, last_bias=False
        )
        self.post_init()

    def forward(self, views: Sequence[torch.Tensor], return_loss: bool = True) -> VICRegOutput:
        """
        Args:
            views: two normalised views x_a, x_b of the same B images, each (B, C, H, W) (or a (2, B, C, H, W)
                tensor).
            return_loss: compute the loss.
        """
        if len(views) != 2:
            raise ValueError(f"VICReg takes exactly 2 views of each image, got {len(views)}.")
        features = self.get_image_features(torch.cat(list(views)))  # one backbone pass over x_a then x_b
        z = self.projection_head(features)  # z_a, z_b = f(x_a), f(x_b)
        loss = None
        if return_loss:
            z_a, z_b = z.chunk(2)
            config = self.config
            loss = vicreg_loss(
                z_a,
                z_b,
                config.invariance_weight,
                config.variance_weight,
                config.covariance_weight,
                config.variance_target,
                config.variance_eps,
            )
        return VICRegOutput(loss=loss, embeddings=z, features=features)


def vicreg_batch_transform(model: VICRegModel, image_processor=None) -> MultiViewTransform:
    """BYOL's two asymmetric views (:func:`hfssl.augment.byol_recipes`: blur with p 1.0 / 0.1, solarisation with
    p 0 / 0.2), which VICReg keeps (appendix C.1), at the config's ``image_size`` and ``min_crop_scale``,
    normalised as ``image_processor``.

    Batch: ``{"pixel_values": uint8 (B, C, H, W)}`` -> ``{"views": [2 x (B, C', S, S)]}``."""
    config = model.config
    recipes = [replace(recipe, crop_scale=(config.min_crop_scale, 1.0)) for recipe in byol_recipes(config.image_size)]
    return multi_view_transform(config, recipes, image_processor)
