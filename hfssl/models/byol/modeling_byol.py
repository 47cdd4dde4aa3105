"""BYOL as a transformers ``PreTrainedModel``.

Grill et al. 2020, "Bootstrap Your Own Latent: A New Approach to Self-Supervised Learning".
Reads like the paper's sec. 3.1 and Algorithm 1 (appendix J): two augmented views v, v' -> the online
network (encoder f_theta, projector g_theta, predictor q_theta) predicts the target network's projection
z'_xi of the other view, with the normalised MSE ``2 - 2 cos`` symmetrised over the views; after each
optimizer step the target (a copy of f and g) moves towards the online network by an EMA whose momentum
rises from ``tau_base`` to 1 on a cosine schedule of the step. The views are made on the device, inside
the training step, by the batch transform :func:`byol_batch_transform` builds from the config (table 6).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from transformers.utils import ModelOutput

from ...augment import byol_recipes
from ...backbones import pooled_features
from ...heads import PredictionHead, ProjectionHead
from ...losses import byol_loss
from ...schedules import TrainingProgress, cosine_schedule, reset_teacher, teacher_copy, update_momentum
from ...transforms import MultiViewTransform
from ..vision import VisionSSLPreTrainedModel, multi_view_transform
from .configuration_byol import BYOLConfig


@dataclass
class BYOLOutput(ModelOutput):
    """
    Args:
        loss: scalar symmetrised BYOL loss ``L + L~`` (in [0, 8]), present when ``return_loss``.
        embeddings: (2B, projection_dim) online projections z of both views, view-major.
        features: (2B, D) pooled online backbone features y of both views, view-major.
    """

    loss: torch.FloatTensor | None = None
    embeddings: torch.FloatTensor | None = None
    features: torch.FloatTensor | None = None


class BYOLModel(VisionSSLPreTrainedModel):
    """BYOL: ``backbone``, ``projection_head`` and ``prediction_head`` are the online network (trained);
    ``teacher_backbone`` and ``teacher_projection_head`` the paper's target network (EMA copies, no
    gradient). All five are in the state dict, so ``save_pretrained`` and Trainer checkpoints carry the
    target. ``config.export_teacher`` exports the target's backbone instead of the online one."""

    config_class = BYOLConfig
    # Read by the trainer's guards (hfssl.training.guards.check_run_can_learn) before the first step.
    min_global_batch_size = 2
    min_global_batch_reason = (
        "BYOL's projector and predictor normalise with BatchNorm over the batch; one image gives no batch statistics."
    )
    collapse_hint = (
        "BYOL avoids collapse through its predictor and a slowly moving target: check that base_momentum is "
        "close to 1 (0.99-0.996) and that the predictor's learning rate is not too small."
    )

    def __init__(self, config: BYOLConfig):
        super().__init__(config)
        # online network: f_theta = self.backbone, g_theta, q_theta
        self.projection_head = ProjectionHead(self.feature_dim, config.projection_hidden_dim, config.projection_dim)
        self.prediction_head = PredictionHead(
            config.projection_dim, config.prediction_hidden_dim, config.projection_dim
        )
        self.post_init()
        # target network: f_xi, g_xi start as copies of the initialised online network (never re-initialised)
        self.teacher_backbone = teacher_copy(self.backbone)
        self.teacher_projection_head = teacher_copy(self.projection_head)
        self.momentum = config.base_momentum  # tau of the current step, set by the step hooks from the progress

    def forward(self, views: Sequence[torch.Tensor], return_loss: bool = True) -> BYOLOutput:
        """
        Args:
            views: the two normalised views v, v' of the same B images, each (B, C, H, W) (or a (2, B, C, H, W) tensor).
            return_loss: compute the loss.
        """
        if len(views) != 2:
            raise ValueError(f"BYOL takes exactly 2 views of each image, got {len(views)}.")
        v = torch.cat(list(views))  # (2B, C, H, W): v then v', one pass per network
        y = self.get_image_features(v)  # online representation y_theta
        z = self.projection_head(y)  # online projection z_theta
        q = self.prediction_head(z)  # prediction q_theta(z_theta)
        loss = None
        if return_loss:
            with torch.no_grad():  # sg(z'_xi): the target network gets no gradient
                z_target = self.teacher_projection_head(pooled_features(self.teacher_backbone, v, self.config.pooling))
            q1, q2 = q.chunk(2)
            t1, t2 = z_target.chunk(2)
            loss = byol_loss(q1, q2, t1, t2)  # || q(v) - z'(v') ||^2 + || q(v') - z'(v) ||^2, normalised
        return BYOLOutput(loss=loss, embeddings=z, features=y)

    # ---- the target network's EMA (step hooks, see hfssl.schedules) ----------------------------
    def target_momentum(self, step: int, total_steps: int) -> float:
        """``tau = 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2`` at optimizer step k of K (sec. 3.2)."""
        return cosine_schedule(step, total_steps, self.config.base_momentum, self.config.final_momentum)

    def on_train_start(self, progress: TrainingProgress) -> None:
        """Set tau of the step training starts (or resumes) at. A run from step 0 starts the target as a copy
        of the online network (the paper's initialisation), so a backbone loaded after construction reaches
        the target too; a resumed run keeps the target its checkpoint holds."""
        if progress.step == 0:
            reset_teacher(self.backbone, self.teacher_backbone)
            reset_teacher(self.projection_head, self.teacher_projection_head)
        self.momentum = self.target_momentum(progress.step, progress.total_steps)

    def after_optimizer_step(self, progress: TrainingProgress) -> None:
        """``xi <- tau xi + (1 - tau) theta`` with the tau of the step just taken, then tau of the next step."""
        update_momentum(self.backbone, self.teacher_backbone, self.momentum)
        update_momentum(self.projection_head, self.teacher_projection_head, self.momentum)
        self.momentum = self.target_momentum(progress.step, progress.total_steps)


def byol_batch_transform(model: BYOLModel, image_processor=None) -> MultiViewTransform:
    """BYOL's two asymmetric views (:func:`hfssl.augment.byol_recipes`: blur with p 1.0 / 0.1, solarisation
    with p 0 / 0.2) at the config's ``image_size`` and ``min_crop_scale``, normalised as ``image_processor``.

    Batch: ``{"pixel_values": uint8 (B, C, H, W)}`` -> ``{"views": [2 x (B, C', S, S)]}``."""
    config = model.config
    recipes = [replace(recipe, crop_scale=(config.min_crop_scale, 1.0)) for recipe in byol_recipes(config.image_size)]
    return multi_view_transform(config, recipes, image_processor)
