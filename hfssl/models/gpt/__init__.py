from .configuration_gpt import GPTConfig
from .modeling_gpt import GPTModel

__all__ = ["GPTConfig", "GPTModel"]
