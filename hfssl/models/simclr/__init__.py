from .configuration_simclr import SimCLRConfig
from .modeling_simclr import SimCLRModel, SimCLROutput, simclr_batch_transform

__all__ = ["SimCLRConfig", "SimCLRModel", "SimCLROutput", "simclr_batch_transform"]
