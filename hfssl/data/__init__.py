"""Data resolvers and collators shared by the hfssl recipes."""

from .vision import ImageCollator, VisionDataArguments, VisionDatasets, load_vision_datasets, read_idx

__all__ = ["ImageCollator", "VisionDataArguments", "VisionDatasets", "load_vision_datasets", "read_idx"]
