from .configuration_bert import BertPretrainingConfig
from .modeling_bert import BertPretrainingModel, BertPretrainingOutput, bert_batch_transform, bert_collator

__all__ = [
    "BertPretrainingConfig",
    "BertPretrainingModel",
    "BertPretrainingOutput",
    "bert_batch_transform",
    "bert_collator",
]
