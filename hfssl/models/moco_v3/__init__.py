from .configuration_moco_v3 import MoCoV3Config
from .modeling_moco_v3 import MoCoV3Model, MoCoV3Output, moco_v3_batch_transform

__all__ = ["MoCoV3Config", "MoCoV3Model", "MoCoV3Output", "moco_v3_batch_transform"]
