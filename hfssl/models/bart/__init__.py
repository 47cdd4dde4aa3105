from .configuration_bart import BartPretrainingConfig
from .modeling_bart import BartPretrainingModel

__all__ = ["BartPretrainingConfig", "BartPretrainingModel"]
