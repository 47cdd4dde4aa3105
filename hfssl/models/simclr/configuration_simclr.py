"""SimCLR configuration."""

from __future__ import annotations

from ..vision import VisionSSLConfig


class SimCLRConfig(VisionSSLConfig):
    """Configuration of :class:`~hfssl.models.simclr.SimCLRModel`.

    Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual Representations".

    Args:
        backbone_config, pooling: see :class:`~hfssl.models.vision.VisionSSLConfig`.
        projection_hidden_dim: width of the projection MLP's hidden layers (paper: 2048).
        projection_dim: output width of the projection MLP (paper: 128).
        projection_num_layers: linear layers in the projection MLP (v1: 2, v2: 3).
        tau: NT-Xent temperature (named ``tau`` because ``temperature`` is a reserved generation
            parameter in transformers 5 configs). Paper: 0.1 with large batches, 0.5 on CIFAR.
    """

    model_type = "hfssl_simclr"

    projection_hidden_dim: int = 2048
    projection_dim: int = 128
    projection_num_layers: int = 2
    tau: float = 0.1
