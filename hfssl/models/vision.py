"""What every vision SSL model shares: a nested transformers backbone, pooled features, export.

A method's config subclasses :class:`VisionSSLConfig` (which nests the backbone's config as
``backbone_config``) and its model subclasses :class:`VisionSSLPreTrainedModel` (which builds
``self.backbone`` from it). One level of inheritance, nothing more.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
from transformers import AutoConfig, AutoImageProcessor, PreTrainedConfig, PreTrainedModel
from transformers.configuration_utils import SubConfigSpec
from transformers.utils import ModelOutput

from ..augment import ViewGenerator, default_normalization
from ..backbones import POOLING_CHOICES, backbone_feature_dim, build_backbone, pooled_features
from ..distributed import broadcast_
from ..pretext import GRID
from ..transforms import MultiViewTransform
from .checks import CheckedConfig, require_choice, require_int, require_real
from .export import saved_preprocessor


class VisionSSLConfig(CheckedConfig):
    """Base config of vision SSL models.

    Args:
        backbone_config: config (or dict with ``model_type``) of any transformers vision encoder;
            defaults to a ViT-Base config.
        pooling: how the backbone's output becomes one (D,) vector per image: ``"auto"``,
            ``"cls"``, ``"mean"`` or ``"pooler"`` (see :mod:`hfssl.backbones`).
        image_size: side of the square training views (the recipe's ``--image_size``); a method's
            batch transform makes its views from it (multi-crop methods derive their local size).
    """

    sub_configs_defaults = {"backbone_config": SubConfigSpec(config_class=AutoConfig, model_type="vit")}

    backbone_config: dict | PreTrainedConfig | None = None
    pooling: str = "auto"
    image_size: int = 224

    def check_ranges(self) -> None:
        """``pooling`` is one of :data:`hfssl.backbones.POOLING_CHOICES`; ``image_size`` an int >= 1."""
        super().check_ranges()
        require_choice(self, "pooling", POOLING_CHOICES)
        require_int(self, "image_size", 1, "the side of the views in pixels")

    @property
    def num_channels(self) -> int:
        """Channels the backbone takes (3 unless its config says otherwise)."""
        return getattr(self.backbone_config, "num_channels", 3)

    def sized_for_data(self, num_images: int | None) -> dict:
        """Field values that suit a training set of ``num_images`` images better than the paper's defaults
        (e.g. fewer SwAV prototypes for a small set); the recipe applies them before ``--config_overrides``, which
        win, and logs them. None: nothing (a streamed set of unknown length)."""
        return {}


# Multi-crop methods' local crops are 96 px beside 224 px global crops (SwAV, DINO): the default keeps that ratio.
LOCAL_TO_GLOBAL_SIZE = 96 / 224


def derived_local_crop_size(image_size: int, local_image_size: int | None) -> int:
    """``local_image_size``, else ``round(image_size * 96 / 224)`` (at least 1): the side of the local crops."""
    if local_image_size is not None:
        return local_image_size
    return max(round(image_size * LOCAL_TO_GLOBAL_SIZE), 1)


def same_size_runs(views: list[torch.Tensor]) -> list[list[torch.Tensor]]:
    """Consecutive views of one shape, in order: [l1, l2, l3] of sizes (s, s, t) -> [[l1, l2], [l3]] (one backbone
    pass per run, as SwAV's and DINO's multi-crop wrappers)."""
    runs: list[list[torch.Tensor]] = []
    for view in views:
        if runs and runs[-1][0].shape[1:] == view.shape[1:]:
            runs[-1].append(view)
        else:
            runs.append([view])
    return runs


def multi_view_transform(config: VisionSSLConfig, recipes, image_processor=None) -> MultiViewTransform:
    """The batch transform that makes one view per recipe of every image on the device, at the config's
    ``image_size`` (recipes may set their own size) and channels, normalised as ``image_processor``.

    Batch: ``{"pixel_values": uint8 (B, C, H, W)}`` -> ``{"views": [V x (B, C', S_v, S_v)]}``."""
    mean, std = image_normalization(image_processor, config.num_channels)
    return MultiViewTransform(ViewGenerator(list(recipes), config.image_size, config.num_channels, mean, std))


def image_normalization(image_processor, num_channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The (mean, std) of ``image_processor`` (the one saved beside the checkpoint), else the default
    for ``num_channels`` (:func:`hfssl.augment.default_normalization`)."""
    mean, std = getattr(image_processor, "image_mean", None), getattr(image_processor, "image_std", None)
    if mean is None or std is None:
        return default_normalization(num_channels)
    return tuple(mean), tuple(std)


class VisionSSLPreTrainedModel(PreTrainedModel):
    """Base class: ``self.backbone`` is a plain transformers model built from ``config.backbone_config``."""

    main_input_name = "pixel_values"
    base_model_prefix = "hfssl"
    supports_gradient_checkpointing = True
    accepts_loss_kwargs = False  # forward returns a mean loss; Trainer must not rescale it
    # Buffers that every process keeps identical by construction (queues of gathered keys, all-reduced centres).
    # DDP broadcasts every buffer from process 0 before each forward (``broadcast_buffers``), 32 MB a step for MoCo's
    # 65,536 x 128 queue; these are left out of it (``_ddp_params_and_buffers_to_ignore``) and made equal once,
    # when training starts (:meth:`synchronize_replicated_buffers`).
    replicated_buffers: tuple[str, ...] = ()

    def __init__(self, config: VisionSSLConfig):
        super().__init__(config)
        self.backbone = build_backbone(config.backbone_config, config.pooling)
        self.feature_dim = backbone_feature_dim(config.backbone_config)
        if self.replicated_buffers:
            self._ddp_params_and_buffers_to_ignore = list(self.replicated_buffers)

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """``PreTrainedModel.from_pretrained``, with the parameters the model builds without gradient (teachers,
        fixed position embeddings, a frozen patch projection) frozen again: loading makes every parameter
        trainable, and a teacher that asks for gradients makes DDP wait for gradients that never come."""
        loaded = super().from_pretrained(*args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        with torch.device("meta"):  # the same architecture, built without memory, says which parameters are fixed
            fresh = cls(model.config)
        fixed = {name for name, parameter in fresh.named_parameters() if not parameter.requires_grad}
        for name, parameter in model.named_parameters():
            if name in fixed:
                parameter.requires_grad_(False)
        return loaded

    def synchronize_replicated_buffers(self) -> None:
        """Process 0's :attr:`replicated_buffers` on every process (a collective: call it on all of them). The step
        hooks call it when training starts, so a run whose processes built different initial queues (other seeds)
        still shares one."""
        for name in self.replicated_buffers:
            broadcast_(self.get_buffer(name))

    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features of normalised images: (B, C, H, W) -> (B, D)."""
        return pooled_features(self.backbone, pixel_values, self.config.pooling)

    def get_input_embeddings(self) -> None:
        """None: an image model has no token embeddings (accelerate's FSDP2 setup asks for them)."""
        return None

    @property
    def exported_backbone_name(self) -> str:
        """The attribute holding the backbone :meth:`export_backbone` writes: ``"backbone"`` (the trained,
        student network), or ``"teacher_backbone"`` for methods with an EMA teacher whose config sets
        ``export_teacher`` (BYOL, MoCo, DINO: the teacher is a network of the same architecture)."""
        return "teacher_backbone" if getattr(self.config, "export_teacher", False) else "backbone"

    @property
    def exported_network(self) -> str:
        """``"student"`` or ``"teacher"``: which network's backbone is exported (the model card says it)."""
        return "teacher" if self.exported_backbone_name == "teacher_backbone" else "student"

    def export_backbone(self, save_directory: str | os.PathLike, image_processor=None, state_dict=None) -> None:
        """Write the backbone alone (``self.<exported_backbone_name>``) as a plain transformers checkpoint,
        with ``image_processor`` beside it (by default, the one saved in the checkpoint directory this model
        was loaded from): ``transformers.AutoModel.from_pretrained(save_directory)`` loads it in a process that
        never imported hfssl. ``state_dict``: that backbone's full weights when this model's are sharded (FSDP)."""
        getattr(self, self.exported_backbone_name).save_pretrained(save_directory, state_dict=state_dict)
        if image_processor is None:
            image_processor = saved_preprocessor(self, AutoImageProcessor)
        if image_processor is not None:
            image_processor.save_pretrained(save_directory)

    @torch.no_grad()
    def _init_weights(self, module):
        """Heads and decoders only (the backbone initialises itself with its own scheme): Linear layers truncated
        normal (std 0.02), convolutions by PyTorch's default, norms to the identity."""
        if isinstance(module, torch.nn.Conv2d):
            module.reset_parameters()
        elif isinstance(module, torch.nn.Linear):
            torch.nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, (torch.nn.BatchNorm1d, torch.nn.LayerNorm)):
            if module.weight is not None:
                torch.nn.init.ones_(module.weight)
                torch.nn.init.zeros_(module.bias)


@dataclass
class PretextTaskOutput(ModelOutput):
    """What a pretext-task model (rotation, relative position, jigsaw) returns.

    Args:
        loss: scalar cross-entropy of the pretext labels, present when ``return_loss``.
        logits: (N, K) scores of the K pretext classes.
        pretext_accuracy: scalar share of the N examples whose label scores highest (logged during training).
        features: (M, D) pooled backbone features of the inputs (rotated images, or tiles).
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    pretext_accuracy: torch.FloatTensor | None = None
    features: torch.FloatTensor | None = None


def pretext_task_output(
    logits: torch.Tensor, labels: torch.Tensor | None, features: torch.Tensor, return_loss: bool = True
) -> PretextTaskOutput:
    """Cross-entropy of ``logits`` (N, K) against the pretext ``labels`` (N,) and the accuracy, in one output."""
    loss = accuracy = None
    if labels is not None:
        accuracy = (logits.argmax(dim=-1) == labels).float().mean()
        if return_loss:
            loss = torch.nn.functional.cross_entropy(logits.float(), labels)
    elif return_loss:
        raise ValueError("A pretext task's loss needs its labels: pass pretext_labels=... (the batch transform's).")
    return PretextTaskOutput(loss=loss, logits=logits, pretext_accuracy=accuracy, features=features)


def require_tile_grid(config: VisionSSLConfig) -> None:
    """A 3 x 3 tile task's ``tile_fraction`` in (0, 1] and ``jitter`` in [0, 1], and its tiles large enough for the
    backbone (:func:`require_tile_size`)."""
    require_real(config, "tile_fraction", 0, 1, low_open=True, hint="the side of a tile over that of its cell")
    require_real(config, "jitter", 0, 1, hint="the share of a cell's spare room a tile may move by")
    require_tile_size(
        config,
        config.tile_size,
        f"a 3 x 3 grid of tiles {config.tile_fraction:g} of their cell",
        lambda tile: GRID * math.ceil(tile / config.tile_fraction),
    )


def require_tile_size(config: VisionSSLConfig, tile: int, layout: str, image_size_for_tile, minimum: int = 2) -> None:
    """The tiles or patches a grid task cuts (side ``tile``) are large enough for the backbone: at least ``minimum``
    pixels and, for a ViT, one patch. ``layout`` says how they are cut (for the message), ``image_size_for_tile(t)``
    the smallest ``image_size`` that gives tiles of ``t`` px, named as the fix."""
    patch = getattr(config.backbone_config, "patch_size", 1)
    patch = patch if isinstance(patch, int) else max(patch)
    needed = max(minimum, patch)
    if tile < needed:
        raise ValueError(
            f"{type(config).__name__}: tiles of {tile} px (image_size {config.image_size}, {layout}) are smaller than "
            f"the {needed} px the backbone needs"
            + (f" (its patch_size is {patch})" if patch > 1 else "")
            + f"; pass a larger --image_size (at least {image_size_for_tile(needed)})."
        )
