from .configuration_simclr import SimCLRConfig
from .modeling_simclr import SimCLRModel, SimCLROutput

__all__ = ["SimCLRConfig", "SimCLRModel", "SimCLROutput"]
