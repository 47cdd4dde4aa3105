"""Rotation prediction as a transformers ``PreTrainedModel``.

Gidaris et al. 2018, "Unsupervised Representation Learning by Predicting Image Rotations", sec. 2::

    for x in batch:
        for y in (0, 1, 2, 3):                  # 0, 90, 180, 270 degrees
            x_y = rot(x, 90 * y)
            F(x_y) = softmax(W g(f(x_y)))         # f the backbone, g its pooling, W the classifier
    L = mean over x, y of -log F_y(x_y)

The rotations are made on the device by the batch transform (:func:`rotation_batch_transform`), all four of each
image in the same batch, as the paper found best (sec. 2.2).
"""

from __future__ import annotations

import torch

from ...augment import ViewGenerator, crop_and_flip_recipe
from ...heads import classifier_head
from ...pretext import ROTATIONS, RotationTransform
from ..vision import PretextTaskOutput, VisionSSLPreTrainedModel, image_normalization, pretext_task_output
from .configuration_rotation import RotationConfig


class RotationModel(VisionSSLPreTrainedModel):
    config_class = RotationConfig

    def __init__(self, config: RotationConfig):
        super().__init__(config)
        self.classifier = classifier_head(self.feature_dim, config.classifier_hidden_dim, ROTATIONS)
        self.post_init()

    def forward(
        self, pixel_values: torch.Tensor, pretext_labels: torch.Tensor | None = None, return_loss: bool = True
    ) -> PretextTaskOutput:
        """
        Args:
            pixel_values: (N, C, S, S) rotated, normalised images (N = 4B from the batch transform).
            pretext_labels: (N,) the rotation of each, 0-3 (quarter turns counter-clockwise).
            return_loss: compute the loss.
        """
        features = self.get_image_features(pixel_values)  # g(f(x_y)), (N, D)
        return pretext_task_output(self.classifier(features), pretext_labels, features, return_loss)


def rotation_batch_transform(model: RotationModel, image_processor=None) -> RotationTransform:
    """Batch: ``{"pixel_values": uint8 (B, C, H, W)}`` -> ``{"pixel_values": (4B, C', S, S), "pretext_labels": (4B,)}``
    (:class:`hfssl.pretext.RotationTransform`), normalised as ``image_processor``."""
    config = model.config
    mean, std = image_normalization(image_processor, config.num_channels)
    generator = ViewGenerator(
        [crop_and_flip_recipe(config.min_crop_scale, config.flip_probability)],
        config.image_size,
        config.num_channels,
        mean,
        std,
    )
    return RotationTransform(generator)
