"""DINO as a transformers ``PreTrainedModel``.

Caron et al. 2021, "Emerging Properties in Self-Supervised Vision Transformers". Reads like the paper's
Algorithm 1: the batch transform (:func:`dino_batch_transform`) makes 2 global and N local crops of every
image on the device; the student (backbone + DINO head) sees every crop, the teacher (an EMA copy of both,
no gradient) the global ones; the student's softmax (temperature tau_s) of each crop predicts the teacher's
centred, sharpened softmax (tau_t) of each other global crop (:func:`hfssl.losses.dino_loss`). After each
optimizer step the teacher moves towards the student (momentum 0.996 -> 1, cosine) and the centre towards
the teacher outputs' batch mean (all-reduced over processes). The teacher temperature warms up linearly,
the weight decay follows a cosine schedule, and the head's last layer is frozen during the first epoch:
all functions of the optimizer step, set by the step hooks (:mod:`hfssl.schedules`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers.utils import ModelOutput

from ...augment import multi_crop_recipes
from ...backbones import pooled_features
from ...distributed import all_reduce_sum
from ...heads import DINOHead
from ...losses import dino_loss
from ...schedules import (
    TrainingProgress,
    cosine_schedule,
    linear_warmup,
    reset_teacher,
    teacher_copy,
    update_momentum,
)
from ...transforms import MultiViewTransform
from ..vision import VisionSSLPreTrainedModel, multi_view_transform, same_size_runs
from .configuration_dino import DINOConfig

NUM_GLOBAL_CROPS = 2


@dataclass
class DINOOutput(ModelOutput):
    """
    Args:
        loss: scalar DINO loss (cross-entropy of the student's crops against the teacher's other global
            crops, averaged over the pairs), present when ``return_loss``.
        embeddings: (2B, bottleneck_dim) the student head's L2-normalised bottleneck of the 2 global crops,
            view-major: the unit vectors whose cosines with the K prototypes (the last layer's rows) are the
            logits. The collapse monitors read them: both of DINO's collapses (uniform and one-hot teacher
            outputs) send every image to one point there, and a bottleneck spread over its sphere gives the
            ``1 / sqrt(bottleneck_dim)`` that ``embedding_std`` compares with (K logits span only that
            bottleneck's subspace).
        features: (2B, D) pooled student backbone features of the 2 global crops, view-major.
    """

    loss: torch.FloatTensor | None = None
    embeddings: torch.FloatTensor | None = None
    features: torch.FloatTensor | None = None


class DINOModel(VisionSSLPreTrainedModel):
    """DINO: ``backbone`` and ``head`` (:class:`hfssl.heads.DINOHead`) are the student (trained);
    ``teacher_backbone`` and ``teacher_head`` the teacher (EMA copies, no gradient); ``center`` (K,) the
    persistent centre of the teacher's outputs. All are in the state dict, so ``save_pretrained`` and
    Trainer checkpoints carry them. ``config.export_teacher`` exports the teacher's backbone (what the
    paper evaluates) instead of the student's."""

    config_class = DINOConfig
    replicated_buffers = ("center",)  # the same on every process: not broadcast by DDP at each step
    # Read by the trainer's guards (hfssl.training.guards.check_run_can_learn) before the first step.
    min_global_batch_size = 2
    min_global_batch_reason = (
        "DINO centres the teacher's outputs with a running mean of their batch means, which needs several images "
        "per step (the paper trains on 1024), and the head's optional BatchNorm (head_batch_norm) needs 2."
    )
    collapse_hint = (
        "DINO avoids collapse by balancing centring (against one dimension dominating) and sharpening (against a "
        "uniform output). A one-hot collapse (every image on one prototype) comes from too little centring, "
        "center_momentum too close to 1 (0.9 is the paper's; 0.999 collapses), or a teacher_temperature too low; "
        "a uniform collapse (loss near log(output_dim)) from a teacher_temperature too high (above ~0.07, or "
        "without the warm-up from warmup_teacher_temperature). Also check that base_momentum is close to 1 (0.996) "
        "and, for ViTs, --max_grad_norm 3.0 and a learning-rate warm-up."
    )

    def __init__(self, config: DINOConfig):
        super().__init__(config)
        self.head = DINOHead(
            self.feature_dim,
            output_dim=config.output_dim,
            hidden_dim=config.hidden_dim,
            bottleneck_dim=config.bottleneck_dim,
            num_layers=config.num_head_layers,
            batch_norm=bool(config.head_batch_norm),
            norm_last_layer=bool(config.norm_last_layer),
        )
        # the centre c of the teacher's outputs: persistent, so checkpoints (and resumed runs) carry it
        self.register_buffer("center", torch.zeros(config.output_dim))
        self.post_init()
        # the teacher starts as a copy of the initialised student (never re-initialised)
        self.teacher_backbone = teacher_copy(self.backbone)
        self.teacher_head = teacher_copy(self.head)
        # Values of the current step, set by the step hooks from the progress (outside training: the
        # momentum at step 0 and the teacher temperature after its warm-up).
        self.momentum = config.base_momentum
        self.teacher_temperature = config.teacher_temperature
        # (K + 1,) sum of the teacher's outputs and their count, over the training forwards since the last
        # optimizer step: the batch mean of the centre's update (not saved: zero at every checkpoint)
        self._teacher_output_sums: torch.Tensor | None = None

    def forward(self, views: Sequence[torch.Tensor], return_loss: bool = True) -> DINOOutput:
        """
        Args:
            views: the normalised crops of the same B images, the 2 global crops (B, C, S, S) first, then the
                local crops (B, C, s, s) (:func:`dino_batch_transform`'s order).
            return_loss: compute the loss (and, in training mode, record the teacher's outputs for the
                centre's update after the optimizer step).
        """
        views = list(views)
        if len(views) < NUM_GLOBAL_CROPS or views[0].shape != views[1].shape:
            raise ValueError(
                f"DINO takes the 2 global crops (of equal shape) first, then any local crops; got {len(views)} "
                f"views of shapes {[tuple(v.shape) for v in views]}."
            )
        num_views, batch_size = len(views), views[0].shape[0]
        global_crops = torch.cat(views[:NUM_GLOBAL_CROPS])  # (2B, C, S, S)
        features = self.get_image_features(global_crops)  # (2B, D)
        # student: one backbone pass per run of crops of one size (DINO's MultiCropWrapper), one head pass
        student_features = [features] + [self.get_image_features(torch.cat(run)) for run in same_size_runs(views[2:])]
        bottleneck, student_logits = self._head_outputs(torch.cat(student_features))  # (V B, bottleneck), (V B, K)
        loss = None
        if return_loss:
            with torch.no_grad():  # the teacher sees the global crops only, and gets no gradient
                teacher_features = pooled_features(self.teacher_backbone, global_crops, self.config.pooling)
                teacher_logits = self.teacher_head(teacher_features)  # (2B, K)
            if self.training:  # evaluation leaves the centre alone
                self._record_teacher_outputs(teacher_logits)
            loss = dino_loss(
                student_logits.view(num_views, batch_size, -1),
                teacher_logits.view(NUM_GLOBAL_CROPS, batch_size, -1),
                self.center,
                self.teacher_temperature,
                self.config.student_temperature,
            )
        return DINOOutput(loss=loss, embeddings=bottleneck[: NUM_GLOBAL_CROPS * batch_size], features=features)

    def _head_outputs(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``DINOHead.forward`` in its two halves, keeping the bottleneck: (N, D) -> (N, bottleneck), (N, K)."""
        bottleneck = F.normalize(self.head.mlp(features), dim=-1)
        return bottleneck, self.head.last_layer(bottleneck)

    # ---- the centre ---------------------------------------------------------------------------
    @torch.no_grad()
    def _record_teacher_outputs(self, teacher_logits: torch.Tensor) -> None:
        rows = teacher_logits.detach().float()
        sums = torch.cat([rows.sum(0), rows.new_tensor([rows.shape[0]])])
        self._teacher_output_sums = sums if self._teacher_output_sums is None else self._teacher_output_sums + sums

    @torch.no_grad()
    def update_center(self) -> None:
        """``c <- m c + (1 - m) mean(teacher outputs)`` (eq. 4), the mean over the rows of every training forward
        since the last optimizer step (all micro-batches of the step) on every process: sums and counts are
        all-reduced, so every process computes the same centre, that of one process on the concatenated batch
        (unequal per-process batches included). A call without recorded outputs, or with non-finite ones,
        leaves the centre as it is (on every process alike). Called by :meth:`after_optimizer_step`; a step
        whose update was dropped discards its outputs instead (:meth:`after_skipped_step`)."""
        sums = self._teacher_output_sums
        self._teacher_output_sums = None
        if sums is None:  # every process takes part in the all-reduce, with or without outputs
            sums = self.center.new_zeros(self.center.numel() + 1)
        sums = all_reduce_sum(sums.to(self.center.device))
        mean = sums[:-1] / sums[-1]
        updated = self.center * self.config.center_momentum + mean * (1 - self.config.center_momentum)
        self.center.copy_(torch.where((sums[-1] > 0) & torch.isfinite(mean).all(), updated, self.center))

    # ---- schedules (functions of the optimizer step) -------------------------------------------
    def teacher_momentum_at(self, progress: TrainingProgress) -> float:
        """``1 - (1 - m_base) (cos(pi k / K) + 1) / 2`` at optimizer step k of K (paper: 0.996 -> 1)."""
        return cosine_schedule(
            progress.step, progress.total_steps, self.config.base_momentum, self.config.final_momentum
        )

    def teacher_temperature_at(self, progress: TrainingProgress) -> float:
        """tau_t: linear from ``warmup_teacher_temperature`` at step 0 to ``teacher_temperature`` at
        ``teacher_temperature_warmup_epochs`` (in steps), then constant (paper: 0.04 -> 0.07 over 30 epochs)."""
        warmup_steps = progress.epochs_to_steps(self.config.teacher_temperature_warmup_epochs)
        return linear_warmup(
            progress.step, warmup_steps, self.config.warmup_teacher_temperature, self.config.teacher_temperature
        )

    def weight_decay_at(self, progress: TrainingProgress) -> float:
        """The weight decay of optimizer step k of K: ``base_weight_decay`` -> ``final_weight_decay`` on a cosine
        (paper: 0.04 -> 0.4). :class:`hfssl.training.StepHooks` sets it in the optimizer's decayed groups
        before each step."""
        return cosine_schedule(
            progress.step, progress.total_steps, self.config.base_weight_decay, self.config.final_weight_decay
        )

    def frozen_last_layer_steps(self, progress: TrainingProgress) -> int:
        """The first optimizer steps during which the head's last layer gets no update (paper: 1 epoch)."""
        return progress.epochs_to_steps(self.config.freeze_last_layer_epochs)

    def _set_schedules(self, progress: TrainingProgress) -> None:
        self.momentum = self.teacher_momentum_at(progress)
        self.teacher_temperature = self.teacher_temperature_at(progress)

    # ---- step hooks (hfssl.schedules) ------------------------------------------------------------
    def on_train_start(self, progress: TrainingProgress) -> None:
        """Set the values of the step training starts (or resumes) at. A run from step 0 starts the teacher as
        a copy of the student, so a backbone loaded after construction reaches the teacher too; a resumed run
        keeps the teacher and the centre its checkpoint holds."""
        if progress.step == 0:
            reset_teacher(self.backbone, self.teacher_backbone)
            reset_teacher(self.head, self.teacher_head)
        self._teacher_output_sums = None
        self._set_schedules(progress)

    def before_optimizer_step(self, progress: TrainingProgress) -> None:
        """Freeze the last layer during the first ``freeze_last_layer_epochs``: drop its (clipped) gradients."""
        if progress.step < self.frozen_last_layer_steps(progress):
            self.head.cancel_last_layer_gradients()

    def after_skipped_step(self, progress: TrainingProgress) -> None:
        """A step whose update was dropped (``--nan_policy skip``, the fp16 scaler) leaves the centre as it is: its
        teacher outputs, which may not be finite, are discarded rather than joined to the next step's mean. The
        decision is the same on every process, so the all-reduces of the next update stay matched."""
        self._teacher_output_sums = None

    def after_optimizer_step(self, progress: TrainingProgress) -> None:
        """Teacher ``<- m teacher + (1 - m) student`` with the m of the step just taken, the centre's update
        from that step's teacher outputs, then the momentum and teacher temperature of the next step."""
        update_momentum(self.backbone, self.teacher_backbone, self.momentum)
        update_momentum(self.head, self.teacher_head, self.momentum)
        self.update_center()
        self._set_schedules(progress)


def dino_batch_transform(model: DINOModel, image_processor=None) -> MultiViewTransform:
    """DINO's multi-crop (:func:`hfssl.augment.multi_crop_recipes`): 2 global crops of the config's
    ``image_size`` (area share ``global_crop_scale``; blur p 1.0 / 0.1, solarisation p 0 / 0.2) and
    ``num_local_crops`` local crops of ``local_crop_size`` (``local_crop_scale``; blur p 0.5), normalised as
    ``image_processor``.

    Batch: ``{"pixel_values": uint8 (B, C, H, W)}`` -> ``{"views": [2 x (B, C', S, S)] + [N x (B, C', s, s)]}``."""
    config = model.config
    recipes = multi_crop_recipes(
        config.image_size,
        config.local_crop_size,
        config.num_local_crops,
        global_crop_scale=tuple(config.global_crop_scale),
        local_crop_scale=tuple(config.local_crop_scale),
    )
    return multi_view_transform(config, recipes, image_processor)
