"""Denoising autoencoder configuration."""

from __future__ import annotations

from ...corruptions import CORRUPTIONS
from ..checks import require_choice, require_crop_scale, require_int, require_real
from ..vision import VisionSSLConfig

LOSSES = ("mse", "bce")


class DenoisingAEConfig(VisionSSLConfig):
    """Configuration of :class:`~hfssl.models.denoising_ae.DenoisingAEModel`.

    Vincent et al. 2008, "Extracting and Composing Robust Features with Denoising Autoencoders": corrupt the
    input, encode it, and reconstruct the clean input. The encoder is the backbone (any transformers vision
    model); the decoder a light convolutional one on the backbone's last feature map. Defaults follow the
    paper: its masking noise (a fraction of the input set to 0; 25% of the pixels by default) and the
    cross-entropy reconstruction loss for inputs in [0, 1].

    Args:
        backbone_config, pooling, image_size: see :class:`~hfssl.models.vision.VisionSSLConfig`.
        corruption: ``"masking"`` (a share ``corruption_fraction`` of each image's pixels set to 0, the
            paper's), ``"salt_and_pepper"`` (that share set to 0 or 1 by a coin), ``"gaussian"`` (additive
            noise of std ``noise_std``, clipped) or ``"erasing"`` (one rectangle of area share in
            ``erasing_scale`` set to 0).
        corruption_fraction: share of the pixels that masking or salt-and-pepper noise hits, in [0, 1].
        noise_std: std of the Gaussian noise, in pixel units (pixels in [0, 1]), >= 0.
        erasing_scale: (min, max) area share of the erased rectangle, ``0 < min <= max <= 1`` (as
            torchvision's ``RandomErasing``: (0.02, 0.33)).
        loss: ``"bce"`` (cross-entropy of the decoder's sigmoid output against the clean pixels, the paper's
            for [0, 1] inputs) or ``"mse"``.
        decoder_channels: width of the decoder's first convolution, halved at each of its two 2x upsamplings
            (at least 8).

    Every field is checked at construction (:class:`~hfssl.models.checks.CheckedConfig`).
    """

    model_type = "hfssl_denoising_ae"

    corruption: str = "masking"
    corruption_fraction: float = 0.25
    noise_std: float = 0.3
    erasing_scale: tuple[float, float] | list[float] = (0.02, 0.33)
    loss: str = "bce"
    decoder_channels: int = 64

    def check_ranges(self) -> None:
        """``corruption`` and ``loss`` in their sets; ``corruption_fraction`` in [0, 1]; ``noise_std`` >= 0;
        ``erasing_scale`` a pair ``0 < min <= max <= 1``; ``decoder_channels`` an int >= 8."""
        super().check_ranges()
        require_choice(self, "corruption", CORRUPTIONS)
        require_choice(self, "loss", LOSSES)
        require_real(self, "corruption_fraction", 0, 1, hint="the share of the pixels corrupted")
        require_real(self, "noise_std", 0, hint="the std of the Gaussian noise, pixels in [0, 1]")
        require_crop_scale(self, "erasing_scale")
        require_int(self, "decoder_channels", 8, "the width of the decoder's first convolution")
