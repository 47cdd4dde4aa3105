"""BERT pretraining: masked language modelling (MLM) and next-sentence prediction (NSP), with the
MLM head computed only at the masked positions.

The vocabulary projection of the MLM head, (N, H) x (H, V), applied to every position is most of
the cost of a small BERT (V = 30k against H = 256); only the ~15% masked positions have a loss,
so :class:`BertPretrainingModel` gathers their hidden states first and projects those alone. The
loss is that of ``BertForPreTraining`` (mean cross-entropy over masked tokens, plus the NSP
cross-entropy), on the same weights: the backbone *is* a ``BertForPreTraining``, and the heads
used are its ``cls.predictions`` and ``cls.seq_relationship`` (tested equal to the dense loss).

Labels follow transformers: ``labels`` (B, T) hold the original token at masked positions and
-100 elsewhere; ``next_sentence_label`` (B,) is 0 when segment B follows A, 1 when it is random.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers.utils import ModelOutput

from ...data.masking import DataCollatorForBertPretraining
from ...transforms import CollateInStep
from ..language import LanguageSSLPreTrainedModel
from .configuration_bert import BertPretrainingConfig


@dataclass
class BertPretrainingOutput(ModelOutput):
    """
    loss: MLM loss (+ NSP loss), scalar.
    mlm_predictions: (B, T) arg-max token at masked positions, -100 elsewhere (for accuracy).
    nsp_logits: (B, 2) next-sentence logits (index 0: B follows A).
    mlm_logits: (M, V) logits of the M masked positions, in row-major order, when requested.
    """

    loss: torch.FloatTensor | None = None
    mlm_predictions: torch.LongTensor | None = None
    nsp_logits: torch.FloatTensor | None = None
    mlm_logits: torch.FloatTensor | None = None


class BertPretrainingModel(LanguageSSLPreTrainedModel):
    """``self.backbone`` is a ``BertForPreTraining``; :meth:`forward` runs its encoder, then its MLM
    head on the masked positions only and its NSP head on the pooled output."""

    config_class = BertPretrainingConfig

    def __init__(self, config: BertPretrainingConfig):
        super().__init__(config)
        heads = getattr(self.backbone, "cls", None)
        if heads is None or not hasattr(heads, "predictions") or not hasattr(heads, "seq_relationship"):
            raise ValueError(
                f"{type(self.backbone).__name__} lacks BERT's pretraining heads (cls.predictions, cls.seq_relationship)."
            )

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        next_sentence_label: torch.LongTensor | None = None,
        return_mlm_logits: bool = False,
    ) -> BertPretrainingOutput:
        """
        Args:
            input_ids, attention_mask, token_type_ids: (B, T) as BERT takes them.
            labels: (B, T) original ids at masked positions, -100 elsewhere.
            next_sentence_label: (B,) 0 = B follows A, 1 = random B (with ``next_sentence_prediction``).
            return_mlm_logits: also return the (M, V) logits of the masked positions.
        """
        encoder = self.backbone.base_model
        outputs = encoder(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        heads = self.backbone.cls
        loss = mlm_predictions = mlm_logits = nsp_logits = None
        if labels is not None:
            masked = labels != -100  # (B, T)
            mlm_logits = heads.predictions(
                outputs.last_hidden_state[masked]
            )  # (M, V): the projection for masked rows only
            loss = F.cross_entropy(mlm_logits.float(), labels[masked]) if masked.any() else mlm_logits.sum() * 0.0
            mlm_predictions = torch.full_like(labels, -100)
            mlm_predictions[masked] = mlm_logits.argmax(-1)
        if self.config.next_sentence_prediction:
            nsp_logits = heads.seq_relationship(outputs.pooler_output)  # (B, 2)
            if next_sentence_label is not None:
                nsp_loss = F.cross_entropy(nsp_logits.float(), next_sentence_label.view(-1))
                loss = nsp_loss if loss is None else loss + nsp_loss
        return BertPretrainingOutput(
            loss=loss,
            mlm_predictions=mlm_predictions,
            nsp_logits=nsp_logits,
            mlm_logits=mlm_logits if return_mlm_logits else None,
        )


def bert_collator(config: BertPretrainingConfig, tokenizer, **options) -> DataCollatorForBertPretraining:
    """The masked-LM collator with the config's masking (``options``: ``seed``, ``worker_seed_from_id``, ...)."""
    return DataCollatorForBertPretraining(
        tokenizer=tokenizer,
        mlm_probability=config.mlm_probability,
        whole_word_mask=config.whole_word_mask,
        mask_replace_prob=config.mask_replace_prob,
        random_replace_prob=config.random_replace_prob,
        **options,
    )


def bert_batch_transform(model: BertPretrainingModel, tokenizer) -> CollateInStep:
    """BERT's batch transform: pad the listed sentence pairs and draw their masks (80/10/10) in the
    training step (dynamic masking, Liu et al. 2019), :class:`hfssl.data.masking.DataCollatorForBertPretraining`."""
    return CollateInStep(bert_collator(model.config, tokenizer))
