"""BART configuration."""

from __future__ import annotations

from transformers import AutoConfig, AutoModelForSeq2SeqLM
from transformers.configuration_utils import SubConfigSpec

from ..language import LanguageSSLConfig


class BartPretrainingConfig(LanguageSSLConfig):
    """Configuration of :class:`~hfssl.models.bart.BartPretrainingModel`: denoising
    sequence-to-sequence pretraining (text infilling and sentence permutation, applied by the
    collator :class:`hfssl.data.denoising.DataCollatorForBartDenoising`).

    Lewis et al. 2020, "BART: Denoising Sequence-to-Sequence Pre-training for Natural Language
    Generation, Translation, and Comprehension".

    Args:
        backbone_config: config (or dict with ``model_type``) of an encoder-decoder that
            ``AutoModelForSeq2SeqLM`` builds (``bart``, ``mbart``, ``t5``, ...); defaults to BART's.
    """

    model_type = "hfssl_bart"
    sub_configs_defaults = {"backbone_config": SubConfigSpec(config_class=AutoConfig, model_type="bart")}
    backbone_auto_class = AutoModelForSeq2SeqLM
    example_backbones = ("bart", "mbart", "t5")
