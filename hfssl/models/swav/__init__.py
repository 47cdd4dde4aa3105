from .configuration_swav import SwAVConfig
from .modeling_swav import SwAVModel, SwAVOutput, swav_batch_transform

__all__ = ["SwAVConfig", "SwAVModel", "SwAVOutput", "swav_batch_transform"]
