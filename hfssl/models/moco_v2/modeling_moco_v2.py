"""MoCo v2 as a transformers ``PreTrainedModel``.

Chen, Fan, Girshick & He 2020, "Improved Baselines with Momentum Contrastive Learning": MoCo (He et al.
2020, "Momentum Contrast for Unsupervised Visual Representation Learning") with an MLP head, blur in the
augmentation and a cosine learning-rate schedule. Reads like MoCo's Algorithm 1::

    f_k.params = f_q.params                       # initialise the key encoder as the query encoder
    for x in loader:                              # N images
        x_q, x_k = aug(x), aug(x)
        q, k = f_q(x_q), f_k(x_k).detach()        # queries and keys, N x C, L2-normalised
        logits = cat([q . k, q @ queue]) / t      # N x (1 + K): the positive first, then the queued keys
        loss = CrossEntropyLoss(logits, 0)        # InfoNCE, eq. (1)
        loss.backward(); update(f_q.params)       # SGD on the query encoder only
        f_k.params = m * f_k.params + (1 - m) * f_q.params   # momentum update, eq. (2)
        enqueue(queue, k); dequeue(queue)         # the N newest keys replace the N oldest

with f_q the backbone followed by the MLP head and f_k its momentum copy (``teacher_*``). Two choices differ
from the paper's asymmetric form, for the reasons given in :class:`MoCoV2Model`: the loss is symmetrised over
the two views, and both views' keys are enqueued. The views are made on the device, inside the training
step, by the batch transform :func:`moco_v2_batch_transform` builds from the config.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers.utils import ModelOutput

from ...augment import moco_v2_recipe
from ...backbones import pooled_features
from ...distributed import gather, rank
from ...heads import MLP
from ...losses import moco_v2_loss
from ...queues import enqueue
from ...schedules import TrainingProgress, reset_teacher, teacher_copy, update_momentum
from ...transforms import MultiViewTransform
from ..vision import VisionSSLPreTrainedModel, multi_view_transform
from .configuration_moco_v2 import MoCoV2Config

logger = logging.getLogger(__name__)


@dataclass
class MoCoV2Output(ModelOutput):
    """
    Args:
        loss: scalar symmetrised InfoNCE ``(L(q1, k2) + L(q2, k1)) / 2`` (>= 0), present when ``return_loss``.
        embeddings: (2B, projection_dim) queries q of both views (the query encoder's projections, before
            their L2-normalisation), view-major.
        features: (2B, D) pooled query-encoder backbone features of both views, view-major.
    """

    loss: torch.FloatTensor | None = None
    embeddings: torch.FloatTensor | None = None
    features: torch.FloatTensor | None = None


class MoCoV2Model(VisionSSLPreTrainedModel):
    """MoCo v2: ``backbone`` and ``projection_head`` are the query encoder f_q (trained); ``teacher_backbone``
    and ``teacher_projection_head`` the key encoder f_k (a momentum copy, no gradient); ``queue`` (K, C) holds
    the K most recent L2-normalised keys, the negatives, and ``queue_pointer`` where the next key goes. All are
    in the state dict, so ``save_pretrained`` and Trainer checkpoints carry the key encoder and the queue, and
    a resumed run continues with the queue the interrupted one had.

    The head is MoCo v2's MLP, ``Linear(D, 2048) -> ReLU -> Linear(2048, 128)`` with biases and **no**
    BatchNorm (the released code's ``nn.Sequential(nn.Linear(d, d), nn.ReLU(), fc)``), unlike SimCLR's head
    (:class:`~hfssl.heads.ProjectionHead`).

    Choices (documented here because they differ from the paper's Algorithm 1):

    * **Symmetrised loss.** Both views are queries and keys: ``(L(q1, k2) + L(q2, k1)) / 2``, the form Chen &
      He 2021 ("Exploring Simple Siamese Representation Learning") use in their MoCo v2 reproduction and that
      MoCo v3 (Chen, Xie & He 2021) adopts, rather than the paper's asymmetric ``L(q1, k2)``. The query
      encoder runs on both views anyway (``embeddings`` and ``features``, which the collapse monitors read,
      cover both), the key encoder's pass over both views is gradient-free, and each image gives two training signals
      a step. The mean (not the sum) keeps the loss on the scale of the paper's.
    * **Both views' keys are enqueued**, k1 then k2: 2N keys per step of N images, so K = 65536 holds the
      keys of K / 2N steps. Every process enqueues the keys of the *global* batch (gathered,
      :func:`hfssl.distributed.gather`), in rank order, so all processes hold the same queue.
    * **No shuffling BN.** MoCo shuffles the key encoder's batch across GPUs so that BatchNorm statistics
      cannot leak which key belongs to which query. Here the backbone's BatchNorm normalises over each
      process's batch (DDP keeps per-process statistics); ``--sync_batchnorm`` (GPUs) makes them global.
      Neither is shuffling BN: with a BatchNorm backbone on one device the statistics are shared by queries
      and keys, as in SimCLR and BYOL here.

    The queue is updated in the training forward, after the loss (a key is never a negative of its own
    query), and never in evaluation forwards (``model.eval()``). A non-finite key (a diverging step that
    ``--nan_policy skip`` drops) leaves its queue slot unchanged instead of poisoning every later loss.
    """

    config_class = MoCoV2Config
    replicated_buffers = ("queue", "queue_pointer")  # the same on every process: not broadcast by DDP at each step
    # Read by the trainer's guards (hfssl.training.guards.check_run_can_learn) before the first step.
    min_global_batch_size = 1
    min_global_batch_reason = (
        "MoCo's negatives come from its queue, not from the batch, and its MLP head has no BatchNorm: one image "
        "a step can learn."
    )
    collapse_hint = (
        "MoCo contrasts every query with the K queued keys, so a collapse points at the keys: a key-encoder "
        "momentum too low (keep it at 0.99-0.999, so that the queued keys stay consistent), a temperature tau too "
        "high (0.07-0.2 are usual), or a queue larger than one epoch of keys (the same images are then their own "
        "negatives)."
    )

    def __init__(self, config: MoCoV2Config):
        super().__init__(config)
        # query encoder f_q: self.backbone followed by MoCo v2's MLP head (no BatchNorm)
        self.projection_head = MLP(
            [self.feature_dim, config.projection_hidden_dim, config.projection_dim], batch_norm=False
        )
        self.post_init()
        # key encoder f_k: a copy of the initialised query encoder (never re-initialised)
        self.teacher_backbone = teacher_copy(self.backbone)
        self.teacher_projection_head = teacher_copy(self.projection_head)
        self.momentum = config.momentum
        # the queue of K keys, random unit vectors at first (as MoCo's code), and where the next key goes
        queue = F.normalize(torch.randn(config.queue_size, config.projection_dim), dim=1)
        self.register_buffer("queue", queue)  # (K, C)
        self.register_buffer("queue_pointer", torch.zeros((), dtype=torch.long))

    def forward(self, views: Sequence[torch.Tensor], return_loss: bool = True) -> MoCoV2Output:
        """
        Args:
            views: the two normalised views x1, x2 of the same B images, each (B, C, H, W) (or a (2, B, C, H, W)
                tensor).
            return_loss: compute the loss (and, in training mode, enqueue this step's keys).
        """
        if len(views) != 2:
            raise ValueError(f"MoCo v2 takes exactly 2 views of each image, got {len(views)}.")
        x = torch.cat(list(views))  # (2B, C, H, W): x1 then x2, one pass per encoder
        h = self.get_image_features(x)  # query-encoder features
        q = self.projection_head(h)  # queries q = f_q(x), (2B, C)
        loss = None
        if return_loss:
            with torch.no_grad():  # no gradient to keys
                k = self.teacher_projection_head(pooled_features(self.teacher_backbone, x, self.config.pooling))
                k = F.normalize(k, dim=1)  # keys k = f_k(x), (2B, C), unit rows
            q1, q2 = q.chunk(2)
            k1, k2 = k.chunk(2)
            # the queue as it was before this step's keys: a snapshot, since the enqueue below writes in place
            loss = moco_v2_loss(q1, q2, k1, k2, self.queue.clone(), self.config.tau)
            if self.training:
                self._dequeue_and_enqueue(k)
        return MoCoV2Output(loss=loss, embeddings=q, features=h)

    # ---- the queue ----------------------------------------------------------------------------
    @torch.no_grad()
    def _dequeue_and_enqueue(self, keys: torch.Tensor) -> None:
        """Write this step's keys (2B, C), gathered from every process, over the oldest ones: global keys
        ``[k1 of rank 0, 1, ...; k2 of rank 0, 1, ...]``, the order one process has on the concatenated batch.

        Positions wrap around the end of the queue, so K need not be a multiple of the global batch; when a
        step brings more keys than K, the newest K remain. Non-finite keys keep the slot's old key."""
        dim = keys.shape[1]
        k1, k2 = gather(torch.cat(keys.chunk(2), dim=1)).split(dim, dim=1)  # one gather for both views
        enqueue(self.queue, self.queue_pointer, torch.cat([k1, k2]))  # (2N, C)

    def check_training_set(self, rows: int, global_batch: int, drop_last: bool) -> None:
        """Before the first step (:func:`hfssl.training.guards.check_run_can_learn`): warn when the queue holds
        more keys than one epoch of ``rows`` images enqueues (2 views x the images of its full batches): the
        oldest queued keys are then of the images of the current batch, which become negatives of themselves."""
        images = rows // global_batch * global_batch if drop_last else rows
        keys_per_epoch = 2 * images
        if self.config.queue_size > keys_per_epoch and rank() == 0:  # every process holds the same queue: once
            logger.warning(
                "MoCo v2's queue_size %d is larger than the %d keys one epoch enqueues (2 views x %d images): the "
                "queue holds keys of the same images as the current batch, which then count as negatives of "
                "themselves. Lower queue_size to at most %d (--config_overrides queue_size=N), or train on more "
                "images.",
                self.config.queue_size,
                keys_per_epoch,
                images,
                keys_per_epoch,
            )

    # ---- the key encoder's EMA (step hooks, see hfssl.schedules) ------------------------------
    def on_train_start(self, progress: TrainingProgress) -> None:
        """A run from step 0 starts the key encoder as a copy of the query encoder (MoCo's initialisation), so
        a backbone loaded after construction reaches it too; a resumed run keeps the key encoder and the queue
        its checkpoint holds."""
        if progress.step == 0:
            reset_teacher(self.backbone, self.teacher_backbone)
            reset_teacher(self.projection_head, self.teacher_projection_head)
        self.momentum = self.config.momentum

    def after_optimizer_step(self, progress: TrainingProgress) -> None:
        """``theta_k <- m theta_k + (1 - m) theta_q`` (eq. 2), with the constant momentum m."""
        update_momentum(self.backbone, self.teacher_backbone, self.momentum)
        update_momentum(self.projection_head, self.teacher_projection_head, self.momentum)


def moco_v2_batch_transform(model: MoCoV2Model, image_processor=None) -> MultiViewTransform:
    """Two views of every image, both drawn from MoCo v2's augmentation (:func:`hfssl.augment.moco_v2_recipe`:
    crop from ``min_crop_scale`` up, flip, colour jitter, greyscale, blur) at the config's ``image_size``,
    normalised as ``image_processor``.

    Batch: ``{"pixel_values": uint8 (B, C, H, W)}`` -> ``{"views": [2 x (B, C', S, S)]}``."""
    config = model.config
    recipe = moco_v2_recipe(config.image_size, config.min_crop_scale)
    return multi_view_transform(config, [recipe, recipe], image_processor)
