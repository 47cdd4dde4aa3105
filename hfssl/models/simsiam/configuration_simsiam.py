"""SimSiam configuration."""

from __future__ import annotations

from ..checks import require_int, require_real
from ..vision import VisionSSLConfig


class SimSiamConfig(VisionSSLConfig):
    """Configuration of :class:`~hfssl.models.simsiam.SimSiamModel`.

    Chen & He 2021, "Exploring Simple Siamese Representation Learning".

    Defaults are the paper's (sec. 4 and appendix A): a 3-layer projector of width 2048 whose output
    BatchNorm has no affine parameters, a bottleneck predictor 2048 -> 512 -> 2048, and MoCo v2's
    augmentation (crop scale 0.2-1, colour jitter (0.4, 0.4, 0.4, 0.1) with p=0.8, greyscale p=0.2,
    Gaussian blur p=0.5, flip). The optimizer is not part of the model: the paper trains with SGD
    (momentum 0.9, weight decay 1e-4) at a learning rate of ``0.05 * batch_size / 256`` on a cosine
    schedule (``--learning_rate``, ``--lr_scheduler_type cosine``), batches of 512.

    Args:
        backbone_config, pooling, image_size: see :class:`~hfssl.models.vision.VisionSSLConfig`.
        projection_hidden_dim: hidden width of the projector (paper: 2048).
        projection_dim: output width of the projector and the predictor (paper: 2048).
        projection_num_layers: Linear layers of the projector (paper: 3; 2 on CIFAR-10).
        prediction_hidden_dim: the predictor's bottleneck width (paper: 512, a quarter of ``projection_dim``).
        min_crop_scale: smallest area share of the random resized crop (paper: 0.2), in (0, 1].

    Every field is checked at construction (:class:`~hfssl.models.checks.CheckedConfig`).
    """

    model_type = "hfssl_simsiam"

    projection_hidden_dim: int = 2048
    projection_dim: int = 2048
    projection_num_layers: int = 3
    prediction_hidden_dim: int = 512
    min_crop_scale: float = 0.2

    def check_ranges(self) -> None:
        """Widths and layers are ints >= 1; ``min_crop_scale`` in (0, 1]."""
        super().check_ranges()
        for name in ("projection_hidden_dim", "projection_dim", "prediction_hidden_dim"):
            require_int(self, name, 1, "a layer width")
        require_int(self, "projection_num_layers", 1, "the Linear layers of the projector")
        require_real(self, "min_crop_scale", 0, 1, low_open=True, hint="the smallest area share of a crop")
