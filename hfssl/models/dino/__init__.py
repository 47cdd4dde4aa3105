from .configuration_dino import DINOConfig
from .modeling_dino import DINOModel, DINOOutput, dino_batch_transform

__all__ = ["DINOConfig", "DINOModel", "DINOOutput", "dino_batch_transform"]
