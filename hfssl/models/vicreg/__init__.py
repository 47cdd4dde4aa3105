from .configuration_vicreg import VICRegConfig
from .modeling_vicreg import VICRegModel, VICRegOutput, vicreg_batch_transform

__all__ = ["VICRegConfig", "VICRegModel", "VICRegOutput", "vicreg_batch_transform"]
