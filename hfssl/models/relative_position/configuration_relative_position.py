"""Relative patch position configuration."""

from __future__ import annotations

from ...pretext import grid_geometry
from ..checks import require_bool, require_int, require_real
from ..vision import VisionSSLConfig, require_tile_grid


class RelativePositionConfig(VisionSSLConfig):
    """Configuration of :class:`~hfssl.models.relative_position.RelativePositionModel`.

    Doersch et al. 2015, "Unsupervised Visual Representation Learning by Context Prediction". The image (resized to
    ``image_size``) is cut into a 3 x 3 grid (:mod:`hfssl.pretext`); the paper's tiles are 96 px in 144 px cells
    (``tile_fraction`` 2/3: a 48 px gap), jittered by up to 7 px (``jitter`` about 0.3 of the room left), and each
    tile keeps one random colour channel, the others replaced by noise, so chromatic aberration cannot give the
    answer away (sec. 3.1).

    Args:
        backbone_config, pooling, image_size: see :class:`~hfssl.models.vision.VisionSSLConfig`.
        tile_fraction: side of a tile over the side of its cell, in (0, 1].
        jitter: how far a tile moves from the centre of its cell, as a share of the room it has, in [0, 1].
        channel_dropping: the colour-aberration guard (colour images only).
        channel_noise_std: std of the noise that replaces the dropped channels (normalised pixels; paper: 1/100).
        classifier_hidden_dim: width of the hidden layer on the two tiles' concatenated features; 0 for a linear
            classifier.

    Every field is checked at construction (:class:`~hfssl.models.checks.CheckedConfig`).
    """

    model_type = "hfssl_relative_position"

    tile_fraction: float = 2 / 3
    jitter: float = 0.3
    channel_dropping: bool = True
    channel_noise_std: float = 0.01
    classifier_hidden_dim: int = 512

    @property
    def tile_size(self) -> int:
        """Side of a tile in pixels."""
        return grid_geometry(self.image_size, self.tile_fraction)[1]

    def check_ranges(self) -> None:
        """``tile_fraction`` in (0, 1], ``jitter`` in [0, 1], the noise std >= 0, the classifier width an int >= 0;
        the tiles at least 2 px and one ViT patch."""
        super().check_ranges()
        require_bool(self, "channel_dropping")
        require_real(self, "channel_noise_std", 0, hint="the std of the noise in a dropped channel")
        require_int(self, "classifier_hidden_dim", 0, "0 for a linear classifier")
        require_tile_grid(self)
