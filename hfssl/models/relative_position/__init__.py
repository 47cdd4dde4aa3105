from .configuration_relative_position import RelativePositionConfig
from .modeling_relative_position import RelativePositionModel, relative_position_batch_transform

__all__ = ["RelativePositionConfig", "RelativePositionModel", "relative_position_batch_transform"]
