"""Barlow Twins as a transformers ``PreTrainedModel``.

Zbontar et al. 2021, "Barlow Twins: Self-Supervised Learning via Redundancy Reduction". Reads like the paper's
Algorithm 1::

    y_a, y_b = augment(x)                     # two distorted views of the same images
    z_a, z_b = f(y_a), f(y_b)                 # embeddings, N x D: backbone then projector
    z_a_norm = (z_a - z_a.mean(0)) / z_a.std(0)   # normalised along the (global) batch dimension
    z_b_norm = (z_b - z_b.mean(0)) / z_b.std(0)
    c = mm(z_a_norm.T, z_b_norm) / N          # cross-correlation matrix, D x D
    c_diff = (c - eye(D)).pow(2)
    off_diagonal(c_diff).mul_(lambda)         # redundancy reduction
    loss = c_diff.sum()

with the statistics and the cross-correlation over the global batch, with gradients
(:func:`hfssl.losses.barlow_twins_loss`). The views are made on the device, inside the training step, by the
batch transform :func:`barlow_twins_batch_transform` builds from the config.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from transformers.utils import ModelOutput

from ...augment import byol_recipes
from ...heads import MLP
from ...losses import barlow_twins_loss
from ...transforms import MultiViewTransform
from ..vision import VisionSSLPreTrainedModel, multi_view_transform
from .configuration_barlow_twins import BarlowTwinsConfig


@dataclass
class BarlowTwinsOutput(ModelOutput):
    """
    Args:
        loss: scalar Barlow Twins loss (>= 0), present when ``return_loss``.
        embeddings: (2B, projection_dim) projector outputs z of both views (before the batch standardisation),
            view-major.
        features: (2B, D) pooled backbone features of both views, view-major.
    """

    loss: torch.FloatTensor | None = None
    embeddings: torch.FloatTensor | None = None
    features: torch.FloatTensor | None = None


class BarlowTwinsModel(VisionSSLPreTrainedModel):
    """Barlow Twins: ``backbone`` followed by ``projection_head``, the projector of ``projection_num_layers`` Linear
    layers without biases (BatchNorm and ReLU after each but the last), as in the authors' code. Both views go
    through the backbone in one pass; the loss standardises each view's embeddings over the global batch itself
    (the paper's ``bn`` without affine parameters, under SyncBatchNorm), so no process's share of the batch sees
    other statistics. The projector's hidden BatchNorms normalise over each process's rows, as everywhere under
    DDP; ``--sync_batchnorm`` (GPUs) makes them global too."""

    config_class = BarlowTwinsConfig
    # Read by the trainer's guards (hfssl.training.guards.check_run_can_learn) before the first step.
    min_global_batch_size = 2
    min_global_batch_reason = (
        "Barlow Twins standardises every embedding dimension over the batch and correlates the two views over it: "
        "one image has no variance (the paper trains on 2048, and its accuracy holds down to 256)."
    )
    collapse_hint = (
        "Barlow Twins' diagonal term keeps every dimension's variance (the embeddings are standardised), so a "
        "collapse usually means the optimisation diverged: lower the learning rate (the paper's LARS runs at 0.2 "
        "with --use_lars; AdamW wants ~1e-3 or less), or raise off_diagonal_weight if the dimensions become "
        "redundant (all equal)."
    )

    def __init__(self, config: BarlowTwinsConfig):
        super().__init__(config)
        hidden = [config.projection_hidden_dim] * (config.projection_num_layers - 1)
        self.projection_head = MLP(
            [self.feature_dim, *hidden, config.projection_dim], batch_norm=True, hidden_bias=False, last_bias=False
        )
        self.post_init()

    def forward(self, views: Sequence[torch.Tensor], return_loss: bool = True) -> BarlowTwinsOutput:
        """
        Args:
            views: two normalised views y_a, y_b of the same B images, each (B, C, H, W) (or a (2, B, C, H, W)
                tensor).
            return_loss: compute the loss.
        """
        if len(views) != 2:
            raise ValueError(f"Barlow Twins takes exactly 2 views of each image, got {len(views)}.")
        features = self.get_image_features(torch.cat(list(views)))  # one backbone pass over y_a then y_b
        z = self.projection_head(features)  # z_a, z_b = f(y_a), f(y_b)
        loss = None
        if return_loss:
            z_a, z_b = z.chunk(2)
            loss = barlow_twins_loss(z_a, z_b, self.config.lambda_off_diagonal)
        return BarlowTwinsOutput(loss=loss, embeddings=z, features=features)


def barlow_twins_batch_transform(model: BarlowTwinsModel, image_processor=None) -> MultiViewTransform:
    """BYOL's two asymmetric views (:func:`hfssl.augment.byol_recipes`: blur with p 1.0 / 0.1, solarisation with
    p 0 / 0.2), which Barlow Twins keeps (appendix), at the config's ``image_size`` and ``min_crop_scale``,
    normalised as ``image_processor``.

    Batch: ``{"pixel_values": uint8 (B, C, H, W)}`` -> ``{"views": [2 x (B, C', S, S)]}``."""
    config = model.config
    recipes = [replace(recipe, crop_scale=(config.min_crop_scale, 1.0)) for recipe in byol_recipes(config.image_size)]
    return multi_view_transform(config, recipes, image_processor)
