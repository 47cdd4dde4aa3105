"""The denoising autoencoder as a transformers ``PreTrainedModel``.

Vincent et al. 2008, "Extracting and Composing Robust Features with Denoising Autoencoders", sec. 2.3::

    x~ = q(x~ | x)                 # corrupt the clean image x (masking, salt-and-pepper, Gaussian, erasing)
    y = f(x~)                      # the encoder: the backbone's last feature map
    z = g(y)                       # the decoder: a light convolutional upsampler, sigmoid output in [0, 1]
    L = L_H(x, z)  or  ||x - z||^2 # cross-entropy for [0, 1] pixels (the paper's), or squared error

The corruption is drawn by the batch transform (:func:`denoising_ae_batch_transform`) inside the training step;
the loss compares the reconstruction with the clean image, so the encoder must undo what the corruption did.
The backbone is any transformers vision model; ``export_backbone`` writes it as a plain transformers checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers.utils import ModelOutput

from ...augment import EvalTransform
from ...backbones import backbone_outputs, pool_outputs, spatial_feature_map
from ...corruptions import CorruptionTransform
from ..vision import VisionSSLPreTrainedModel, image_normalization
from .configuration_denoising_ae import DenoisingAEConfig

UPSAMPLINGS = 2  # the decoder's 2x upsamplings, after it brings the feature map to a quarter of the image side
MIN_DECODER_CHANNELS = 8


@dataclass
class DenoisingAEOutput(ModelOutput):
    """
    Args:
        loss: scalar reconstruction loss per pixel (cross-entropy or squared error), present when ``return_loss``.
        reconstruction: (B, C, S, S) the reconstructed images in [0, 1].
        features: (B, D) pooled backbone features of the corrupted images.
    """

    loss: torch.FloatTensor | None = None
    reconstruction: torch.FloatTensor | None = None
    features: torch.FloatTensor | None = None


class ConvDecoder(nn.Module):
    """A light convolutional decoder: a (B, D, h, w) feature map of any size -> (B, C, S, S) logits.

    A 1x1 convolution to ``channels``, bilinear resizing to a quarter of the image side ``S / 4``, then
    :data:`UPSAMPLINGS` blocks of (3x3 convolution, ReLU, 2x nearest upsampling) halving the width (at least
    :data:`MIN_DECODER_CHANNELS`), and a 3x3 convolution to the image's C channels, resized to S if S is not a
    multiple of 4. Its shape depends on the widths alone, not on the backbone's stride."""

    def __init__(self, in_channels: int, out_channels: int, image_size: int, channels: int):
        super().__init__()
        self.image_size = image_size
        self.start_size = max(image_size // 2**UPSAMPLINGS, 1)
        self.project = nn.Conv2d(in_channels, channels, kernel_size=1)
        blocks = []
        for _ in range(UPSAMPLINGS):
            narrower = max(channels // 2, MIN_DECODER_CHANNELS)
            blocks += [
                nn.Conv2d(channels, narrower, kernel_size=3, padding=1),
                nn.ReLU(inplace=True),
                nn.Upsample(scale_factor=2, mode="nearest"),
            ]
            channels = narrower
        self.upsample = nn.Sequential(*blocks)
        self.predict = nn.Conv2d(channels, out_channels, kernel_size=3, padding=1)

    def forward(self, feature_map: torch.Tensor) -> torch.Tensor:
        x = self.project(feature_map)
        x = F.interpolate(x, size=(self.start_size, self.start_size), mode="bilinear", align_corners=False)
        x = self.predict(self.upsample(x))
        if x.shape[-1] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        return x


class DenoisingAEModel(VisionSSLPreTrainedModel):
    config_class = DenoisingAEConfig

    def __init__(self, config: DenoisingAEConfig):
        super().__init__(config)
        self.decoder = ConvDecoder(self.feature_dim, config.num_channels, config.image_size, config.decoder_channels)
        self.post_init()

    def forward(
        self, pixel_values: torch.Tensor, clean: torch.Tensor | None = None, return_loss: bool = True
    ) -> DenoisingAEOutput:
        """
        Args:
            pixel_values: (B, C, S, S) the corrupted images, normalised (the batch transform's).
            clean: (B, C, S, S) the clean images in [0, 1], the reconstruction target; needed for the loss.
            return_loss: compute the loss.
        """
        outputs = backbone_outputs(self.backbone, pixel_values)  # y = f(x~)
        logits = self.decoder(spatial_feature_map(outputs.last_hidden_state))  # z = g(y), before the sigmoid
        loss = None
        if return_loss:
            if clean is None:
                raise ValueError("The denoising autoencoder's loss needs the clean images: pass clean=...")
            loss = self.reconstruction_loss(logits, clean)
        features = pool_outputs(self.backbone, outputs, self.config.pooling)
        return DenoisingAEOutput(loss=loss, reconstruction=torch.sigmoid(logits), features=features)

    def reconstruction_loss(self, logits: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
        """Mean per pixel: cross-entropy of sigmoid(logits) against the clean pixels (``loss="bce"``) or squared
        error (``"mse"``). (B, C, S, S) each."""
        logits = logits.float()
        if self.config.loss == "bce":
            return F.binary_cross_entropy_with_logits(logits, clean)
        return F.mse_loss(torch.sigmoid(logits), clean)

    @torch.no_grad()
    def reconstruction_panels(
        self, images: torch.Tensor, normalize: Callable, denormalize: Callable, generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        """``images`` (B, C, S, S) in [0, 1] -> the original, the corrupted input and the reconstruction, in
        [0, 1], for a picture; the corruption is drawn from ``generator``."""
        transform = CorruptionTransform(
            EvalTransform(self.config.image_size, self.config.num_channels), **self.corruption_settings()
        )
        corrupted = transform.corrupt(images, generator)
        reconstruction = self(normalize(corrupted), return_loss=False).reconstruction
        return {"original": images, "corrupted input": corrupted, "reconstruction": reconstruction}

    def corruption_settings(self) -> dict:
        """The corruption and its strength, as :class:`hfssl.corruptions.CorruptionTransform` takes them."""
        config = self.config
        return dict(
            corruption=config.corruption,
            noise_std=config.noise_std,
            fraction=config.corruption_fraction,
            erasing_scale=tuple(config.erasing_scale),
        )


def denoising_ae_batch_transform(model: DenoisingAEModel, image_processor=None) -> CorruptionTransform:
    """Every image resized to the config's ``image_size`` (as the saved image processor does), corrupted as the
    config says, normalised as ``image_processor``; the clean image kept as the target.

    Batch: ``{"pixel_values": uint8 (B, C, H, W)}`` -> ``{"pixel_values": (B, C', S, S), "clean": (B, C', S, S)}``."""
    config = model.config
    mean, std = image_normalization(image_processor, config.num_channels)
    return CorruptionTransform(
        EvalTransform(config.image_size, config.num_channels, mean, std), **model.corruption_settings()
    )
