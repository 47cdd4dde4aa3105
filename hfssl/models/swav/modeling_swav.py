"""SwAV as a transformers ``PreTrainedModel``.

Caron et al. 2020, "Unsupervised Learning of Visual Features by Contrasting Cluster Assignments". Reads like
the paper's Algorithm 1::

    C = normalize(C, dim=0)                         # prototypes on the unit sphere (before each step)
    z = normalize(g(f(crops)), dim=1)               # embeddings of every crop: 2 global + N local
    scores = z @ C                                  # prototype scores, (V B) x K
    with no_grad:                                   # codes of the global crops, equipartitioned over
        q_g = sinkhorn(scores_g)                    #   the global batch (and the queue)
    loss = mean over g, v != g of  - sum(q_g * log softmax(scores_v / tau))   # swapped prediction

with f the backbone, g the projection head and C the prototypes (:class:`hfssl.heads.Prototypes`). The codes
come from :func:`hfssl.losses.sinkhorn_knopp`, whose row and column sums are all-reduced: every process
assigns its images as one process would on the concatenated batch. The prototypes are frozen during the first
epoch; an optional queue of past embeddings joins the assignment for small batches. The crops are made on the
device, inside the training step, by the batch transform :func:`swav_batch_transform` builds from the config.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers.utils import ModelOutput

from ...augment import swav_multi_crop_recipes
from ...distributed import gather, rank
from ...heads import ProjectionHead, Prototypes
from ...losses import sinkhorn_knopp, swav_loss
from ...queues import enqueue
from ...schedules import TrainingProgress
from ...transforms import MultiViewTransform
from ..vision import VisionSSLPreTrainedModel, multi_view_transform, same_size_runs
from .configuration_swav import SwAVConfig

logger = logging.getLogger(__name__)

NUM_GLOBAL_CROPS = 2


@dataclass
class SwAVOutput(ModelOutput):
    """
    Args:
        loss: scalar swapped-prediction loss (>= 0; ``log K`` for uniform scores), present when ``return_loss``.
        embeddings: (2B, projection_dim) L2-normalised embeddings z of the 2 global crops, view-major.
        features: (2B, D) pooled backbone features of the 2 global crops, view-major.
        codes: (2, B, K) the Sinkhorn-Knopp codes of the global crops (rows summing to 1), present with the loss.
    """

    loss: torch.FloatTensor | None = None
    embeddings: torch.FloatTensor | None = None
    features: torch.FloatTensor | None = None
    codes: torch.FloatTensor | None = None


class SwAVModel(VisionSSLPreTrainedModel):
    """SwAV: ``backbone``, ``projection_head`` (:class:`hfssl.heads.ProjectionHead`) and ``prototypes``
    (:class:`hfssl.heads.Prototypes`, K unit vectors); ``queue`` (L, 2, d) the embeddings of the two global crops of
    the L most recent images (``queue_size`` L, 0 without a queue), with ``queue_pointer`` (where the next image
    goes) and ``queue_filled`` (how many rows hold embeddings). All are in the state dict, so checkpoints carry the
    queue and a resumed run continues with it.

    The queue holds the embeddings of the global batch (gathered from every process), the same on every process.
    Its rows join the Sinkhorn-Knopp assignment of each global crop once: on process 0, whose rows are summed with
    every other process's, so the assignment is that of one process holding the queue and the concatenated batch.
    From ``queue_start_epochs`` on, every training forward scores the filled rows against the current prototypes,
    then enqueues its own embeddings (after its codes: an image never meets itself). The paper waits for a full
    queue; here the filled rows are used from the start.
    """

    config_class = SwAVConfig
    replicated_buffers = (
        "queue",
        "queue_pointer",
        "queue_filled",
    )  # the same on every process: not broadcast by DDP at each step
    # Read by the trainer's guards (hfssl.training.guards.check_run_can_learn) before the first step.
    min_global_batch_size = 2
    min_global_batch_reason = (
        "SwAV spreads the images of each batch evenly over its prototypes (Sinkhorn-Knopp), and its projection "
        "head normalises with BatchNorm: one image gives no partition and no batch statistics."
    )
    collapse_hint = (
        "SwAV's equipartition forbids assigning every image to one prototype, so a collapse points at the "
        "assignment: a sinkhorn_epsilon too large (codes near uniform; 0.05 is the paper's), too few images per "
        "step for the prototypes (use a queue: queue_size=3840 at batch 256 with 3000 prototypes, or fewer "
        "num_prototypes), or prototypes updated from the first step (freeze_prototypes_epochs=1)."
    )

    def __init__(self, config: SwAVConfig):
        super().__init__(config)
        self.projection_head = ProjectionHead(
            self.feature_dim, config.projection_hidden_dim, config.projection_dim, config.projection_num_layers
        )
        self.prototypes = Prototypes(config.projection_dim, config.num_prototypes)
        self.register_buffer("queue", torch.zeros(config.queue_size, NUM_GLOBAL_CROPS, config.projection_dim))
        self.register_buffer("queue_pointer", torch.zeros((), dtype=torch.long))
        self.register_buffer("queue_filled", torch.zeros((), dtype=torch.long))
        self.post_init()
        # whether this step reads and fills the queue: set by the step hooks from the progress (off outside training)
        self.use_queue = False

    def forward(self, views: Sequence[torch.Tensor], return_loss: bool = True) -> SwAVOutput:
        """
        Args:
            views: the normalised crops of the same B images, the 2 global crops (B, C, S, S) first, then the local
                crops (B, C, s, s) (:func:`swav_batch_transform`'s order).
            return_loss: compute the loss (and, in training mode with the queue on, enqueue the global crops'
                embeddings).
        """
        views = list(views)
        if len(views) < NUM_GLOBAL_CROPS or views[0].shape != views[1].shape:
            raise ValueError(
                f"SwAV takes the 2 global crops (of equal shape) first, then any local crops; got {len(views)} "
                f"views of shapes {[tuple(v.shape) for v in views]}."
            )
        num_views, batch_size = len(views), views[0].shape[0]
        # one backbone pass per run of crops of one size (SwAV's MultiCropWrapper), one head pass for all
        features = torch.cat([self.get_image_features(torch.cat(run)) for run in same_size_runs(views)])  # (V B, D)
        z = F.normalize(self.projection_head(features), dim=1)  # (V B, d), unit rows
        scores = self.prototypes(z)  # (V B, K): z . c_k
        num_global_rows = NUM_GLOBAL_CROPS * batch_size
        loss = codes = None
        if return_loss:
            codes = self.assign_codes(z[:num_global_rows], scores[:num_global_rows])  # (2, B, K), no gradient
            loss = swav_loss(scores.view(num_views, batch_size, -1), codes, self.config.temperature)
            if self.training and self.use_queue:
                self._enqueue(z[:num_global_rows].detach())
        return SwAVOutput(loss=loss, embeddings=z[:num_global_rows], features=features[:num_global_rows], codes=codes)

    # ---- codes and the queue ----------------------------------------------------------------------
    @torch.no_grad()
    def assign_codes(self, global_embeddings: torch.Tensor, global_scores: torch.Tensor) -> torch.Tensor:
        """The codes q of each global crop: Sinkhorn-Knopp over the global batch's scores of that crop, with the
        queue's scores of the same crop (on process 0) when the queue is on.

        Args:
            global_embeddings: (2B, d) unit embeddings of the 2 global crops, view-major (for the shapes only).
            global_scores: (2B, K) their prototype scores.

        Returns:
            (2, B, K) float32 codes, rows summing to 1.
        """
        batch_size = global_embeddings.shape[0] // NUM_GLOBAL_CROPS
        queued = self.queue[: int(self.queue_filled)] if self.use_queue else self.queue[:0]
        codes = []
        for crop, crop_scores in enumerate(global_scores.detach().chunk(NUM_GLOBAL_CROPS)):
            if queued.shape[0] and rank() == 0:  # the queue counts once in the all-reduced sums
                crop_scores = torch.cat([self.prototypes(queued[:, crop]).to(crop_scores.dtype), crop_scores])
            assignment = sinkhorn_knopp(crop_scores, self.config.sinkhorn_epsilon, self.config.sinkhorn_iterations)
            codes.append(assignment[-batch_size:])
        return torch.stack(codes)

    @torch.no_grad()
    def _enqueue(self, global_embeddings: torch.Tensor) -> None:
        """Write the global batch's embeddings (gathered from every process, in rank order) over the oldest rows:
        (2B, d) view-major -> (N, 2, d) rows of both crops of each image."""
        rows = torch.stack(global_embeddings.chunk(NUM_GLOBAL_CROPS), dim=1)  # (B, 2, d)
        enqueue(self.queue, self.queue_pointer, gather(rows), self.queue_filled)

    def check_training_set(self, rows: int, global_batch: int, drop_last: bool) -> None:
        """Before the first step (:func:`hfssl.training.guards.check_run_can_learn`): warn when the prototypes
        outnumber the images a step assigns (the global batch, plus the queue when there is one), so that the
        equipartition spreads each image over several prototypes (the paper adds a queue for batches of 256), and
        when they outnumber the training images."""
        if rank() != 0:
            return
        config = self.config
        assigned = global_batch + config.queue_size
        if config.num_prototypes > assigned:
            logger.warning(
                "SwAV's %d prototypes outnumber the %d images one step assigns (global batch %d, queue %d): "
                "Sinkhorn-Knopp then cannot give each prototype a whole image. Add a queue (--config_overrides "
                "queue_size=N, with N + batch above num_prototypes; the paper uses 3840 at batch 256 with 3000 "
                "prototypes), raise the batch, or lower num_prototypes.",
                config.num_prototypes,
                assigned,
                global_batch,
                config.queue_size,
            )
        if config.num_prototypes > rows:
            logger.warning(
                "SwAV's %d prototypes outnumber the %d training images: lower num_prototypes (--config_overrides "
                "num_prototypes=N; about one per 16 images or fewer).",
                config.num_prototypes,
                rows,
            )

    # ---- step hooks (hfssl.schedules) --------------------------------------------------------------
    def frozen_prototype_steps(self, progress: TrainingProgress) -> int:
        """The first optimizer steps during which the prototypes get no update (paper: 1 epoch)."""
        return progress.epochs_to_steps(self.config.freeze_prototypes_epochs)

    def queue_is_used_at(self, progress: TrainingProgress) -> bool:
        """Whether the step after ``progress.step`` reads and fills the queue (from ``queue_start_epochs`` on)."""
        return self.config.queue_size > 0 and progress.step >= progress.epochs_to_steps(self.config.queue_start_epochs)

    def on_train_start(self, progress: TrainingProgress) -> None:
        """Prototypes on the unit sphere, and the queue on or off for the step training starts (or resumes) at."""
        self.prototypes.normalize_()
        self.use_queue = self.queue_is_used_at(progress)

    def before_optimizer_step(self, progress: TrainingProgress) -> None:
        """Freeze the prototypes during the first ``freeze_prototypes_epochs``: drop their gradient."""
        if progress.step < self.frozen_prototype_steps(progress):
            self.prototypes.cancel_gradients()

    def after_optimizer_step(self, progress: TrainingProgress) -> None:
        """Back to unit prototypes (SwAV normalises them before every step), and the queue for the next step."""
        self.prototypes.normalize_()
        self.use_queue = self.queue_is_used_at(progress)


def swav_batch_transform(model: SwAVModel, image_processor=None) -> MultiViewTransform:
    """SwAV's multi-crop (:func:`hfssl.augment.swav_multi_crop_recipes`): 2 global crops of the config's
    ``image_size`` (area share ``global_crop_scale``) and ``num_local_crops`` local crops of ``local_crop_size``
    (``local_crop_scale``), with SimCLR's colour distortion and blur, normalised as ``image_processor``.

    Batch: ``{"pixel_values": uint8 (B, C, H, W)}`` -> ``{"views": [2 x (B, C', S, S)] + [N x (B, C', s, s)]}``."""
    config = model.config
    recipes = swav_multi_crop_recipes(
        config.image_size,
        config.local_crop_size,
        config.num_local_crops,
        global_crop_scale=tuple(config.global_crop_scale),
        local_crop_scale=tuple(config.local_crop_scale),
    )
    return multi_view_transform(config, recipes, image_processor)
