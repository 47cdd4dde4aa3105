from .configuration_cpc import CPCConfig
from .modeling_cpc import CPCModel, CPCOutput, cpc_batch_transform

__all__ = ["CPCConfig", "CPCModel", "CPCOutput", "cpc_batch_transform"]
