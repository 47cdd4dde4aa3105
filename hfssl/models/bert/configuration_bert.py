"""BERT configuration."""

from __future__ import annotations

from transformers import AutoConfig, AutoModelForPreTraining
from transformers.configuration_utils import SubConfigSpec

from ..checks import require, require_bool, require_probability, require_real
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
        mlm_probability: share of the non-special tokens selected for prediction (BERT: 0.15).
        whole_word_mask: select whole words (a token and its ``##`` pieces) until the share is filled.
        mask_replace_prob: share of the selected tokens replaced by ``[MASK]`` (BERT: 0.8).
        random_replace_prob: share replaced by a random token (BERT: 0.1); the rest stay unchanged.

    Ranges (checked at construction): ``mlm_probability`` in (0, 1] (0 selects nothing to predict),
    ``mask_replace_prob`` and ``random_replace_prob`` in [0, 1] with a sum of at most 1.
    """

    model_type = "hfssl_bert"
    sub_configs_defaults = {"backbone_config": SubConfigSpec(config_class=AutoConfig, model_type="bert")}
    backbone_auto_class = AutoModelForPreTraining
    example_backbones = ("bert", "megatron-bert")

    next_sentence_prediction: bool = True
    mlm_probability: float = 0.15
    whole_word_mask: bool = False
    mask_replace_prob: float = 0.8
    random_replace_prob: float = 0.1

    def check_ranges(self) -> None:
        """See the class docstring."""
        super().check_ranges()
        for name in ("next_sentence_prediction", "whole_word_mask"):
            require_bool(self, name)
        require_real(self, "mlm_probability", 0, 1, low_open=True, hint="0 would select no token to predict")
        for name in ("mask_replace_prob", "random_replace_prob"):
            require_probability(self, name)
        total = self.mask_replace_prob + self.random_replace_prob
        require(
            self, "random_replace_prob", total <= 1, f"at most 1 - mask_replace_prob = {1 - self.mask_replace_prob:g}"
        )
