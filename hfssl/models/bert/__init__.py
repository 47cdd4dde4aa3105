from .configuration_bert import BertPretrainingConfig
from .modeling_bert import BertPretrainingModel, BertPretrainingOutput

__all__ = ["BertPretrainingConfig", "BertPretrainingModel", "BertPretrainingOutput"]
