"""VICReg configuration."""

from __future__ import annotations

from ..checks import require_int, require_real
from ..vision import VisionSSLConfig


class VICRegConfig(VisionSSLConfig):
    """Configuration of :class:`~hfssl.models.vicreg.VICRegModel`.

    Bardes, Ponce & LeCun 2022, "VICReg: Variance-Invariance-Covariance Regularization for Self-Supervised
    Learning". Defaults are the paper's (sec. 4.1, appendix C) and its code's: an expander of 3 Linear layers of
    width 8192 (BatchNorm and ReLU after the first two), loss weights lambda = mu = 25 and nu = 1, gamma = 1,
    epsilon = 1e-4, and BYOL's augmentation (blur p 1.0 / 0.1, solarisation p 0 / 0.2; crops from 0.08). The
    optimizer is not part of the model: the paper trains with LARS (``--use_lars``; base learning rate 0.2 x
    batch / 256, weight decay 1e-6) at a global batch of 2048, with a 10-epoch warm-up and a cosine schedule.

    Args:
        backbone_config, pooling, image_size: see :class:`~hfssl.models.vision.VisionSSLConfig`.
        projection_hidden_dim: hidden width of the expander (paper: 8192).
        projection_dim: output width D of the expander (paper: 8192).
        projection_num_layers: Linear layers of the expander (paper: 3).
        invariance_weight: lambda, the weight of the invariance (MSE) term (paper: 25).
        variance_weight: mu, the weight of the variance hinge (paper: 25).
        covariance_weight: nu, the weight of the covariance term (paper: 1).
        variance_target: gamma, the standard deviation the hinge asks of each dimension (paper: 1).
        variance_eps: epsilon added to the variance under the square root (paper: 1e-4).
        min_crop_scale: smallest area share of the random resized crop (paper: 0.08), in (0, 1].

    Every field is checked at construction (:class:`~hfssl.models.checks.CheckedConfig`).
    """

    model_type = "hfssl_vicreg"

    projection_hidden_dim: int = 8192
    projection_dim: int = 8192
    projection_num_layers: int = 3
    invariance_weight: float = 25.0
    variance_weight: float = 25.0
    covariance_weight: float = 1.0
    variance_target: float = 1.0
    variance_eps: float = 1e-4
    min_crop_scale: float = 0.08

    def check_ranges(self) -> None:
        """Widths and layers are ints >= 1; the weights and gamma >= 0; epsilon > 0; ``min_crop_scale`` in (0, 1]."""
        super().check_ranges()
        for name in ("projection_hidden_dim", "projection_dim"):
            require_int(self, name, 1, "a layer width")
        require_int(self, "projection_num_layers", 1, "the Linear layers of the expander")
        for name in ("invariance_weight", "variance_weight", "covariance_weight"):
            require_real(self, name, 0, hint="a loss weight (paper: 25, 25, 1)")
        require_real(self, "variance_target", 0, low_open=True, hint="gamma, the target standard deviation")
        require_real(self, "variance_eps", 0, low_open=True, hint="keeps the square root differentiable at 0")
        require_real(self, "min_crop_scale", 0, 1, low_open=True, hint="the smallest area share of a crop")
