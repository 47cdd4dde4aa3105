"""SimCLR configuration."""

from __future__ import annotations

from ..checks import require_int, require_real
from ..vision import VisionSSLConfig


class SimCLRConfig(VisionSSLConfig):
    """Configuration of :class:`~hfssl.models.simclr.SimCLRModel`.

    Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual Representations".

    Args:
        backbone_config, pooling, image_size: see :class:`~hfssl.models.vision.VisionSSLConfig`.
        projection_hidden_dim: width of the projection MLP's hidden layers (paper: 2048).
        projection_dim: output width of the projection MLP (paper: 128).
        projection_num_layers: linear layers in the projection MLP (v1: 2, v2: 3).
        tau: NT-Xent temperature (named ``tau`` because ``temperature`` is a reserved generation
            parameter in transformers 5 configs). Paper: 0.1 with large batches, 0.5 on CIFAR.
        min_crop_scale: smallest area share of the random resized crop (paper: 0.08).
        color_jitter_strength: the strength s of the colour jitter (0.8s, 0.8s, 0.8s, 0.2s; paper: 1.0,
            0.5 on CIFAR-10), in [0, 2.5]: the hue shift 0.2s is at most half a turn.

    Every field is checked at construction (:class:`~hfssl.models.checks.CheckedConfig`).
    """

    model_type = "hfssl_simclr"

    projection_hidden_dim: int = 2048
    projection_dim: int = 128
    projection_num_layers: int = 2
    tau: float = 0.1
    min_crop_scale: float = 0.08
    color_jitter_strength: float = 1.0

    def check_ranges(self) -> None:
        """Widths and layers are ints >= 1; ``tau`` > 0; ``min_crop_scale`` in (0, 1] (a crop of no area
        cannot be resized); ``color_jitter_strength`` in [0, 2.5]."""
        super().check_ranges()
        require_real(self, "tau", 0, low_open=True, hint="the softmax temperature; 0.1-0.5 are usual")
        for name in ("projection_hidden_dim", "projection_dim"):
            require_int(self, name, 1, "a layer width")
        require_int(self, "projection_num_layers", 1, "the Linear layers of the projection MLP")
        require_real(self, "min_crop_scale", 0, 1, low_open=True, hint="the smallest area share of a crop")
        require_real(self, "color_jitter_strength", 0, 2.5, hint="the hue shift 0.2s is at most half a turn")
