"""Contrastive predictive coding for images as a transformers ``PreTrainedModel``.

van den Oord et al. 2018, "Representation Learning with Contrastive Predictive Coding", sec. 2 and 3.2; Henaff et
al. 2020, "Data-Efficient Image Recognition with Contrastive Predictive Coding", sec. 3::

    x_{i,j} = patches(x)                     # a G x G grid of patches overlapping by half
    z_{i,j} = g_enc(x_{i,j})                 # the backbone, pooled: one vector per patch
    c_{i,j} = g_ar(z_{u<=i, .})              # the context: a network that sees the rows above and the current one
    for k in 1..K:                           # the rows ahead
        z_hat_{i+k,j} = W_k c_{i,j}
        L_k = InfoNCE(z_hat_{i+k,j}; positive z_{i+k,j}, negatives every other z of the global batch)
    L = mean_k L_k

The patches are cut on the device by the batch transform (:func:`cpc_batch_transform`); the patch embeddings are
gathered from every process with gradients (:func:`hfssl.losses.cpc_info_nce`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers.utils import ModelOutput

from ...augment import ViewGenerator, crop_and_flip_recipe
from ...losses import cpc_info_nce
from ...pretext import PatchGridTransform, cpc_positive_indices, overlapping_patches
from ..vision import VisionSSLPreTrainedModel, image_normalization
from .configuration_cpc import CPCConfig


@dataclass
class CPCOutput(ModelOutput):
    """
    Args:
        loss: scalar InfoNCE averaged over the K steps, present when ``return_loss``.
        pretext_accuracy: scalar share of the predictions whose true patch scores highest (all steps).
        features: (B * G * G, D) pooled backbone features of the patches, in reading order per image.
    """

    loss: torch.FloatTensor | None = None
    pretext_accuracy: torch.FloatTensor | None = None
    features: torch.FloatTensor | None = None


class RowCausalConv2d(nn.Conv2d):
    """A k x k convolution whose output at row i sees rows i - k + 1 .. i only (padded above, not below), and columns
    j - k//2 .. j + k//2: the building block of a context network that never sees the rows it predicts.
    (B, C_in, G, G) -> (B, C_out, G, G)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        super().__init__(in_channels, out_channels, kernel_size, padding=0)
        self.causal_padding = (kernel_size // 2, kernel_size // 2, kernel_size - 1, 0)  # left, right, top, bottom

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, self.causal_padding))


class ContextNetwork(nn.Sequential):
    """g_ar: ``layers`` row-causal convolutions with ReLU between them: (B, D, G, G) -> (B, C, G, G), the output at
    (i, j) a function of the inputs in rows <= i."""

    def __init__(self, in_channels: int, channels: int, layers: int, kernel_size: int):
        modules: list[nn.Module] = []
        for layer in range(layers):
            modules.append(RowCausalConv2d(in_channels if layer == 0 else channels, channels, kernel_size))
            if layer < layers - 1:
                modules.append(nn.ReLU(inplace=True))
        super().__init__(*modules)


class CPCModel(VisionSSLPreTrainedModel):
    config_class = CPCConfig

    def __init__(self, config: CPCConfig):
        super().__init__(config)
        context_dim = config.context_dim or self.feature_dim
        self.context_network = ContextNetwork(
            self.feature_dim, context_dim, config.context_layers, config.context_kernel_size
        )
        # W_k, one linear prediction per step ahead
        self.predictors = nn.ModuleList(
            nn.Linear(context_dim, self.feature_dim, bias=False) for _ in range(config.prediction_steps)
        )
        self.post_init()

    def patch_features(self, patches: torch.Tensor) -> torch.Tensor:
        """g_enc: the pooled backbone features of normalised patches, (N, C, p, p) -> (N, D)."""
        return super().get_image_features(patches)

    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The papers' image representation: the patch grid's encodings, mean-pooled (van den Oord et al. sec. 3.2,
        Henaff et al. sec. 4.1), (B, C, S, S) -> (B, D). kNN and linear evaluation read this; the exported backbone
        is the patch encoder, which a downstream user may equally run on whole images."""
        grid = self.config.grid_size
        patches = overlapping_patches(pixel_values, grid)
        return self.patch_features(patches.flatten(0, 1)).reshape(pixel_values.shape[0], grid * grid, -1).mean(dim=1)

    def forward(self, pixel_values: torch.Tensor, return_loss: bool = True) -> CPCOutput:
        """
        Args:
            pixel_values: (B, G * G, C, p, p) each image's normalised patches in reading order (the batch
                transform's).
            return_loss: compute the loss.
        """
        grid = self.config.grid_size
        if pixel_values.dim() != 5 or pixel_values.shape[1] != grid * grid:
            raise ValueError(
                f"Expected {grid} x {grid} patches (B, {grid * grid}, C, p, p), got {tuple(pixel_values.shape)}."
            )
        batch = pixel_values.shape[0]
        z = self.patch_features(pixel_values.flatten(0, 1))  # z_{i,j} = g_enc(x_{i,j}): (B * G * G, D)
        if not return_loss:
            return CPCOutput(features=z)
        z_grid = z.reshape(batch, grid, grid, -1).permute(0, 3, 1, 2)  # (B, D, G, G)
        context = self.context_network(z_grid)  # c_{i,j}, rows <= i only
        losses, accuracies = [], []
        for step, predictor in enumerate(self.predictors, start=1):
            sources = context[:, :, : grid - step].permute(0, 2, 3, 1).flatten(0, 2)  # c_{i,j}, i < G - k
            predictions = predictor(sources)  # z_hat_{i+k,j} = W_k c_{i,j}
            positives = cpc_positive_indices(batch, grid, step, z.device)
            loss, accuracy = cpc_info_nce(predictions, positives, z)
            losses.append(loss)
            accuracies.append(accuracy)
        return CPCOutput(loss=torch.stack(losses).mean(), pretext_accuracy=torch.stack(accuracies).mean(), features=z)


def cpc_batch_transform(model: CPCModel, image_processor=None) -> PatchGridTransform:
    """Batch: ``{"pixel_values": uint8 (B, C, H, W)}`` -> ``{"pixel_values": (B, G * G, C', p, p)}``
    (:class:`hfssl.pretext.PatchGridTransform`), normalised as ``image_processor``."""
    config = model.config
    mean, std = image_normalization(image_processor, config.num_channels)
    views = ViewGenerator(
        [crop_and_flip_recipe(config.min_crop_scale, config.flip_probability)],
        config.image_size,
        config.num_channels,
        mean,
        std,
    )
    return PatchGridTransform(views, config.grid_size)
