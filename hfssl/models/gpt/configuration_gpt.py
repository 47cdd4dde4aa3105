"""GPT configuration."""

from __future__ import annotations

from transformers import AutoConfig, AutoModelForCausalLM
from transformers.configuration_utils import SubConfigSpec

from ..language import LanguageSSLConfig


class GPTConfig(LanguageSSLConfig):
    """Configuration of :class:`~hfssl.models.gpt.GPTModel`: causal language modelling.

    Radford et al. 2018, "Improving Language Understanding by Generative Pre-Training"; 2019,
    "Language Models are Unsupervised Multitask Learners" (GPT-2).

    Args:
        backbone_config: config (or dict with ``model_type``) of any decoder that
            ``AutoModelForCausalLM`` builds (gpt2, gpt_neox, llama, ...); defaults to GPT-2's.
    """

    model_type = "hfssl_gpt"
    sub_configs_defaults = {"backbone_config": SubConfigSpec(config_class=AutoConfig, model_type="gpt2")}
    backbone_auto_class = AutoModelForCausalLM
    example_backbones = ("gpt2", "gpt_neox", "llama")
