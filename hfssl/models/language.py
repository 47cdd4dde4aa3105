"""What the language-model methods share (GPT, BERT, BART): a nested transformers model, its
vocabulary, export as a plain transformers checkpoint.

A method's config subclasses :class:`LanguageSSLConfig` (the transformers model's config nested as
``backbone_config``) and its model subclasses :class:`LanguageSSLPreTrainedModel`, which builds
``self.backbone`` with the method's auto class (``AutoModelForCausalLM`` for GPT, ...). The
backbone is the stock transformers model with its own heads and weight tying; hfssl adds the data
pipeline, the training objective where transformers has none, and the recipe around it.
"""

from __future__ import annotations

import os

from transformers import AutoTokenizer, PreTrainedConfig, PreTrainedModel

from .checks import CheckedConfig
from .export import saved_preprocessor


class LanguageSSLConfig(CheckedConfig):
    """Base config: ``backbone_config`` is the config (or a dict with ``model_type``) of the
    transformers model being pretrained; each method sets its default model type. Ranges are
    checked at construction (:class:`~hfssl.models.checks.CheckedConfig`)."""

    backbone_config: dict | PreTrainedConfig | None = None
    backbone_auto_class = None  # set by each method: the transformers auto class of its backbone
    example_backbones = ()  # model types named in the error for a backbone of the wrong kind

    def check_ranges(self) -> None:
        """The backbone is one that the method's auto class builds."""
        super().check_ranges()
        mapping = self.backbone_auto_class._model_mapping
        if type(self.backbone_config) not in mapping:
            raise ValueError(
                f"{type(self).__name__} needs a backbone that {self.backbone_auto_class.__name__} can build; "
                f"{self.backbone_config.model_type!r} is not one (e.g. {', '.join(self.example_backbones)})."
            )


class LanguageSSLPreTrainedModel(PreTrainedModel):
    """Base model: ``self.backbone`` is the transformers model built from ``config.backbone_config``."""

    main_input_name = "input_ids"
    base_model_prefix = "hfssl"
    supports_gradient_checkpointing = True

    def __init__(self, config: LanguageSSLConfig):
        super().__init__(config)
        self.backbone = config.backbone_auto_class.from_config(config.backbone_config)
        self.post_init()

    def get_input_embeddings(self):
        return self.backbone.get_input_embeddings()

    def set_input_embeddings(self, value) -> None:
        self.backbone.set_input_embeddings(value)

    def export_backbone(self, save_directory: str | os.PathLike, tokenizer=None, state_dict=None) -> None:
        """Write the backbone alone as a plain transformers checkpoint that the transformers auto
        classes load without hfssl, with ``tokenizer`` beside it (by default, the one saved in the
        checkpoint directory this model was loaded from). ``state_dict``: the backbone's full weights
        when this model's are sharded (FSDP)."""
        self.backbone.save_pretrained(save_directory, state_dict=state_dict)
        if tokenizer is None:
            tokenizer = saved_preprocessor(self, AutoTokenizer)
        if tokenizer is not None:
            tokenizer.save_pretrained(save_directory)

    def _init_weights(self, module):
        """Nothing of its own: the backbone initialises itself with its own scheme."""
