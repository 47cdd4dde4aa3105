from .configuration_clip import CLIPPretrainingConfig, default_clip_towers
from .modeling_clip import CLIPPretrainingModel, CLIPPretrainingOutput, clip_batch_transform

__all__ = [
    "CLIPPretrainingConfig",
    "CLIPPretrainingModel",
    "CLIPPretrainingOutput",
    "clip_batch_transform",
    "default_clip_towers",
]
