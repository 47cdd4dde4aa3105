"""BYOL configuration."""

from __future__ import annotations

from ..checks import require_bool, require_int, require_real, require_rising_momentum
from ..vision import VisionSSLConfig


class BYOLConfig(VisionSSLConfig):
    """Configuration of :class:`~hfssl.models.byol.BYOLModel`.

    Grill et al. 2020, "Bootstrap Your Own Latent: A New Approach to Self-Supervised Learning".

    Defaults are the paper's (sec. 3.3 and appendix B, C): projector and predictor MLPs of hidden width
    4096 and output 256, target momentum ``tau_base = 0.996`` rising to 1 on a cosine schedule of the
    optimizer step, the asymmetric augmentation of table 6. The optimizer is not part of the model: the
    paper trains with LARS at a learning rate of ``0.2 * batch_size / 256`` (``--use_lars``,
    ``--learning_rate``), weight decay 1.5e-6, on batches of 4096.

    Args:
        backbone_config, pooling, image_size: see :class:`~hfssl.models.vision.VisionSSLConfig`.
        projection_hidden_dim: hidden width of the projector g (paper: 4096).
        projection_dim: output width of the projector and the predictor (paper: 256).
        prediction_hidden_dim: hidden width of the predictor q (paper: 4096).
        base_momentum: target momentum at step 0, ``tau_base`` (paper: 0.996), in [0, 1].
        final_momentum: target momentum at the last step (paper: 1.0), in [``base_momentum``, 1].
        min_crop_scale: smallest area share of the random resized crop (paper: 0.08), in (0, 1].
        export_teacher: ``export_backbone`` writes the target network's backbone (the EMA teacher) instead
            of the online one (the default, which the paper evaluates).

    Every field is checked at construction (:class:`~hfssl.models.checks.CheckedConfig`).
    """

    model_type = "hfssl_byol"

    projection_hidden_dim: int = 4096
    projection_dim: int = 256
    prediction_hidden_dim: int = 4096
    base_momentum: float = 0.996
    final_momentum: float = 1.0
    min_crop_scale: float = 0.08
    export_teacher: bool = False

    def check_ranges(self) -> None:
        """Widths are ints >= 1; momenta in [0, 1] with ``base_momentum <= final_momentum``;
        ``min_crop_scale`` in (0, 1]; ``export_teacher`` a flag."""
        super().check_ranges()
        for name in ("projection_hidden_dim", "projection_dim", "prediction_hidden_dim"):
            require_int(self, name, 1, "a layer width")
        require_rising_momentum(self, "target network")
        require_real(self, "min_crop_scale", 0, 1, low_open=True, hint="the smallest area share of a crop")
        require_bool(self, "export_teacher")
