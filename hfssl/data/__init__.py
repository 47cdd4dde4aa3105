"""Data resolvers and collators shared by the hfssl recipes.

``vision.load_vision_datasets``, ``image_text.load_image_text_datasets`` (CLIP's image-caption pairs) and
``text.load_text_datasets`` resolve a dataset spec (a Hub id, local files, a built-in offline set) into
train/eval ``datasets``; ``splits`` holds what they share
(eval split names, the held-out share, seeds, subsampling). ``idx`` reads MNIST-format files,
``image_collator`` batches images, ``enwiki`` is the built-in text corpus; ``sentences``,
``masking``, ``nsp``, ``denoising``, ``packing`` and ``word2vec`` are the per-method text pipelines.
"""

from .idx import read_idx
from .image_collator import ImageCollator
from .text import TextDataArguments, TextDatasets, load_text_datasets, shuffle_stream
from .vision import VisionDataArguments, VisionDatasets, load_vision_datasets

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
