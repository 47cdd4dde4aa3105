"""Jigsaw puzzles as a transformers ``PreTrainedModel``.

Noroozi & Favaro 2016, "Unsupervised Learning of Visual Representations by Solving Jigsaw Puzzles", sec. 3::

    y ~ uniform(0 .. |P| - 1)                   # one permutation of a fixed set P, far apart in Hamming distance
    tiles = [tile(x, P[y][i]) for i in 0..8]    # place i shows the cell P[y][i], jittered, normalised on its own
    h = concat(g(f(tile)) for tile in tiles)    # the same backbone f on every tile ("context-free network")
    L = cross_entropy(W2 relu(W1 h), y)

The puzzles are made on the device by the batch transform (:func:`jigsaw_batch_transform`); the permutation set
is saved in the config.
"""

from __future__ import annotations

import torch

from ...augment import EvalTransform
from ...heads import classifier_head
from ...pretext import JigsawTransform, hamming_permutation_set
from ..vision import PretextTaskOutput, VisionSSLPreTrainedModel, image_normalization, pretext_task_output
from .configuration_jigsaw import TILES, JigsawConfig


class JigsawModel(VisionSSLPreTrainedModel):
    config_class = JigsawConfig
    # Read by the trainer's guards (hfssl.training.guards.check_run_can_learn) before the first step.
    min_global_batch_size = 2
    min_global_batch_reason = (
        "the classifier normalises with BatchNorm over the batch; one puzzle gives no statistics."
    )

    def __init__(self, config: JigsawConfig):
        if config.permutations is None:  # written into the config, so the checkpoint carries its classes
            config.permutations = [list(p) for p in hamming_permutation_set(config.num_permutations, TILES)]
        super().__init__(config)
        self.classifier = classifier_head(
            TILES * self.feature_dim, config.classifier_hidden_dim, len(config.permutations)
        )
        self.post_init()

    def forward(
        self, pixel_values: torch.Tensor, pretext_labels: torch.Tensor | None = None, return_loss: bool = True
    ) -> PretextTaskOutput:
        """
        Args:
            pixel_values: (B, 9, C, t, t) the shuffled tiles of each image, normalised.
            pretext_labels: (B,) the index in ``config.permutations`` of the order they are shown in.
            return_loss: compute the loss.
        """
        if pixel_values.dim() != 5 or pixel_values.shape[1] != TILES:
            raise ValueError(
                f"Expected puzzles of {TILES} tiles (B, {TILES}, C, t, t), got {tuple(pixel_values.shape)}."
            )
        features = self.get_image_features(pixel_values.flatten(0, 1))  # (9B, D), one backbone pass
        puzzles = features.reshape(pixel_values.shape[0], -1)  # (B, 9D), in the order shown
        return pretext_task_output(self.classifier(puzzles), pretext_labels, features, return_loss)


def jigsaw_batch_transform(model: JigsawModel, image_processor=None) -> JigsawTransform:
    """Batch: ``{"pixel_values": uint8 (B, C, H, W)}`` -> ``{"pixel_values": (B, 9, C', t, t), "pretext_labels": (B,)}``
    (:class:`hfssl.pretext.JigsawTransform`), normalised as ``image_processor`` (then per tile)."""
    config = model.config
    mean, std = image_normalization(image_processor, config.num_channels)
    return JigsawTransform(
        EvalTransform(config.image_size, config.num_channels, mean, std),
        config.tile_fraction,
        config.jitter,
        config.permutations,
        standardize=config.standardize_tiles,
    )
