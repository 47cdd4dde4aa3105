"""BART configuration."""

from __future__ import annotations

from transformers import AutoConfig, AutoModelForSeq2SeqLM
from transformers.configuration_utils import SubConfigSpec

from ..checks import require_int, require_probability, require_real
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
        mask_ratio: share of the words hidden by text infilling (BART: 0.3).
        poisson_lambda: mean span length of text infilling, in words (BART: 3.5).
        random_ratio: share of the masks replaced by a random token instead.
        permute_sentences: share of each example's sentences shuffled (BART: 1.0).
        rotate_ratio: probability of rotating a document (BART's final recipe: 0).
        max_seq_length: tokens per example, ``<s>`` and ``</s>`` included; noised inputs that inserted
            masks made longer are cut to it.

    Ranges (checked at construction): the ratios and ``permute_sentences`` in [0, 1],
    ``poisson_lambda`` > 0, ``max_seq_length`` an int >= 4.
    """

    model_type = "hfssl_bart"
    sub_configs_defaults = {"backbone_config": SubConfigSpec(config_class=AutoConfig, model_type="bart")}
    backbone_auto_class = AutoModelForSeq2SeqLM
    example_backbones = ("bart", "mbart", "t5")

    mask_ratio: float = 0.3
    poisson_lambda: float = 3.5
    random_ratio: float = 0.1
    permute_sentences: float = 1.0
    rotate_ratio: float = 0.0
    max_seq_length: int = 256

    def check_ranges(self) -> None:
        """See the class docstring."""
        super().check_ranges()
        for name in ("mask_ratio", "random_ratio", "permute_sentences", "rotate_ratio"):
            require_probability(self, name)
        require_real(self, "poisson_lambda", 0, low_open=True, hint="the mean span length, in words")
        require_int(self, "max_seq_length", 4, "<s> and </s> around at least two tokens")
