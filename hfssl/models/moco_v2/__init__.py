from .configuration_moco_v2 import MoCoV2Config
from .modeling_moco_v2 import MoCoV2Model, MoCoV2Output, moco_v2_batch_transform

__all__ = ["MoCoV2Config", "MoCoV2Model", "MoCoV2Output", "moco_v2_batch_transform"]
