"""Colorization as a transformers ``PreTrainedModel``.

Zhang et al. 2016, "Colorful Image Colorization", sec. 2::

    L, ab = lab(x)                                   # CIE Lab: lightness in, colour out
    Z_hat = softmax(g(f(L)))                         # (h, w, Q) a distribution over the in-gamut ab bins per pixel
    Z = soft_encode(ab)                              # the target: 5 nearest bins, Gaussian weights
    v = w[argmax_q Z]                                # class rebalancing: rare (saturated) colours weigh more
    L_cl = -sum_{h,w} v * sum_q Z log Z_hat          # eq. 2, averaged over pixels here
    ab_hat = annealed_mean(Z_hat, T=0.38)            # eq. 5, for pictures

with f the backbone and g a light convolutional head on its last feature map, predicting at a quarter of the image
side (the paper predicts at a quarter too). ``objective="regression"`` replaces the distribution by ab itself and
the loss by the squared error (the paper's L2 baseline). The L channel and ab targets are made on the device by the
batch transform (:func:`colorization_batch_transform`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers.utils import ModelOutput

from ...augment import EvalTransform, ViewGenerator, crop_and_flip_recipe
from ...backbones import backbone_outputs, pool_outputs, spatial_feature_map
from ...distributed import all_reduce_sum
from ...pretext import (
    AB_RANGE,
    ColorizationTransform,
    annealed_mean,
    in_gamut_ab_bins,
    lab_to_rgb,
    rebalancing_weights,
    rgb_to_lab,
    soft_encode,
)
from ..vision import VisionSSLPreTrainedModel, image_normalization
from .configuration_colorization import ColorizationConfig

OUTPUT_STRIDE = 4  # predictions at a quarter of the image side


@dataclass
class ColorizationOutput(ModelOutput):
    """
    Args:
        loss: scalar, present when ``return_loss``: the rebalanced cross-entropy per pixel (classification) or the
            squared error per ab value, in units of 110 (regression).
        logits: (B, Q, h, w) bin scores (classification), or (B, 2, h, w) ab / 110 (regression); h = S / 4.
        features: (B, D) pooled backbone features of the L channel.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    features: torch.FloatTensor | None = None


class ColorizationHead(nn.Module):
    """A (B, D, h', w') feature map of any size -> (B, K, S/4, S/4): a 1x1 convolution to ``channels``, bilinear
    resizing to a quarter of the image side, a 3x3 convolution with ReLU, and a 1x1 convolution to K outputs."""

    def __init__(self, in_channels: int, out_channels: int, image_size: int, channels: int):
        super().__init__()
        self.output_size = max(image_size // OUTPUT_STRIDE, 1)
        self.project = nn.Conv2d(in_channels, channels, kernel_size=1)
        self.refine = nn.Sequential(nn.Conv2d(channels, channels, kernel_size=3, padding=1), nn.ReLU(inplace=True))
        self.predict = nn.Conv2d(channels, out_channels, kernel_size=1)

    def forward(self, feature_map: torch.Tensor) -> torch.Tensor:
        x = self.project(feature_map)
        x = F.interpolate(x, size=(self.output_size,) * 2, mode="bilinear", align_corners=False)
        return self.predict(self.refine(x))


class ColorizationModel(VisionSSLPreTrainedModel):
    config_class = ColorizationConfig
    # The recipe refuses greyscale data, and builds the backbone with one input channel (the L channel).
    needs_colour_images = True
    backbone_channels = 1
    # draw_reconstructions hands reconstruction_panels the images in colour, and writes this file.
    picture_channels = 3
    picture_name = "colorizations.png"
    replicated_buffers = ("bin_counts",)  # every process adds the same all-reduced counts

    def __init__(self, config: ColorizationConfig):
        super().__init__(config)
        self.register_buffer("ab_bins", in_gamut_ab_bins(float(config.ab_bin_size)).clone(), persistent=False)
        outputs = len(self.ab_bins) if config.objective == "classification" else 2
        self.head = ColorizationHead(self.feature_dim, outputs, config.image_size, config.decoder_channels)
        # How often each bin was the most likely one of a training pixel, over every process: the empirical
        # distribution that class rebalancing inverts. Identical on every process by construction.
        self.register_buffer("bin_counts", torch.zeros(len(self.ab_bins), dtype=torch.float64))
        self.post_init()

    def forward(self, pixel_values: torch.Tensor, ab: torch.Tensor | None = None, return_loss: bool = True):
        """
        Args:
            pixel_values: (B, 1, S, S) the normalised lightness L / 100 (the batch transform's).
            ab: (B, 2, S, S) the colour channels to predict, in Lab units; needed for the loss.
            return_loss: compute the loss.
        """
        outputs = backbone_outputs(self.backbone, pixel_values)
        logits = self.head(spatial_feature_map(outputs.last_hidden_state))  # g(f(L))
        features = pool_outputs(self.backbone, outputs, self.config.pooling)
        loss = None
        if return_loss:
            if ab is None:
                raise ValueError("Colorization's loss needs the colour channels: pass ab=... (the batch transform's).")
            target = F.adaptive_avg_pool2d(ab.float(), logits.shape[-2:])  # ab at the prediction's resolution
            loss = self.loss(logits, target)
        return ColorizationOutput(loss=loss, logits=logits, features=features)

    def loss(self, logits: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
        """The rebalanced multinomial cross-entropy (eq. 2-4) or the squared error, per pixel.
        ``logits`` (B, K, h, w), ``ab`` (B, 2, h, w) in Lab units."""
        if self.config.objective == "regression":
            return F.mse_loss(logits.float(), ab / AB_RANGE)
        pixels = ab.permute(0, 2, 3, 1).reshape(-1, 2)
        target = soft_encode(
            pixels, self.ab_bins, self.config.soft_encoding_neighbours, self.config.soft_encoding_sigma
        )
        most_likely = target.argmax(dim=1)
        if self.training:  # the empirical distribution grows with every training batch of every process
            counts = torch.bincount(most_likely, minlength=len(self.ab_bins)).to(self.bin_counts.dtype)
            self.bin_counts += all_reduce_sum(counts)
        weights = rebalancing_weights(
            self.bin_counts, self.ab_bins, self.config.rebalancing_mix, self.config.rebalancing_sigma
        )[most_likely]
        log_probabilities = F.log_softmax(logits.float().permute(0, 2, 3, 1).reshape(-1, logits.shape[1]), dim=1)
        return (weights * -(target * log_probabilities).sum(dim=1)).mean()

    @torch.no_grad()
    def predicted_ab(self, logits: torch.Tensor) -> torch.Tensor:
        """The point estimate of ab (B, 2, h, w): the annealed mean (classification) or the regression output."""
        if self.config.objective == "regression":
            return logits.float() * AB_RANGE
        return annealed_mean(logits, self.ab_bins, self.config.annealed_mean_temperature)

    @torch.no_grad()
    def reconstruction_panels(
        self,
        images: torch.Tensor,
        normalize: Callable,
        denormalize: Callable,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """``images`` (B, 3, S, S) in [0, 1] -> the original, the lightness the model sees, and its colourisation
        (the predicted ab upsampled to S beside the original L), in [0, 1], for ``colorizations.png``.
        ``normalize`` normalises the L channel as training did; nothing here is random."""
        lab = rgb_to_lab(images.clamp(0, 1))
        lightness = lab[:, :1] / 100
        logits = self(normalize(lightness), return_loss=False).logits
        ab = F.interpolate(self.predicted_ab(logits), size=images.shape[-2:], mode="bilinear", align_corners=False)
        colourised = lab_to_rgb(torch.cat([lab[:, :1], ab], dim=1))
        return {"original": images, "input (L)": lightness, "colourised": colourised}


def colorization_batch_transform(model: ColorizationModel, image_processor=None) -> ColorizationTransform:
    """Batch: ``{"pixel_values": uint8 (B, 3, H, W)}`` -> ``{"pixel_values": (B, 1, S, S), "ab": (B, 2, S, S)}``
    (:class:`hfssl.pretext.ColorizationTransform`), L normalised as the 1-channel ``image_processor``."""
    config = model.config
    views = ViewGenerator(
        [crop_and_flip_recipe(config.min_crop_scale, config.flip_probability)],
        config.image_size,
        3,
        mean=(0.0,) * 3,
        std=(1.0,) * 3,
    )
    mean, std = image_normalization(image_processor, 1)
    return ColorizationTransform(views, EvalTransform(config.image_size, 1, mean, std).normalize)
