from .configuration_simsiam import SimSiamConfig
from .modeling_simsiam import SimSiamModel, SimSiamOutput, simsiam_batch_transform

__all__ = ["SimSiamConfig", "SimSiamModel", "SimSiamOutput", "simsiam_batch_transform"]
