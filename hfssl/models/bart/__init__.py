from .configuration_bart import BartPretrainingConfig
from .modeling_bart import BartPretrainingModel, bart_batch_transform, bart_collator

__all__ = ["BartPretrainingConfig", "BartPretrainingModel", "bart_batch_transform", "bart_collator"]
