"""Barlow Twins configuration."""

from __future__ import annotations

from ..checks import require_int, require_real
from ..vision import VisionSSLConfig


class BarlowTwinsConfig(VisionSSLConfig):
    """Configuration of :class:`~hfssl.models.barlow_twins.BarlowTwinsModel`.

    Zbontar, Jing, Misra, LeCun & Deny 2021, "Barlow Twins: Self-Supervised Learning via Redundancy Reduction".
    Defaults are the paper's (sec. 4, appendix): a projector of 3 Linear layers of width 8192 (BatchNorm and ReLU
    after the first two, no biases), lambda = 5e-3, and BYOL's asymmetric augmentation (blur p 1.0 / 0.1,
    solarisation p 0 / 0.2; crops from 0.08). The optimizer is not part of the model: the paper trains with LARS
    (learning rate 0.2 for weights and 0.0048 for biases and BatchNorm parameters, weight decay 1.5e-6: ``--use_lars
    --learning_rate 0.2 --lars_exclude_lr_scale 0.024 --weight_decay 1.5e-6``) at a global batch of 2048 for 1000
    epochs, with a 10-epoch warm-up and a cosine schedule.

    Args:
        backbone_config, pooling, image_size: see :class:`~hfssl.models.vision.VisionSSLConfig`.
        projection_hidden_dim: hidden width of the projector (paper: 8192).
        projection_dim: output width D of the projector, the side of the cross-correlation matrix (paper: 8192;
            the paper finds accuracy still rising with D).
        projection_num_layers: Linear layers of the projector (paper: 3).
        off_diagonal_weight: lambda, the weight of the redundancy-reduction term (paper: 5e-3); None: ``1 / D``,
            which balances the D diagonal and D (D - 1) off-diagonal terms at any width (Tsai et al. 2021).
        min_crop_scale: smallest area share of the random resized crop (paper: 0.08), in (0, 1].

    Every field is checked at construction (:class:`~hfssl.models.checks.CheckedConfig`).
    """

    model_type = "hfssl_barlow_twins"

    projection_hidden_dim: int = 8192
    projection_dim: int = 8192
    projection_num_layers: int = 3
    off_diagonal_weight: float | None = 5e-3
    min_crop_scale: float = 0.08

    @property
    def lambda_off_diagonal(self) -> float:
        """lambda: ``off_diagonal_weight``, else ``1 / projection_dim``."""
        return 1 / self.projection_dim if self.off_diagonal_weight is None else self.off_diagonal_weight

    def check_ranges(self) -> None:
        """Widths and layers are ints >= 1; ``off_diagonal_weight`` None or >= 0; ``min_crop_scale`` in (0, 1]."""
        super().check_ranges()
        for name in ("projection_hidden_dim", "projection_dim"):
            require_int(self, name, 1, "a layer width")
        require_int(self, "projection_num_layers", 1, "the Linear layers of the projector")
        if self.off_diagonal_weight is not None:
            require_real(
                self, "off_diagonal_weight", 0, hint="lambda; 5e-3 is the paper's, None gives 1 / projection_dim"
            )
        require_real(self, "min_crop_scale", 0, 1, low_open=True, hint="the smallest area share of a crop")
