from .configuration_jigsaw import JigsawConfig
from .modeling_jigsaw import JigsawModel, jigsaw_batch_transform

__all__ = ["JigsawConfig", "JigsawModel", "jigsaw_batch_transform"]
