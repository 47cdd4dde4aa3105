from .configuration_byol import BYOLConfig
from .modeling_byol import BYOLModel, BYOLOutput, byol_batch_transform

__all__ = ["BYOLConfig", "BYOLModel", "BYOLOutput", "byol_batch_transform"]
