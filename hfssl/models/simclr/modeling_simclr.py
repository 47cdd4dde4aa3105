"""SimCLR as a transformers ``PreTrainedModel``.

Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual Representations".
Reads like the paper's Algorithm 1: two augmented views -> encoder f -> projection g -> NT-Xent.
The views are made on the device, inside the training step, by the batch transform
:func:`simclr_batch_transform` builds from the config (the augmentation of appendix A).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from transformers.utils import ModelOutput

from ...augment import simclr_recipe
from ...heads import ProjectionHead
from ...losses import nt_xent
from ...transforms import MultiViewTransform
from ..vision import VisionSSLPreTrainedModel, multi_view_transform
from .configuration_simclr import SimCLRConfig


@dataclass
class SimCLROutput(ModelOutput):
    """
    Args:
        loss: scalar NT-Xent over the (global) batch, present when ``return_loss``.
        embeddings: (V * B, projection_dim) projections z of all views, view-major.
        features: (V * B, D) pooled backbone features h of all views, view-major.
    """

    loss: torch.FloatTensor | None = None
    embeddings: torch.FloatTensor | None = None
    features: torch.FloatTensor | None = None


class SimCLRModel(VisionSSLPreTrainedModel):
    config_class = SimCLRConfig
    # Read by the trainer's guards (hfssl.training.guards.check_run_can_learn) before the first step.
    min_global_batch_size = 2
    min_global_batch_reason = (
        "SimCLR contrasts each view with the other 2N - 2 views of the global batch of N images; at N = 1 there is no "
        "negative and the loss is 0 at every step."
    )

    def __init__(self, config: SimCLRConfig):
        super().__init__(config)
        self.projection_head = ProjectionHead(
            self.feature_dim, config.projection_hidden_dim, config.projection_dim, config.projection_num_layers
        )
        self.post_init()

    def forward(self, views: Sequence[torch.Tensor], return_loss: bool = True) -> SimCLROutput:
        """
        Args:
            views: two normalised views of the same B images, each (B, C, H, W) (or a (2, B, C, H, W) tensor).
            return_loss: compute the NT-Xent loss.
        """
        if len(views) != 2:
            raise ValueError(f"SimCLR takes exactly 2 views of each image, got {len(views)}.")
        batch_size = views[0].shape[0]
        h = self.get_image_features(torch.cat(list(views)))  # one backbone pass over both views
        z = self.projection_head(h)
        loss = nt_xent(z[:batch_size], z[batch_size:], self.config.tau) if return_loss else None
        return SimCLROutput(loss=loss, embeddings=z, features=h)


def simclr_batch_transform(model: SimCLRModel, image_processor=None) -> MultiViewTransform:
    """Two views t(x), t'(x) of every image, t and t' drawn from the SimCLR augmentation
    (:func:`hfssl.augment.simclr_recipe`) at the config's ``image_size``, ``min_crop_scale`` and
    ``color_jitter_strength``, normalised as ``image_processor`` (the one saved beside the checkpoint).

    Batch: ``{"pixel_values": uint8 (B, C, H, W)}`` -> ``{"views": [2 x (B, C', S, S)]}``."""
    config = model.config
    recipe = replace(
        simclr_recipe(config.image_size, config.color_jitter_strength), crop_scale=(config.min_crop_scale, 1.0)
    )
    return multi_view_transform(config, [recipe, recipe], image_processor)
