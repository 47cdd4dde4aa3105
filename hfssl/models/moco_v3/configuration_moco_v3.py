"""MoCo v3 configuration."""

from __future__ import annotations

from ..checks import require_bool, require_int, require_real, require_rising_momentum
from ..vision import VisionSSLConfig


class MoCoV3Config(VisionSSLConfig):
    """Configuration of :class:`~hfssl.models.moco_v3.MoCoV3Model`.

    Chen, Xie & He 2021, "An Empirical Study of Training Self-Supervised Vision Transformers" (MoCo v3).

    Defaults are the paper's for ViTs (sec. 4 and appendix A, and their released code): a 3-layer projector
    and a 2-layer predictor, hidden width 4096, output 256, BatchNorm after every Linear including the last
    one (without affine parameters); temperature 0.2; momentum 0.99 rising to 1 on a cosine schedule of the
    optimizer step; BYOL's augmentation. Their ResNet-50 code differs: a 2-layer projector
    (``projection_num_layers=2``), no BatchNorm at the predictor's output (``prediction_last_batch_norm=False``)
    and ``tau=1.0``. The optimizer is not part of the model: the paper trains ViTs with AdamW, learning rate
    ``1.5e-4 * batch_size / 256``, weight decay 0.1, batches of 4096 (their ResNet-50 recipe: LARS,
    ``--use_lars``).

    Args:
        backbone_config, pooling, image_size: see :class:`~hfssl.models.vision.VisionSSLConfig`.
        projection_hidden_dim: hidden width of the projector (paper: 4096).
        projection_dim: output width of the projector and the predictor, the size of queries and keys
            (paper: 256).
        projection_num_layers: Linear layers of the projector (paper: 3; their ResNet-50 code: 2).
        prediction_hidden_dim: hidden width of the 2-layer predictor (paper: 4096).
        prediction_last_batch_norm: BatchNorm (no affine) after the predictor's last Linear (paper's ViT: yes;
            their ResNet-50 code: no).
        tau: the temperature of ``ctr`` (paper: 0.2 for ViTs; 1.0 in their ResNet-50 code). Named ``tau``
            because ``temperature`` is a reserved generation parameter in transformers 5 configs.
        base_momentum: the momentum encoder's momentum at step 0 (paper: 0.99), in [0, 1].
        final_momentum: its momentum at the last step (paper: 1.0), in [``base_momentum``, 1].
        min_crop_scale: smallest area share of the random resized crop (paper: 0.08), in (0, 1].
        export_teacher: ``export_backbone`` writes the momentum encoder's backbone instead of the online
            encoder's (the default, which the paper evaluates).
        freeze_patch_projection: keep a ViT backbone's patch projection at its random initialisation (no gradient),
            the paper's stability trick for ViTs (sec. 4.1; ``--stop-grad-conv1`` in their ViT recipes); backbones
            without a patch projection (ResNet) are unaffected.

    Every field is checked at construction (:class:`~hfssl.models.checks.CheckedConfig`).
    """

    model_type = "hfssl_moco_v3"

    projection_hidden_dim: int = 4096
    projection_dim: int = 256
    projection_num_layers: int = 3
    prediction_hidden_dim: int = 4096
    prediction_last_batch_norm: bool = True
    tau: float = 0.2
    base_momentum: float = 0.99
    final_momentum: float = 1.0
    min_crop_scale: float = 0.08
    export_teacher: bool = False
    freeze_patch_projection: bool = True

    def check_ranges(self) -> None:
        """Widths and layers are ints >= 1; ``tau`` > 0; momenta in [0, 1] with ``base_momentum <=
        final_momentum``; ``min_crop_scale`` in (0, 1]; the flags are flags."""
        super().check_ranges()
        for name in ("projection_hidden_dim", "projection_dim", "prediction_hidden_dim"):
            require_int(self, name, 1, "a layer width")
        require_int(self, "projection_num_layers", 1, "the Linear layers of the projector")
        require_bool(self, "prediction_last_batch_norm")
        require_real(
            self, "tau", 0, low_open=True, hint="the softmax temperature; the paper's is 0.2 (ViT), 1.0 (ResNet)"
        )
        require_rising_momentum(self, "momentum encoder")
        require_real(self, "min_crop_scale", 0, 1, low_open=True, hint="the smallest area share of a crop")
        require_bool(self, "export_teacher")
        require_bool(self, "freeze_patch_projection")
