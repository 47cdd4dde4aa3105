from .configuration_rotation import RotationConfig
from .modeling_rotation import RotationModel, rotation_batch_transform

__all__ = ["RotationConfig", "RotationModel", "rotation_batch_transform"]
