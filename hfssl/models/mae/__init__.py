from .configuration_mae import MAEConfig
from .modeling_mae import MAEModel, MAEOutput, mae_batch_transform

__all__ = ["MAEConfig", "MAEModel", "MAEOutput", "mae_batch_transform"]
