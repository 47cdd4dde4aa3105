"""BERT configuration."""

from __future__ import annotations

from transformers import AutoConfig, AutoModelForPreTraining
from transformers.configuration_utils import SubConfigSpec

from ..language import LanguageSSLConfig


class BertPretrainingConfig(LanguageSSLConfig):
    """Configuration of :class:`~hfssl.models.bert.BertPretrainingModel`: masked language modelling
    plus next-sentence prediction.

    Devlin et al. 2019, "BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding".

    Args:
        backbone_config: config (or dict with ``model_type``) of a BERT-family model whose
            ``AutoModelForPreTraining`` has BERT's two heads (``bert``, ``megatron-bert``, ...);
            defaults to BERT-base's.
        next_sentence_prediction: add the NSP loss (``False``: the MLM loss alone; the data then
            needs no ``next_sentence_label``. Liu et al. 2019 (RoBERTa) found dropping NSP no worse
            when inputs are full sentences packed to the length; the recipe keeps BERT's pairs).
    """

    model_type = "hfssl_bert"
    sub_configs_defaults = {"backbone_config": SubConfigSpec(config_class=AutoConfig, model_type="bert")}
    backbone_auto_class = AutoModelForPreTraining
    example_backbones = ("bert", "megatron-bert")

    next_sentence_prediction: bool = True
