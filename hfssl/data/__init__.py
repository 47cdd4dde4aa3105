"""Data resolvers and collators shared by the hfssl recipes."""

from .text import TextDataArguments, TextDatasets, load_text_datasets, shuffle_stream
from .vision import ImageCollator, VisionDataArguments, VisionDatasets, load_vision_datasets, read_idx

__all__ = [
    "ImageCollator",
    "TextDataArguments",
    "TextDatasets",
    "VisionDataArguments",
    "VisionDatasets",
    "load_text_datasets",
    "load_vision_datasets",
    "read_idx",
    "shuffle_stream",
]
