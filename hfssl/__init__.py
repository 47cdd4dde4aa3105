"""hfssl: self-supervised learning on the Hugging Face stack.

Importing hfssl registers every hfssl model type with ``AutoConfig`` and ``AutoModel``, so
``AutoModel.from_pretrained(dir)`` restores an hfssl checkpoint. :data:`METHODS` maps each method
name to its modality, config and model classes, and batch transform.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from transformers import AutoConfig, AutoModel, PreTrainedConfig, PreTrainedModel

from .models.barlow_twins import BarlowTwinsConfig, BarlowTwinsModel, barlow_twins_batch_transform
from .models.bart import BartPretrainingConfig, BartPretrainingModel, bart_batch_transform
from .models.bert import BertPretrainingConfig, BertPretrainingModel, bert_batch_transform
from .models.byol import BYOLConfig, BYOLModel, byol_batch_transform
from .models.clip import CLIPPretrainingConfig, CLIPPretrainingModel, clip_batch_transform
from .models.colorization import ColorizationConfig, ColorizationModel, colorization_batch_transform
from .models.cpc import CPCConfig, CPCModel, cpc_batch_transform
from .models.denoising_ae import DenoisingAEConfig, DenoisingAEModel, denoising_ae_batch_transform
from .models.dino import DINOConfig, DINOModel, dino_batch_transform
from .models.gpt import GPTConfig, GPTModel
from .models.jigsaw import JigsawConfig, JigsawModel, jigsaw_batch_transform
from .models.mae import MAEConfig, MAEModel, mae_batch_transform
from .models.moco_v2 import MoCoV2Config, MoCoV2Model, moco_v2_batch_transform
from .models.moco_v3 import MoCoV3Config, MoCoV3Model, moco_v3_batch_transform
from .models.relative_position import (
    RelativePositionConfig,
    RelativePositionModel,
    relative_position_batch_transform,
)
from .models.rotation import RotationConfig, RotationModel, rotation_batch_transform
from .models.simclr import SimCLRConfig, SimCLRModel, simclr_batch_transform
from .models.simsiam import SimSiamConfig, SimSiamModel, simsiam_batch_transform
from .models.swav import SwAVConfig, SwAVModel, swav_batch_transform
from .models.vicreg import VICRegConfig, VICRegModel, vicreg_batch_transform
from .models.word2vec import Word2VecConfig, Word2VecModel, word2vec_batch_transform

__version__ = "0.1.0"

MODALITIES = ("image", "text", "image-text", "word-vectors")


def no_batch_transform(model: PreTrainedModel, processing_class=None) -> None:
    """For methods whose collated batch is already the model's input (GPT's packed blocks draw nothing)."""
    return None


class Method(NamedTuple):
    """One entry of :data:`METHODS`.

    Attributes:
        modality: ``"image"``, ``"text"``, ``"image-text"`` or ``"word-vectors"``: which recipe and
            evaluation serve the method.
        config_class, model_class: the method's ``PreTrainedConfig`` and ``PreTrainedModel``.
        batch_transform: ``batch_transform(model, processing_class)`` -> the method's batch
            transform (:mod:`hfssl.transforms`), built from ``model.config`` and the tokenizer or image
            processor; None when the collated batch is the input.
    """

    modality: str
    config_class: type[PreTrainedConfig]
    model_class: type[PreTrainedModel]
    batch_transform: Callable = no_batch_transform


METHODS: dict[str, Method] = {
    "simclr": Method("image", SimCLRConfig, SimCLRModel, simclr_batch_transform),
    "byol": Method("image", BYOLConfig, BYOLModel, byol_batch_transform),
    "simsiam": Method("image", SimSiamConfig, SimSiamModel, simsiam_batch_transform),
    "moco_v2": Method("image", MoCoV2Config, MoCoV2Model, moco_v2_batch_transform),
    "moco_v3": Method("image", MoCoV3Config, MoCoV3Model, moco_v3_batch_transform),
    "dino": Method("image", DINOConfig, DINOModel, dino_batch_transform),
    "barlow_twins": Method("image", BarlowTwinsConfig, BarlowTwinsModel, barlow_twins_batch_transform),
    "vicreg": Method("image", VICRegConfig, VICRegModel, vicreg_batch_transform),
    "swav": Method("image", SwAVConfig, SwAVModel, swav_batch_transform),
    "mae": Method("image", MAEConfig, MAEModel, mae_batch_transform),
    "denoising_ae": Method("image", DenoisingAEConfig, DenoisingAEModel, denoising_ae_batch_transform),
    "rotation": Method("image", RotationConfig, RotationModel, rotation_batch_transform),
    "relative_position": Method(
        "image", RelativePositionConfig, RelativePositionModel, relative_position_batch_transform
    ),
    "jigsaw": Method("image", JigsawConfig, JigsawModel, jigsaw_batch_transform),
    "cpc": Method("image", CPCConfig, CPCModel, cpc_batch_transform),
    "colorization": Method("image", ColorizationConfig, ColorizationModel, colorization_batch_transform),
    "clip": Method("image-text", CLIPPretrainingConfig, CLIPPretrainingModel, clip_batch_transform),
    "word2vec": Method("word-vectors", Word2VecConfig, Word2VecModel, word2vec_batch_transform),
    "gpt": Method("text", GPTConfig, GPTModel),
    "bert": Method("text", BertPretrainingConfig, BertPretrainingModel, bert_batch_transform),
    "bart": Method("text", BartPretrainingConfig, BartPretrainingModel, bart_batch_transform),
}


def methods_of(modality: str) -> list[str]:
    """The names of the methods of ``modality``, sorted."""
    if modality not in MODALITIES:
        raise ValueError(f"Unknown modality {modality!r}; one of {MODALITIES}.")
    return sorted(name for name, method in METHODS.items() if method.modality == modality)


def _register(methods: dict[str, Method]) -> None:
    for method in methods.values():
        AutoConfig.register(method.config_class.model_type, method.config_class, exist_ok=True)
        AutoModel.register(method.config_class, method.model_class, exist_ok=True)


_register(METHODS)

__all__ = [
    "METHODS",
    "MODALITIES",
    "Method",
    "methods_of",
    "BarlowTwinsConfig",
    "BarlowTwinsModel",
    "BartPretrainingConfig",
    "BartPretrainingModel",
    "BertPretrainingConfig",
    "BertPretrainingModel",
    "BYOLConfig",
    "CLIPPretrainingConfig",
    "CLIPPretrainingModel",
    "BYOLModel",
    "ColorizationConfig",
    "ColorizationModel",
    "CPCConfig",
    "CPCModel",
    "DenoisingAEConfig",
    "DenoisingAEModel",
    "DINOConfig",
    "DINOModel",
    "GPTConfig",
    "GPTModel",
    "JigsawConfig",
    "JigsawModel",
    "MAEConfig",
    "MAEModel",
    "MoCoV2Config",
    "MoCoV2Model",
    "MoCoV3Config",
    "MoCoV3Model",
    "RelativePositionConfig",
    "RelativePositionModel",
    "RotationConfig",
    "RotationModel",
    "SimCLRConfig",
    "SimCLRModel",
    "SimSiamConfig",
    "SimSiamModel",
    "SwAVConfig",
    "SwAVModel",
    "VICRegConfig",
    "VICRegModel",
    "Word2VecConfig",
    "Word2VecModel",
    "__version__",
]
