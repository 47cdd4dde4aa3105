from .configuration_colorization import ColorizationConfig
from .modeling_colorization import ColorizationModel, ColorizationOutput, colorization_batch_transform

__all__ = ["ColorizationConfig", "ColorizationModel", "ColorizationOutput", "colorization_batch_transform"]
