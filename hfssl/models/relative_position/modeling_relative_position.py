"""Relative patch position as a transformers ``PreTrainedModel``.

Doersch et al. 2015, "Unsupervised Visual Representation Learning by Context Prediction", sec. 3::

    centre, neighbour, y = tiles(x)             # the middle tile of a 3 x 3 grid and one of its 8 neighbours
                                                #   (gap, jitter, channel dropping), y in 0..7 its place
    h = concat(g(f(centre)), g(f(neighbour)))   # the same backbone f on each tile, pooled by g ("late fusion")
    L = cross_entropy(W2 relu(W1 h), y)

The tiles are cut on the device by the batch transform (:func:`relative_position_batch_transform`).
"""

from __future__ import annotations

import torch

from ...augment import EvalTransform
from ...heads import classifier_head
from ...pretext import NEIGHBOUR_CELLS, RelativePositionTransform
from ..vision import PretextTaskOutput, VisionSSLPreTrainedModel, image_normalization, pretext_task_output
from .configuration_relative_position import RelativePositionConfig


class RelativePositionModel(VisionSSLPreTrainedModel):
    config_class = RelativePositionConfig
    # Read by the trainer's guards (hfssl.training.guards.check_run_can_learn) before the first step.
    min_global_batch_size = 2
    min_global_batch_reason = "the classifier normalises with BatchNorm over the batch; one pair gives no statistics."

    def __init__(self, config: RelativePositionConfig):
        super().__init__(config)
        self.classifier = classifier_head(2 * self.feature_dim, config.classifier_hidden_dim, len(NEIGHBOUR_CELLS))
        self.post_init()

    def forward(
        self, pixel_values: torch.Tensor, pretext_labels: torch.Tensor | None = None, return_loss: bool = True
    ) -> PretextTaskOutput:
        """
        Args:
            pixel_values: (B, 2, C, t, t) the centre tile and a neighbour of each image, normalised.
            pretext_labels: (B,) the neighbour's place, 0-7 in reading order
                (:data:`hfssl.pretext.NEIGHBOUR_CELLS`).
            return_loss: compute the loss.
        """
        if pixel_values.dim() != 5 or pixel_values.shape[1] != 2:
            raise ValueError(f"Expected tile pairs (B, 2, C, t, t), got {tuple(pixel_values.shape)}.")
        features = self.get_image_features(pixel_values.flatten(0, 1))  # (2B, D), one backbone pass
        pairs = features.reshape(pixel_values.shape[0], -1)  # (B, 2D): centre then neighbour
        return pretext_task_output(self.classifier(pairs), pretext_labels, features, return_loss)


def relative_position_batch_transform(model: RelativePositionModel, image_processor=None) -> RelativePositionTransform:
    """Batch: ``{"pixel_values": uint8 (B, C, H, W)}`` -> ``{"pixel_values": (B, 2, C', t, t), "pretext_labels": (B,)}``
    (:class:`hfssl.pretext.RelativePositionTransform`), normalised as ``image_processor``."""
    config = model.config
    mean, std = image_normalization(image_processor, config.num_channels)
    return RelativePositionTransform(
        EvalTransform(config.image_size, config.num_channels, mean, std),
        config.tile_fraction,
        config.jitter,
        channel_dropping=config.channel_dropping,
        noise_std=config.channel_noise_std,
    )
