"""Jigsaw configuration."""

from __future__ import annotations

import math

from ...pretext import GRID, grid_geometry
from ..checks import require, require_bool, require_int
from ..vision import VisionSSLConfig, require_tile_grid

TILES = GRID * GRID


class JigsawConfig(VisionSSLConfig):
    """Configuration of :class:`~hfssl.models.jigsaw.JigsawModel`.

    Noroozi & Favaro 2016, "Unsupervised Learning of Visual Representations by Solving Jigsaw Puzzles". The image
    (resized to ``image_size``) is cut into a 3 x 3 grid (:mod:`hfssl.pretext`); the paper's tiles are 64 px drawn
    anywhere in 75 px cells (``tile_fraction`` 0.85, ``jitter`` 1), shuffled by one of a fixed set of permutations
    chosen far apart in Hamming distance (100 in its main experiments).

    The paper also normalises every tile on its own; hfssl leaves that off by default (``standardize_tiles``): the
    backbone's BatchNorm statistics then come from tiles of another distribution than the whole images it is
    evaluated and used on. On cpu-2, ``recipes/pretrain_vision.py --method jigsaw --idx_dir
    ../shared/data/fashion-mnist --max_train_samples 3000 --max_eval_samples 500 --backbone resnet-tiny --image_size 32
    --per_device_train_batch_size 64 --max_steps 300 --learning_rate 3e-3 --warmup_steps 0.05 --final_protocols knn
    --seed S`` gave a kNN margin over random init of +0.082/+0.052/+0.084 (seeds 0/1/2) without it and
    +0.052/-0.002/-0.006 with ``--config_overrides standardize_tiles=true``.

    Args:
        backbone_config, pooling, image_size: see :class:`~hfssl.models.vision.VisionSSLConfig`.
        tile_fraction: side of a tile over the side of its cell, in (0, 1].
        jitter: how far a tile moves from the centre of its cell, as a share of the room it has, in [0, 1].
        standardize_tiles: normalise every tile to mean 0 and std 1 on its own (the paper's; off by default).
        num_permutations: size of the permutation set, the number of classes (2 to 9!).
        permutations: the set itself, ``num_permutations`` lists of the 9 cells in the order shown; None: the
            model fills in :func:`hfssl.pretext.hamming_permutation_set` when it is built, so the saved config
            carries the set the checkpoint was trained with.
        classifier_hidden_dim: width of the hidden layer on the 9 tiles' concatenated features; 0 for a linear
            classifier.

    Every field is checked at construction (:class:`~hfssl.models.checks.CheckedConfig`).
    """

    model_type = "hfssl_jigsaw"

    tile_fraction: float = 0.85
    jitter: float = 1.0
    standardize_tiles: bool = False
    num_permutations: int = 100
    permutations: list[list[int]] | None = None
    classifier_hidden_dim: int = 512

    @property
    def tile_size(self) -> int:
        """Side of a tile in pixels."""
        return grid_geometry(self.image_size, self.tile_fraction)[1]

    def check_ranges(self) -> None:
        """``tile_fraction`` in (0, 1], ``jitter`` in [0, 1]; ``num_permutations`` an int in [2, 9!]; ``permutations``
        None or that many distinct orderings of the 9 cells; the classifier width an int >= 0; the tiles at least
        2 px and one ViT patch."""
        super().check_ranges()
        require_bool(self, "standardize_tiles")
        require_int(self, "num_permutations", 2, "the classes of the puzzle")
        require(self, "num_permutations", self.num_permutations <= math.factorial(TILES), f"<= {TILES}! orderings")
        if self.permutations is not None:
            orderings = {tuple(p) for p in self.permutations if isinstance(p, (list, tuple))}
            valid = len(orderings) == len(self.permutations) == self.num_permutations and all(
                sorted(p) == list(range(TILES)) for p in orderings
            )
            require(
                self,
                "permutations",
                valid,
                f"None or {self.num_permutations} distinct orderings of the cells 0-{TILES - 1} "
                "(leave it unset to get the Hamming set of num_permutations)",
            )
        require_int(self, "classifier_hidden_dim", 0, "0 for a linear classifier")
        require_tile_grid(self)
