"""Rotation prediction configuration."""

from __future__ import annotations

from ..checks import require_int, require_probability, require_real
from ..vision import VisionSSLConfig


class RotationConfig(VisionSSLConfig):
    """Configuration of :class:`~hfssl.models.rotation.RotationModel`.

    Gidaris et al. 2018, "Unsupervised Representation Learning by Predicting Image Rotations". Every image is seen
    in its four rotations (0, 90, 180, 270 degrees) in the same batch, as in the paper, after light augmentation
    (its CIFAR code: random crops and horizontal flips).

    Args:
        backbone_config, pooling, image_size: see :class:`~hfssl.models.vision.VisionSSLConfig`.
        classifier_hidden_dim: width of the 4-way classifier's hidden layer on the pooled features; 0 for a
            linear classifier.
        min_crop_scale: smallest area share of the random resized crop before rotating, in (0, 1].
        flip_probability: chance of a horizontal flip before rotating, in [0, 1].

    Every field is checked at construction (:class:`~hfssl.models.checks.CheckedConfig`).
    """

    model_type = "hfssl_rotation"

    classifier_hidden_dim: int = 512
    min_crop_scale: float = 0.5
    flip_probability: float = 0.5

    def check_ranges(self) -> None:
        """``classifier_hidden_dim`` an int >= 0; ``min_crop_scale`` in (0, 1]; ``flip_probability`` in [0, 1]."""
        super().check_ranges()
        require_int(self, "classifier_hidden_dim", 0, "0 for a linear classifier")
        require_real(self, "min_crop_scale", 0, 1, low_open=True, hint="the smallest area share of a crop")
        require_probability(self, "flip_probability")
