"""SimSiam as a transformers ``PreTrainedModel``.

Chen & He 2021, "Exploring Simple Siamese Representation Learning". Reads like the paper's Algorithm 1::

    x1, x2 = aug(x), aug(x)                 # random augmentation
    z1, z2 = f(x1), f(x2)                   # projections, n-by-d
    p1, p2 = h(z1), h(z2)                   # predictions, n-by-d
    L = D(p1, z2) / 2 + D(p2, z1) / 2       # D(p, z) = -cos(p, stopgrad(z))

with f the backbone followed by the projector and h the predictor; there is no momentum encoder and no
negative. The views are made on the device, inside the training step, by the batch transform
:func:`simsiam_batch_transform` builds from the config.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers.utils import ModelOutput

from ...augment import moco_v2_recipe
from ...heads import PredictionHead, ProjectionHead
from ...losses import simsiam_loss
from ...transforms import MultiViewTransform
from ..vision import VisionSSLPreTrainedModel, multi_view_transform
from .configuration_simsiam import SimSiamConfig


@dataclass
class SimSiamOutput(ModelOutput):
    """
    Args:
        loss: scalar symmetrised negative cosine (in [-1, 1]), present when ``return_loss``.
        embeddings: (2B, projection_dim) projections z of both views, view-major.
        features: (2B, D) pooled backbone features of both views, view-major.
    """

    loss: torch.FloatTensor | None = None
    embeddings: torch.FloatTensor | None = None
    features: torch.FloatTensor | None = None


class SimSiamModel(VisionSSLPreTrainedModel):
    config_class = SimSiamConfig
    # Read by the trainer's guards (hfssl.training.guards.check_run_can_learn) before the first step.
    min_global_batch_size = 2
    min_global_batch_reason = (
        "SimSiam's projector and predictor normalise with BatchNorm over the batch; one image gives no batch "
        "statistics."
    )
    collapse_hint = (
        "SimSiam avoids collapse through the stop-gradient and the predictor (sec. 4.1): check that the learning "
        "rate is not too high for the batch (0.05 x batch / 256 with SGD) and that the two views differ enough."
    )

    def __init__(self, config: SimSiamConfig):
        super().__init__(config)
        # f = backbone + projector (its output BatchNorm without affine parameters, as in the paper's code)
        self.projection_head = ProjectionHead(
            self.feature_dim,
            config.projection_hidden_dim,
            config.projection_dim,
            config.projection_num_layers,
            last_batch_norm=True,
        )
        # h: the bottleneck predictor
        self.prediction_head = PredictionHead(
            config.projection_dim, config.prediction_hidden_dim, config.projection_dim
        )
        self.post_init()

    def forward(self, views: Sequence[torch.Tensor], return_loss: bool = True) -> SimSiamOutput:
        """
        Args:
            views: two normalised views x1, x2 of the same B images, each (B, C, H, W) (or a (2, B, C, H, W) tensor).
            return_loss: compute the loss.
        """
        if len(views) != 2:
            raise ValueError(f"SimSiam takes exactly 2 views of each image, got {len(views)}.")
        features = self.get_image_features(torch.cat(list(views)))  # one backbone pass over x1 then x2
        z = self.projection_head(features)  # z1, z2 = f(x1), f(x2)
        p = self.prediction_head(z)  # p1, p2 = h(z1), h(z2)
        loss = None
        if return_loss:
            z1, z2 = z.chunk(2)
            p1, p2 = p.chunk(2)
            loss = simsiam_loss(p1, p2, z1, z2)  # D(p1, z2) / 2 + D(p2, z1) / 2, z detached
        return SimSiamOutput(loss=loss, embeddings=z, features=features)


def simsiam_batch_transform(model: SimSiamModel, image_processor=None) -> MultiViewTransform:
    """Two views of every image, both drawn from :func:`hfssl.augment.moco_v2_recipe` (SimSiam's appendix A) at the config's ``image_size`` and
    ``min_crop_scale``, normalised as ``image_processor`` (the one saved beside the checkpoint).

    Batch: ``{"pixel_values": uint8 (B, C, H, W)}`` -> ``{"views": [2 x (B, C', S, S)]}``."""
    config = model.config
    recipe = moco_v2_recipe(config.image_size, config.min_crop_scale)
    return multi_view_transform(config, [recipe, recipe], image_processor)
