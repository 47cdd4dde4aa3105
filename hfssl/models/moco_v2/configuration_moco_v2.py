"""MoCo v2 configuration."""

from __future__ import annotations

from ..checks import require_bool, require_int, require_real
from ..vision import VisionSSLConfig


class MoCoV2Config(VisionSSLConfig):
    """Configuration of :class:`~hfssl.models.moco_v2.MoCoV2Model`.

    Chen, Fan, Girshick & He 2020, "Improved Baselines with Momentum Contrastive Learning" (MoCo v2), on
    He et al. 2020, "Momentum Contrast for Unsupervised Visual Representation Learning" (MoCo v1).

    Defaults are the papers': a 2-layer MLP head (hidden 2048 with ReLU, output 128; MoCo v2 sec. 2), a queue of
    K = 65536 keys and a key-encoder momentum m = 0.999 (MoCo v1 sec. 3.3 and 4), temperature 0.2 and the
    random resized crop from 20% of the image up (MoCo v2 table 1 and its released code). The optimizer is not
    part of the model: the papers train with SGD at a learning rate of 0.03 for batches of 256, weight decay
    1e-4, momentum 0.9, cosine schedule (MoCo v2).

    Args:
        backbone_config, pooling, image_size: see :class:`~hfssl.models.vision.VisionSSLConfig`.
        projection_hidden_dim: hidden width of the MLP head (paper: 2048, the width of ResNet-50's features).
        projection_dim: output width of the MLP head: the size C of queries, keys and queued keys (paper: 128).
        queue_size: K, the number of past keys kept as negatives (paper: 65536). Each training step enqueues the
            keys of both views of every image of the global batch (2N keys, see
            :class:`~hfssl.models.moco_v2.MoCoV2Model`); any K works, a multiple of 2N or not (the queue wraps).
        momentum: m of the key encoder's EMA ``theta_k <- m theta_k + (1 - m) theta_q`` (paper: 0.999, constant),
            in [0, 1].
        tau: the InfoNCE temperature (paper: 0.2; MoCo v1: 0.07). Named ``tau`` because ``temperature`` is a
            reserved generation parameter in transformers 5 configs.
        min_crop_scale: smallest area share of the random resized crop (paper's code: 0.2), in (0, 1].
        export_teacher: ``export_backbone`` writes the key (momentum) encoder's backbone instead of the query
            encoder's (the default, which the papers evaluate).

    Every field is checked at construction (:class:`~hfssl.models.checks.CheckedConfig`).
    """

    model_type = "hfssl_moco_v2"

    projection_hidden_dim: int = 2048
    projection_dim: int = 128
    queue_size: int = 65536
    momentum: float = 0.999
    tau: float = 0.2
    min_crop_scale: float = 0.2
    export_teacher: bool = False

    def check_ranges(self) -> None:
        """Widths and ``queue_size`` are ints >= 1; ``momentum`` in [0, 1]; ``tau`` > 0; ``min_crop_scale``
        in (0, 1]; ``export_teacher`` a flag."""
        super().check_ranges()
        for name in ("projection_hidden_dim", "projection_dim"):
            require_int(self, name, 1, "a layer width")
        require_int(self, "queue_size", 1, "the number of queued keys, the negatives")
        require_real(self, "momentum", 0, 1, hint="the EMA weight of the key encoder; the paper's is 0.999")
        require_real(self, "tau", 0, low_open=True, hint="the softmax temperature; the paper's is 0.2")
        require_real(self, "min_crop_scale", 0, 1, low_open=True, hint="the smallest area share of a crop")
        require_bool(self, "export_teacher")
