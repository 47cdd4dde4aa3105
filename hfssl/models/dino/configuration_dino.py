"""DINO configuration."""

from __future__ import annotations

from ..checks import (
    require_bool,
    require_crop_scale,
    require_int,
    require_optional_int,
    require_real,
    require_rising_momentum,
)
from ..vision import VisionSSLConfig, derived_local_crop_size


class DINOConfig(VisionSSLConfig):
    """Configuration of :class:`~hfssl.models.dino.DINOModel`.

    Caron et al. 2021, "Emerging Properties in Self-Supervised Vision Transformers" (Algorithm 1,
    sec. 3.1, appendix and their code, ``main_dino.py``). Defaults are the paper's.

    Views (the batch transform, :func:`hfssl.augment.multi_crop_recipes`): 2 global crops of
    ``image_size`` pixels (area share ``global_crop_scale``) and ``num_local_crops`` local crops of
    ``local_image_size`` pixels (``local_crop_scale``). The teacher sees the global crops, the student
    every crop.

    Schedules, all functions of the optimizer step (:mod:`hfssl.schedules`), so that resuming and
    gradient accumulation reproduce the run:

    * teacher momentum ``base_momentum`` -> ``final_momentum`` on a cosine schedule;
    * teacher temperature: linear warm-up from ``warmup_teacher_temperature`` to
      ``teacher_temperature`` over ``teacher_temperature_warmup_epochs``, then constant (DINO's code steps
      it once per epoch; here it moves at every step);
    * weight decay ``base_weight_decay`` -> ``final_weight_decay`` on a cosine schedule: it **replaces
      ``--weight_decay``** in the optimizer's groups of decayed parameters (weight matrices; biases,
      norms, tokens and position embeddings never decay), see :class:`hfssl.training.StepHooks`;
    * the last layer of the student's head is frozen during the first ``freeze_last_layer_epochs``.

    Epochs are counted in optimizer steps through the trainer's epoch length; when it is unknown (a
    streamed data set), ``e`` epochs are ``e / 100`` of the run (``TrainingProgress.epochs_to_steps``).

    Gradient clipping: DINO clips each parameter tensor's gradient to norm 3.0 (``clip_grad``); hfssl
    clips the global norm of all gradients with Trainer's ``--max_grad_norm``. ``--max_grad_norm 3.0`` is
    the DINO-like setting (the global norm bounds every tensor's norm, so it clips at least as much).

    Export: ``export_backbone`` writes the student's backbone by default; DINO's paper evaluates the
    **teacher** (sec. 5.2: it is better than the student throughout training), so
    ``export_teacher=true`` is recommended.

    Args:
        backbone_config, pooling, image_size: see :class:`~hfssl.models.vision.VisionSSLConfig`;
            ``image_size`` is the side of the global crops (paper: 224).
        output_dim: the head's output width K, the number of "prototypes" (paper: 65536).
        hidden_dim: hidden width of the head's MLP (paper: 2048).
        bottleneck_dim: width of the L2-normalised bottleneck before the last layer (paper: 256).
        num_head_layers: Linear layers of the head's MLP (paper: 3).
        head_batch_norm: BatchNorm in the head's MLP (paper: no, ``use_bn_in_head=False``).
        norm_last_layer: fix the weight-normalised last layer's magnitudes to 1 (paper: yes; no
            is better for ViT-S but less stable).
        num_local_crops: local crops per image (code's default: 8; paper's best ViT-S: 10).
        local_image_size: side of the local crops; None: ``round(image_size * 96 / 224)`` (the paper's
            96 px beside 224 px), read through :attr:`local_crop_size`.
        global_crop_scale, local_crop_scale: (min, max) area shares of the random resized crops
            (paper: (0.4, 1.0) and (0.05, 0.4)).
        student_temperature: the student's softmax temperature tau_s (paper: 0.1).
        teacher_temperature: the teacher's temperature tau_t after the warm-up (paper: 0.04-0.07; 0.07 with
            the warm-up, 0.04 without).
        warmup_teacher_temperature: tau_t at step 0 (paper: 0.04).
        teacher_temperature_warmup_epochs: epochs of the linear warm-up of tau_t (paper: 30).
        center_momentum: EMA weight m of the centre, ``c <- m c + (1 - m) mean(teacher outputs)`` (paper: 0.9).
        base_momentum: teacher momentum at step 0 (paper: 0.996), in [0, 1].
        final_momentum: teacher momentum at the last step (paper: 1.0), in [``base_momentum``, 1].
        base_weight_decay, final_weight_decay: weight decay at step 0 and at the last step (paper: 0.04 and 0.4).
        freeze_last_layer_epochs: epochs during which the last layer gets no update (paper: 1).
        export_teacher: ``export_backbone`` writes the teacher's backbone instead of the student's.

    Every field is checked at construction (:class:`~hfssl.models.checks.CheckedConfig`).
    """

    model_type = "hfssl_dino"

    output_dim: int = 65536
    hidden_dim: int = 2048
    bottleneck_dim: int = 256
    num_head_layers: int = 3
    head_batch_norm: bool = False
    norm_last_layer: bool = True
    num_local_crops: int = 8
    local_image_size: int | None = None
    global_crop_scale: list[float] | tuple[float, float] = (0.4, 1.0)
    local_crop_scale: list[float] | tuple[float, float] = (0.05, 0.4)
    student_temperature: float = 0.1
    teacher_temperature: float = 0.07
    warmup_teacher_temperature: float = 0.04
    teacher_temperature_warmup_epochs: float = 30.0
    center_momentum: float = 0.9
    base_momentum: float = 0.996
    final_momentum: float = 1.0
    base_weight_decay: float = 0.04
    final_weight_decay: float = 0.4
    freeze_last_layer_epochs: float = 1.0
    export_teacher: bool = False

    @property
    def local_crop_size(self) -> int:
        """The side of the local crops: ``local_image_size``, else ``round(image_size * 96 / 224)`` (at least 1)."""
        return derived_local_crop_size(self.image_size, self.local_image_size)

    def check_ranges(self) -> None:
        """Widths and layer counts are ints >= 1; ``num_local_crops`` an int >= 0; ``local_image_size`` None or
        an int >= 1; crop scales pairs ``0 < min <= max <= 1``; temperatures > 0; momenta in [0, 1] with
        ``base <= final``; weight decays >= 0; epoch counts >= 0; flags are flags."""
        super().check_ranges()
        for name in ("output_dim", "hidden_dim", "bottleneck_dim"):
            require_int(self, name, 1, "a layer width")
        require_int(self, "num_head_layers", 1, "the Linear layers of the head's MLP")
        for name in ("head_batch_norm", "norm_last_layer", "export_teacher"):
            require_bool(self, name)
        require_int(self, "num_local_crops", 0, "local crops per image; 0 trains on the 2 global crops alone")
        require_optional_int(self, "local_image_size", 1, "the side of the local crops; None derives it")
        for name in ("global_crop_scale", "local_crop_scale"):
            require_crop_scale(self, name)
        for name in ("student_temperature", "teacher_temperature", "warmup_teacher_temperature"):
            require_real(self, name, 0, low_open=True, hint="a softmax temperature")
        require_real(self, "teacher_temperature_warmup_epochs", 0, hint="epochs; 0 starts at teacher_temperature")
        require_real(self, "center_momentum", 0, 1, hint="the EMA weight of the centre")
        require_rising_momentum(self, "teacher")
        for name in ("base_weight_decay", "final_weight_decay"):
            require_real(self, name, 0, hint="a weight decay")
        require_real(self, "freeze_last_layer_epochs", 0, hint="epochs; 0 never freezes the last layer")
