"""MoCo v3 as a transformers ``PreTrainedModel``.

Chen, Xie & He 2021, "An Empirical Study of Training Self-Supervised Vision Transformers". Reads like the
paper's Algorithm 1::

    # f_q: encoder: backbone + proj mlp + pred mlp;  f_k: momentum encoder: backbone + proj mlp
    for x in loader:                               # N images
        x1, x2 = aug(x), aug(x)
        q1, q2 = f_q(x1), f_q(x2)                  # queries, N x C each
        k1, k2 = f_k(x1), f_k(x2)                  # keys, N x C each
        loss = ctr(q1, k2) + ctr(q2, k1)           # symmetrised
        loss.backward(); update(f_q)
        f_k = m * f_k + (1 - m) * f_q              # momentum update
    def ctr(q, k):
        logits = mm(q, k.t())                      # N x N pairs: the other images of the batch are negatives
        return 2 * tau * CrossEntropyLoss(logits / tau, range(N))

There is no queue: the negatives are the keys of the global batch, gathered from every process
(:func:`hfssl.losses.moco_v3_loss`). The momentum m rises from 0.99 to 1 on a cosine schedule of the
optimizer step. The views are made on the device, inside the training step, by the batch transform
:func:`moco_v3_batch_transform` builds from the config (BYOL's asymmetric augmentation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from transformers.utils import ModelOutput

from ...augment import byol_recipes
from ...backbones import patch_projection, pooled_features
from ...heads import PredictionHead, ProjectionHead
from ...losses import moco_v3_loss
from ...schedules import TrainingProgress, cosine_schedule, reset_teacher, teacher_copy, update_momentum
from ...transforms import MultiViewTransform
from ..vision import VisionSSLPreTrainedModel, multi_view_transform
from .configuration_moco_v3 import MoCoV3Config


@dataclass
class MoCoV3Output(ModelOutput):
    """
    Args:
        loss: scalar ``ctr(q1, k2) + ctr(q2, k1)`` (>= 0; ``4 tau log N`` for uninformative queries, N the
            global batch), present when ``return_loss``.
        embeddings: (2B, projection_dim) online projections z of both views (the projector's output, which the
            predictor maps to the queries q and the momentum encoder mirrors), view-major.
        features: (2B, D) pooled online backbone features of both views, view-major.
    """

    loss: torch.FloatTensor | None = None
    embeddings: torch.FloatTensor | None = None
    features: torch.FloatTensor | None = None


class MoCoV3Model(VisionSSLPreTrainedModel):
    """MoCo v3: ``backbone``, ``projection_head`` and ``prediction_head`` are the encoder f_q (trained);
    ``teacher_backbone`` and ``teacher_projection_head`` the momentum encoder f_k (EMA copies of the backbone
    and projector, no gradient, no predictor). All five are in the state dict, so ``save_pretrained`` and
    Trainer checkpoints carry the momentum encoder. ``config.export_teacher`` exports its backbone instead of
    the online one.

    Heads as in the paper and its code: projector ``ProjectionHead(D, 4096, 256, num_layers=3,
    last_batch_norm=True)`` and predictor ``PredictionHead(256, 4096, 256, last_bias=False,
    last_batch_norm=True)``: BatchNorm after every Linear, the last one without affine parameters.

    The BatchNorm of the heads normalises over each process's batch (the paper uses SyncBatchNorm:
    ``--sync_batchnorm`` on GPUs). A ViT backbone's patch projection stays at its random initialisation
    (``freeze_patch_projection``, the paper's stability trick for ViTs).
    """

    config_class = MoCoV3Config
    # Read by the trainer's guards (hfssl.training.guards.check_run_can_learn) before the first step.
    min_global_batch_size = 2
    min_global_batch_reason = (
        "MoCo v3 contrasts each query with the keys of the other images of the global batch (there is no queue): "
        "with one image there is no negative, and its heads' BatchNorm has no batch statistics."
    )
    collapse_hint = (
        "MoCo v3's negatives are the other images of the batch: check that the batch is not tiny, that "
        "base_momentum is close to 1 (0.99) and the learning rate not too high (ViTs: 1.5e-4 x batch / 256 with "
        "AdamW; the paper's instability shows as dips of the kNN accuracy)."
    )

    def __init__(self, config: MoCoV3Config):
        super().__init__(config)
        # f_q: self.backbone, the projector and the predictor
        self.projection_head = ProjectionHead(
            self.feature_dim,
            config.projection_hidden_dim,
            config.projection_dim,
            num_layers=config.projection_num_layers,
            last_batch_norm=True,
        )
        self.prediction_head = PredictionHead(
            config.projection_dim,
            config.prediction_hidden_dim,
            config.projection_dim,
            num_layers=2,
            last_bias=False,
            last_batch_norm=bool(config.prediction_last_batch_norm),
        )
        self.post_init()
        if config.freeze_patch_projection:  # sec. 4.1: a fixed random patch projection stabilises ViT training
            projection = patch_projection(self.backbone)
            if projection is not None:
                projection.requires_grad_(False)
        # f_k: copies of the initialised backbone and projector (never re-initialised)
        self.teacher_backbone = teacher_copy(self.backbone)
        self.teacher_projection_head = teacher_copy(self.projection_head)
        self.momentum = config.base_momentum  # m of the current step, set by the step hooks from the progress

    def forward(self, views: Sequence[torch.Tensor], return_loss: bool = True) -> MoCoV3Output:
        """
        Args:
            views: the two normalised views x1, x2 of the same B images, each (B, C, H, W) (or a (2, B, C, H, W)
                tensor).
            return_loss: compute the loss.
        """
        if len(views) != 2:
            raise ValueError(f"MoCo v3 takes exactly 2 views of each image, got {len(views)}.")
        x = torch.cat(list(views))  # (2B, C, H, W): x1 then x2, one pass per encoder
        h = self.get_image_features(x)  # online backbone features
        z = self.projection_head(h)  # online projections
        q = self.prediction_head(z)  # queries q = f_q(x)
        loss = None
        if return_loss:
            with torch.no_grad():  # the momentum encoder gets no gradient
                k = self.teacher_projection_head(pooled_features(self.teacher_backbone, x, self.config.pooling))
            q1, q2 = q.chunk(2)
            k1, k2 = k.chunk(2)  # keys k = f_k(x)
            loss = moco_v3_loss(q1, q2, k1, k2, self.config.tau)  # ctr(q1, k2) + ctr(q2, k1)
        return MoCoV3Output(loss=loss, embeddings=z, features=h)

    # ---- the momentum encoder's EMA (step hooks, see hfssl.schedules) --------------------------
    def target_momentum(self, step: int, total_steps: int) -> float:
        """``m = 1 - (1 - m_0) (cos(pi k / K) + 1) / 2`` at optimizer step k of K (the paper's code,
        ``--moco-m-cos``): 0.99 at the start, 1 at the end."""
        return cosine_schedule(step, total_steps, self.config.base_momentum, self.config.final_momentum)

    def on_train_start(self, progress: TrainingProgress) -> None:
        """Set m of the step training starts (or resumes) at. A run from step 0 starts the momentum encoder as
        a copy of the online one, so a backbone loaded after construction reaches it too; a resumed run keeps
        the momentum encoder its checkpoint holds."""
        if progress.step == 0:
            reset_teacher(self.backbone, self.teacher_backbone)
            reset_teacher(self.projection_head, self.teacher_projection_head)
        self.momentum = self.target_momentum(progress.step, progress.total_steps)

    def after_optimizer_step(self, progress: TrainingProgress) -> None:
        """``f_k <- m f_k + (1 - m) f_q`` with m of the step just taken, then m of the next step. (The paper's
        code updates f_k at the start of the next step, before its forward: the same update.)"""
        update_momentum(self.backbone, self.teacher_backbone, self.momentum)
        update_momentum(self.projection_head, self.teacher_projection_head, self.momentum)
        self.momentum = self.target_momentum(progress.step, progress.total_steps)


def moco_v3_batch_transform(model: MoCoV3Model, image_processor=None) -> MultiViewTransform:
    """MoCo v3's two views: BYOL's asymmetric augmentation (:func:`hfssl.augment.byol_recipes`: blur with
    p 1.0 / 0.1, solarisation with p 0 / 0.2), as the paper's appendix A, at the config's ``image_size`` and
    ``min_crop_scale``, normalised as ``image_processor``.

    Batch: ``{"pixel_values": uint8 (B, C, H, W)}`` -> ``{"views": [2 x (B, C', S, S)]}``."""
    config = model.config
    recipes = [replace(recipe, crop_scale=(config.min_crop_scale, 1.0)) for recipe in byol_recipes(config.image_size)]
    return multi_view_transform(config, recipes, image_processor)
