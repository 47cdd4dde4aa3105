from .configuration_barlow_twins import BarlowTwinsConfig
from .modeling_barlow_twins import BarlowTwinsModel, BarlowTwinsOutput, barlow_twins_batch_transform

__all__ = ["BarlowTwinsConfig", "BarlowTwinsModel", "BarlowTwinsOutput", "barlow_twins_batch_transform"]
