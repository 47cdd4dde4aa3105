from .configuration_denoising_ae import DenoisingAEConfig
from .modeling_denoising_ae import DenoisingAEModel, DenoisingAEOutput, denoising_ae_batch_transform

__all__ = ["DenoisingAEConfig", "DenoisingAEModel", "DenoisingAEOutput", "denoising_ae_batch_transform"]
