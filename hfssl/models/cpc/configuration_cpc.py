"""Contrastive predictive coding configuration."""

from __future__ import annotations

from ...pretext import patch_grid_geometry
from ..checks import require, require_int, require_optional_int, require_probability, require_real
from ..vision import VisionSSLConfig, require_tile_size


class CPCConfig(VisionSSLConfig):
    """Configuration of :class:`~hfssl.models.cpc.CPCModel`.

    van den Oord et al. 2018, "Representation Learning with Contrastive Predictive Coding", sec. 3.2 (images), and
    Henaff et al. 2020, "Data-Efficient Image Recognition with Contrastive Predictive Coding". The image (resized to
    ``image_size``, lightly augmented) is cut into a ``grid_size`` x ``grid_size`` grid of patches overlapping by
    half (the papers': 64 px patches every 32 px of 256 px images, 7 x 7); each patch is encoded by the backbone, a
    context network that sees only the rows above and the current one summarises them, and linear predictions of
    the patches 1 to ``prediction_steps`` rows below are scored by InfoNCE against every patch of the global batch.

    Args:
        backbone_config, pooling, image_size: see :class:`~hfssl.models.vision.VisionSSLConfig`.
        grid_size: G, patches per side (>= 2).
        prediction_steps: K, the rows ahead predicted (the papers predict up to 5 rows on a 7 x 7 grid), 1 to G - 1.
        context_layers: causal convolutions in the context network (>= 1).
        context_kernel_size: their kernel: each looks this many rows up, this many columns wide (odd, >= 1).
        context_dim: their width; None: the backbone's feature width.
        min_crop_scale, flip_probability: the light augmentation of the whole image before it is cut.

    Every field is checked at construction (:class:`~hfssl.models.checks.CheckedConfig`).
    """

    model_type = "hfssl_cpc"

    grid_size: int = 7
    prediction_steps: int = 5
    context_layers: int = 3
    context_kernel_size: int = 3
    context_dim: int | None = None
    min_crop_scale: float = 0.5
    flip_probability: float = 0.5

    @property
    def patch_size(self) -> int:
        """Side of a patch in pixels."""
        return patch_grid_geometry(self.image_size, self.grid_size)[0]

    def check_ranges(self) -> None:
        """``grid_size`` an int >= 2; ``prediction_steps`` in [1, grid_size - 1]; the context's layers an int >= 1,
        its kernel odd, its width None or >= 1; ``min_crop_scale`` in (0, 1]; the patches at least 2 px and one
        ViT patch."""
        super().check_ranges()
        require_int(self, "grid_size", 2, "patches per side")
        require_int(self, "prediction_steps", 1, "rows ahead predicted")
        require(self, "prediction_steps", self.prediction_steps < self.grid_size, f"< grid_size ({self.grid_size})")
        require_int(self, "context_layers", 1, "causal convolutions of the context network")
        require_int(self, "context_kernel_size", 1, "the context network's kernel")
        require(self, "context_kernel_size", self.context_kernel_size % 2 == 1, "odd (centred on the column)")
        require_optional_int(self, "context_dim", 1, "None: the backbone's feature width")
        require_real(self, "min_crop_scale", 0, 1, low_open=True, hint="the smallest area share of a crop")
        require_probability(self, "flip_probability")
        require_tile_size(
            self,
            self.patch_size,
            f"a {self.grid_size} x {self.grid_size} grid of patches overlapping by half",
            lambda patch: (self.grid_size + 1) * ((patch + 1) // 2),
        )
