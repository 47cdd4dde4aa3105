"""GPT: causal language-model pretraining of a transformers decoder.

Texts are packed into blocks of ``block_size`` tokens with an end-of-text token between documents
(:func:`hfssl.data.packing.pack_documents`); the loss is next-token cross-entropy over real tokens
(padding, only ever at the end of a corpus' last block, has label -100). The decoder is the stock
transformers model (``GPT2LMHeadModel`` by default), so its loss, caching and ``generate`` are
transformers' own; :meth:`GPTModel.generate` hands over to it.
"""

from __future__ import annotations

import torch
from transformers.modeling_outputs import CausalLMOutputWithPast

from ..language import LanguageSSLPreTrainedModel
from .configuration_gpt import GPTConfig


class GPTModel(LanguageSSLPreTrainedModel):
    """A causal LM (``self.backbone``, an ``AutoModelForCausalLM``) trained on packed text."""

    config_class = GPTConfig

    def __init__(self, config: GPTConfig):
        super().__init__(config)
        # Trainer reads loss_type to count the targets of a batch for num_items_in_batch: a causal LM
        # predicts labels[:, 1:], and without this it would count T tokens a row for T - 1 targets.
        self.loss_type = "ForCausalLM"

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        """
        Args:
            input_ids: (B, T) token ids.
            attention_mask: (B, T), 1 at real tokens.
            labels: (B, T), the input ids with -100 where no loss is taken (the shift by one
                happens inside). ``num_items_in_batch`` (from ``Trainer``: the number of
                non-ignored shifted targets) makes the loss the mean over every predicted token of
                the accumulated batch.
        Returns: ``loss`` (scalar, with labels) and ``logits`` (B, T, vocab).
        """
        kwargs.setdefault("use_cache", False)  # training and scoring need no cache; generate() has its own
        outputs = self.backbone(input_ids=input_ids, attention_mask=attention_mask, labels=labels, **kwargs)
        return CausalLMOutputWithPast(
            loss=outputs.loss, logits=outputs.logits, past_key_values=outputs.past_key_values
        )

    @torch.no_grad()
    def generate(self, *args, **kwargs) -> torch.LongTensor:
        """``self.backbone.generate`` (transformers' generation: greedy, sampling, beams, ...)."""
        return self.backbone.generate(*args, **kwargs)
