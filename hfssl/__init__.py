"""hfssl: self-supervised learning on the Hugging Face stack.

Importing hfssl registers every hfssl model type with ``AutoConfig`` and ``AutoModel``, so
``AutoModel.from_pretrained(dir)`` restores an hfssl checkpoint. :data:`METHODS` maps each method
name to its config and model classes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from transformers import AutoConfig, AutoModel, PreTrainedConfig, PreTrainedModel

from .augment import simclr_view_generator
from .models.bart import BartPretrainingConfig, BartPretrainingModel
from .models.bert import BertPretrainingConfig, BertPretrainingModel
from .models.gpt import GPTConfig, GPTModel
from .models.simclr import SimCLRConfig, SimCLRModel
from .models.word2vec import Word2VecConfig, Word2VecModel

__version__ = "0.1.0"


class Method(NamedTuple):
    """A method's classes and, for vision methods, the factory of its on-device views
    (``make_views(image_size, num_channels, mean, std, color_jitter_strength=..., crop_scale=...)``)."""

    config_class: type[PreTrainedConfig]
    model_class: type[PreTrainedModel]
    make_views: Callable | None = None


METHODS: dict[str, Method] = {
    "simclr": Method(SimCLRConfig, SimCLRModel, simclr_view_generator),
    "word2vec": Method(Word2VecConfig, Word2VecModel),
    "gpt": Method(GPTConfig, GPTModel),
    "bert": Method(BertPretrainingConfig, BertPretrainingModel),
    "bart": Method(BartPretrainingConfig, BartPretrainingModel),
}


def _register(methods: dict[str, Method]) -> None:
    for method in methods.values():
        AutoConfig.register(method.config_class.model_type, method.config_class, exist_ok=True)
        AutoModel.register(method.config_class, method.model_class, exist_ok=True)


_register(METHODS)

__all__ = [
    "METHODS",
    "Method",
    "BartPretrainingConfig",
    "BartPretrainingModel",
    "BertPretrainingConfig",
    "BertPretrainingModel",
    "GPTConfig",
    "GPTModel",
    "SimCLRConfig",
    "SimCLRModel",
    "Word2VecConfig",
    "Word2VecModel",
    "__version__",
]
