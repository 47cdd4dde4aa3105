"""BART: an encoder-decoder trained to reconstruct the original text from its noised version.

The noising (text infilling with Poisson span lengths, sentence permutation, optional document
rotation) happens in the collator, :class:`hfssl.data.denoising.DataCollatorForBartDenoising`; the model is
the stock ``BartForConditionalGeneration`` (any ``AutoModelForSeq2SeqLM``) with its own
cross-entropy over the original tokens. :meth:`BartPretrainingModel.generate` reconstructs text
with transformers' generation; the encoder is what downstream tasks use.
"""

from __future__ import annotations

import torch
from transformers.modeling_outputs import Seq2SeqLMOutput

from ...data.denoising import DataCollatorForBartDenoising
from ...transforms import CollateInStep
from ..language import LanguageSSLPreTrainedModel
from .configuration_bart import BartPretrainingConfig


class BartPretrainingModel(LanguageSSLPreTrainedModel):
    """``self.backbone`` is a sequence-to-sequence LM (``BartForConditionalGeneration`` by default)."""

    config_class = BartPretrainingConfig
    accepts_loss_kwargs = False  # the backbone's loss is a mean over the batch's targets; Trainer must not rescale it

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        **kwargs,
    ) -> Seq2SeqLMOutput:
        """
        Args:
            input_ids, attention_mask: (B, S) the noised text.
            decoder_input_ids: (B, T) the original text shifted right (the collator builds them).
            labels: (B, T) the original text, -100 at padding.
        Returns: ``loss`` (mean cross-entropy over real target tokens) and ``logits`` (B, T, V).
        """
        kwargs.setdefault("use_cache", False)  # training and scoring need no cache; generate() has its own
        outputs = self.backbone(
            input_ids=input_ids,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            labels=labels,
            **kwargs,
        )
        return Seq2SeqLMOutput(loss=outputs.loss, logits=outputs.logits)

    @torch.no_grad()
    def generate(self, *args, **kwargs) -> torch.LongTensor:
        """``self.backbone.generate``: e.g. reconstruct the original of a noised input."""
        return self.backbone.generate(*args, **kwargs)


def bart_collator(model: BartPretrainingModel, tokenizer, **options) -> DataCollatorForBartDenoising:
    """The denoising collator with the config's noise (``options``: ``seed``, ``worker_seed_from_id``, ...)."""
    config = model.config
    return DataCollatorForBartDenoising(
        tokenizer=tokenizer,
        mask_ratio=config.mask_ratio,
        poisson_lambda=config.poisson_lambda,
        random_ratio=config.random_ratio,
        permute_sentences=config.permute_sentences,
        rotate_ratio=config.rotate_ratio,
        decoder_start_token_id=model.backbone.config.decoder_start_token_id,
        max_length=config.max_seq_length,
        **options,
    )


def bart_batch_transform(model: BartPretrainingModel, tokenizer) -> CollateInStep:
    """BART's batch transform: noise the listed documents (text infilling, sentence permutation) and
    pad them in the training step, :class:`hfssl.data.denoising.DataCollatorForBartDenoising`."""
    return CollateInStep(bart_collator(model, tokenizer))
