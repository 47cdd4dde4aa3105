"""SwAV configuration."""

from __future__ import annotations

from ..checks import require_crop_scale, require_int, require_optional_int, require_real
from ..vision import VisionSSLConfig, derived_local_crop_size

# Training images per prototype below which sized_for_data lowers num_prototypes (SwAV's 3000 prototypes over
# ImageNet's 1.28M images are ~430 each; 16 keeps every prototype populated in each epoch of a small set).
MIN_IMAGES_PER_PROTOTYPE = 16
MIN_PROTOTYPES = 10


class SwAVConfig(VisionSSLConfig):
    """Configuration of :class:`~hfssl.models.swav.SwAVModel`.

    Caron, Misra, Mairal, Goyal, Bojanowski & Joulin 2020, "Unsupervised Learning of Visual Features by
    Contrasting Cluster Assignments" (sec. 3, 4 and appendix; their code, ``main_swav.py``). Defaults are the
    paper's: a projection head 2048 -> 128 (BatchNorm and ReLU between), 3000 prototypes, temperature 0.1,
    Sinkhorn-Knopp with epsilon 0.05 for 3 iterations, multi-crop with 2 global crops (area share 0.14-1) and 6
    local ones of 96 px beside 224 (0.05-0.14), SimCLR's colour distortion, prototypes frozen during the first
    epoch, and no queue (the paper adds one of 3840 embeddings for batches of 256, from epoch 15). The optimizer
    is not part of the model: the paper trains with LARS (``--use_lars``; learning rate 4.8 at batch 4096, weight
    decay 1e-6) on a cosine schedule.

    For a small training set the recipe lowers ``num_prototypes`` to one per 16 images (at least 10;
    :meth:`sized_for_data`, logged); ``--config_overrides num_prototypes=N`` keeps N.

    Args:
        backbone_config, pooling, image_size: see :class:`~hfssl.models.vision.VisionSSLConfig`; ``image_size`` is
            the side of the global crops (paper: 224).
        projection_hidden_dim: hidden width of the projection head (paper: 2048).
        projection_dim: output width of the head, the space of the prototypes (paper: 128).
        projection_num_layers: Linear layers of the head (paper: 2; 1 is a linear projection).
        num_prototypes: K, the number of prototypes (paper: 3000).
        temperature: tau of the swapped prediction's softmax (paper: 0.1).
        sinkhorn_epsilon: entropy regularisation of the Sinkhorn-Knopp assignment (paper: 0.05).
        sinkhorn_iterations: Sinkhorn-Knopp iterations (paper: 3).
        num_local_crops: local crops per image (paper: 6).
        local_image_size: side of the local crops; None: ``round(image_size * 96 / 224)``, read through
            :attr:`local_crop_size`.
        global_crop_scale, local_crop_scale: (min, max) area shares of the random resized crops (paper: (0.14, 1)
            and (0.05, 0.14)).
        freeze_prototypes_epochs: epochs during which the prototypes get no update (paper: 313 iterations at batch
            4096, one epoch).
        queue_size: embeddings of past batches per global crop whose scores join the Sinkhorn-Knopp assignment
            (paper: 0, or 3840 for batches of 256); 0 turns the queue off.
        queue_start_epochs: epoch from which the queue is filled and used (paper: 15).

    Every field is checked at construction (:class:`~hfssl.models.checks.CheckedConfig`).
    """

    model_type = "hfssl_swav"

    projection_hidden_dim: int = 2048
    projection_dim: int = 128
    projection_num_layers: int = 2
    num_prototypes: int = 3000
    temperature: float = 0.1
    sinkhorn_epsilon: float = 0.05
    sinkhorn_iterations: int = 3
    num_local_crops: int = 6
    local_image_size: int | None = None
    global_crop_scale: list[float] | tuple[float, float] = (0.14, 1.0)
    local_crop_scale: list[float] | tuple[float, float] = (0.05, 0.14)
    freeze_prototypes_epochs: float = 1.0
    queue_size: int = 0
    queue_start_epochs: float = 15.0

    @property
    def local_crop_size(self) -> int:
        """The side of the local crops: ``local_image_size``, else ``round(image_size * 96 / 224)`` (at least 1)."""
        return derived_local_crop_size(self.image_size, self.local_image_size)

    def sized_for_data(self, num_images: int | None) -> dict:
        """Fewer prototypes for a small set: ``num_images // 16`` (at least 10) when that is below
        ``num_prototypes``; nothing otherwise."""
        if not num_images:
            return {}
        scaled = max(num_images // MIN_IMAGES_PER_PROTOTYPE, MIN_PROTOTYPES)
        return {"num_prototypes": scaled} if scaled < self.num_prototypes else {}

    def check_ranges(self) -> None:
        """Widths, layers, prototypes and iterations are ints >= 1; ``num_local_crops`` and ``queue_size`` ints
        >= 0; ``local_image_size`` None or an int >= 1; crop scales pairs ``0 < min <= max <= 1``; temperature and
        epsilon > 0; epoch counts >= 0."""
        super().check_ranges()
        for name in ("projection_hidden_dim", "projection_dim"):
            require_int(self, name, 1, "a layer width")
        require_int(self, "projection_num_layers", 1, "the Linear layers of the projection head")
        require_int(self, "num_prototypes", 1, "K, the number of prototypes")
        require_int(self, "sinkhorn_iterations", 1, "Sinkhorn-Knopp iterations (paper: 3)")
        require_int(self, "num_local_crops", 0, "local crops per image; 0 trains on the 2 global crops alone")
        require_optional_int(self, "local_image_size", 1, "the side of the local crops; None derives it")
        require_int(self, "queue_size", 0, "queued embeddings per global crop; 0 turns the queue off")
        for name in ("global_crop_scale", "local_crop_scale"):
            require_crop_scale(self, name)
        require_real(self, "temperature", 0, low_open=True, hint="a softmax temperature")
        require_real(self, "sinkhorn_epsilon", 0, low_open=True, hint="the entropy regularisation (paper: 0.05)")
        require_real(self, "freeze_prototypes_epochs", 0, hint="epochs; 0 never freezes the prototypes")
        require_real(self, "queue_start_epochs", 0, hint="the epoch from which the queue is used")
