"""MAE as a transformers ``PreTrainedModel``.

He et al. 2022, "Masked Autoencoders Are Scalable Vision Learners". Reads like the paper (sec. 3)::

    x = aug(image)                               # random resized crop and flip
    mask = random_subset(patches, 75%)           # drawn per image, inside the training step
    latent = encoder(visible patches of x)       # the ViT backbone, on the 25% visible patches only
    prediction = decoder(latent, mask tokens)    # a light Transformer over all N positions
    target = patches of x, each normalised by its own mean and std (norm_pix_loss)
    L = mean over masked patches of ||prediction - target||^2

The encoder is the backbone, a plain transformers ``ViTModel``: ``export_backbone`` writes it as it is, so
downstream use sees every patch, unmasked. The decoder is transformers' ``ViTMAEDecoder``, so with the same
weights and mask the loss equals ``ViTMAEForPreTraining``'s (tested). The mask is drawn by the batch
transform (:func:`mae_batch_transform`) as uniform noise per patch, the form ``ViTMAEForPreTraining`` takes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers import ViTMAEConfig
from transformers.models.vit_mae.modeling_vit_mae import ViTMAEDecoder, build_2d_sinusoidal_position_embedding
from transformers.utils import ModelOutput

from ...augment import ViewRecipe
from ...losses import masked_patch_mse
from ...patches import (
    denormalize_patches,
    keep_tokens,
    normalize_patches,
    num_masked_patches,
    patch_mask_from_noise,
    patchify,
    unpatchify,
)
from ...transforms import MaskedImageTransform
from ..vision import VisionSSLPreTrainedModel, multi_view_transform
from .configuration_mae import MAEConfig

HIDDEN_PATCH_GREY = 0.5  # how the picture shows a hidden patch, as the paper's figures


@dataclass
class MAEOutput(ModelOutput):
    """
    Args:
        loss: scalar mean squared error over the masked patches, present when ``return_loss``.
        logits: (B, N, p * p * C) the decoder's prediction for every patch (of the normalised patch with
            ``norm_pix_loss``).
        mask: (B, N), 1 for a masked patch, 0 for a visible one.
        features: (B, D) the encoder's CLS token, after its final layer norm (visible patches only).
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    mask: torch.FloatTensor | None = None
    features: torch.FloatTensor | None = None


def require_plain_vit(backbone: torch.nn.Module, image_size: int) -> None:
    """Raise a ValueError unless ``backbone`` is a ViT that MAE can run on a subset of its patches: patch
    embeddings, one CLS token, one position embedding per patch plus the CLS one, ``layers`` and a final
    ``layernorm`` (transformers' ``ViTModel``), built for square ``image_size`` images."""
    embeddings = getattr(backbone, "embeddings", None)
    parts = ("patch_embeddings", "cls_token", "position_embeddings")
    plain = (
        embeddings is not None
        and all(hasattr(embeddings, part) for part in parts)
        and not hasattr(embeddings, "distillation_token")
        and hasattr(backbone, "layers")
        and hasattr(backbone, "layernorm")
    )
    if plain:
        num_patches = embeddings.patch_embeddings.num_patches
        plain = embeddings.position_embeddings.shape[1] == num_patches + 1
    model_type = getattr(backbone.config, "model_type", type(backbone).__name__)
    if model_type == "vit_mae":  # its embeddings mask the input: an exported backbone would carry the masking
        raise ValueError(
            "MAE's backbone is a plain ViT, which it runs on the visible patches itself; a vit_mae backbone masks "
            "its input in every forward, downstream use included. Pass --backbone vit-tiny, vit-small, vit-base or "
            "vit (with --backbone_config_overrides)."
        )
    if not plain:
        raise ValueError(
            f"MAE encodes the visible patches with a ViT backbone (transformers' ViTModel: one CLS token and a "
            f"position embedding per patch), got {model_type!r}. Pass --backbone vit-tiny, vit-small, vit-base or "
            f"vit (with --backbone_config_overrides)."
        )
    patch_size = backbone.config.patch_size
    if image_size % patch_size:
        raise ValueError(
            f"MAE reconstructs whole patches: the image size {image_size} must be a multiple of the patch size "
            f"{patch_size}. Change --image_size or patch_size in --backbone_config_overrides."
        )
    if tuple(embeddings.patch_embeddings.image_size) != (image_size, image_size):
        raise ValueError(
            f"The ViT backbone is built for {tuple(embeddings.patch_embeddings.image_size)} px images but MAE's "
            f"views are {image_size} px: set the same image_size in the backbone config and the method config."
        )


def decoder_config(config: MAEConfig) -> ViTMAEConfig:
    """The ``ViTMAEConfig`` that transformers' ``ViTMAEDecoder`` reads: the backbone's width, patches and layer
    norm, and the method config's decoder sizes."""
    backbone = config.backbone_config
    decoder = ViTMAEConfig(
        hidden_size=backbone.hidden_size,
        image_size=config.image_size,
        patch_size=backbone.patch_size,
        num_channels=config.num_channels,
        layer_norm_eps=backbone.layer_norm_eps,
        qkv_bias=getattr(backbone, "qkv_bias", True),
        hidden_act="gelu",
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        decoder_hidden_size=config.decoder_hidden_size,
        decoder_num_hidden_layers=config.decoder_num_hidden_layers,
        decoder_num_attention_heads=config.decoder_num_attention_heads,
        decoder_intermediate_size=config.decoder_intermediate_size,
        norm_pix_loss=config.norm_pix_loss,
    )
    decoder._attn_implementation = getattr(backbone, "_attn_implementation", None) or "sdpa"
    return decoder


def sincos_position_embeddings(grid_side: int, dim: int) -> torch.Tensor:
    """(1, 1 + grid_side^2, dim): MAE's fixed 2-D sin-cos position embeddings, a zero row for the CLS token."""
    table = build_2d_sinusoidal_position_embedding(grid_side, grid_side, embed_dim=dim, cls_token=True)
    return table.unsqueeze(0)


class MAEModel(VisionSSLPreTrainedModel):
    config_class = MAEConfig
    needs_vit_backbone = True  # --backbone auto picks a ViT preset

    def __init__(self, config: MAEConfig):
        super().__init__(config)
        require_plain_vit(self.backbone, config.image_size)
        self.patch_size = self.backbone.config.patch_size
        self.num_patches = self.backbone.embeddings.patch_embeddings.num_patches
        self.num_masked = num_masked_patches(self.num_patches, config.mask_ratio)
        if not 1 <= self.num_masked < self.num_patches:
            raise ValueError(
                f"mask_ratio={config.mask_ratio} hides {self.num_masked} of the {self.num_patches} patches; MAE needs "
                "at least one hidden and one visible patch: change mask_ratio, or the patch or image size."
            )
        if config.norm_pix_loss and self.patch_size**2 * config.num_channels < 2:
            raise ValueError(
                "norm_pix_loss normalises each patch by the std of its pixels, and a 1-pixel greyscale patch has none: "
                "use a patch size of at least 2 (a larger --image_size) or set norm_pix_loss=false."
            )
        self.decoder = ViTMAEDecoder(decoder_config(config), self.num_patches)
        self.post_init()
        self._fix_position_embeddings()

    def _fix_position_embeddings(self) -> None:
        """MAE's encoder has fixed sin-cos position embeddings (the decoder's are fixed by ``ViTMAEDecoder``)."""
        if not self.config.fixed_position_embeddings:
            return
        position_embeddings = self.backbone.embeddings.position_embeddings
        if position_embeddings.shape[-1] % 4:
            raise ValueError(
                f"Fixed sin-cos position embeddings need a backbone width divisible by 4, got "
                f"{position_embeddings.shape[-1]}: set fixed_position_embeddings=false or change hidden_size."
            )
        grid_side = round(self.num_patches**0.5)
        with torch.no_grad():
            position_embeddings.copy_(sincos_position_embeddings(grid_side, position_embeddings.shape[-1]))
        self.freeze_fixed_position_embeddings()

    def freeze_fixed_position_embeddings(self) -> None:
        """No gradient to the fixed position embeddings (the decoder's, and the encoder's with
        ``fixed_position_embeddings``); ``from_pretrained`` freezes them again after loading."""
        self.decoder.decoder_pos_embed.requires_grad_(False)
        if self.config.fixed_position_embeddings:
            self.backbone.embeddings.position_embeddings.requires_grad_(False)

    @torch.no_grad()
    def _init_weights(self, module):
        """The decoder's Linear layers as MAE's code (Xavier uniform, zero bias); the backbone keeps its own scheme."""
        if isinstance(module, torch.nn.Linear):
            torch.nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, torch.nn.LayerNorm):
            torch.nn.init.ones_(module.weight)
            torch.nn.init.zeros_(module.bias)

    def encode_visible(self, pixel_values: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor:
        """The encoder on the visible patches: (B, C, S, S) images and (B, K) kept patch indices ->
        (B, 1 + K, D) layer-normed tokens, the CLS token first (as ``ViTModel`` over all patches)."""
        embeddings = self.backbone.embeddings
        position = embeddings.position_embeddings
        patches = embeddings.patch_embeddings(pixel_values) + position[:, 1:]
        visible = keep_tokens(patches, ids_keep)
        cls_token = (embeddings.cls_token + position[:, :1]).expand(visible.shape[0], -1, -1)
        hidden = embeddings.dropout(torch.cat([cls_token, visible], dim=1))
        for layer in self.backbone.layers:
            hidden = layer(hidden)
        return self.backbone.layernorm(hidden)

    def reconstruction_target(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) -> (B, N, p * p * C): the patches' pixels, normalised per patch with ``norm_pix_loss``."""
        target = patchify(pixel_values, self.patch_size)
        return normalize_patches(target)[0] if self.config.norm_pix_loss else target

    def forward(
        self, pixel_values: torch.Tensor, noise: torch.Tensor | None = None, return_loss: bool = True
    ) -> MAEOutput:
        """
        Args:
            pixel_values: (B, C, S, S) normalised images (the batch transform's augmented views).
            noise: (B, N) uniform noise per patch; the ``round(mask_ratio x N)`` largest values of each row mark
                its masked patches (drawn from torch's global generator when None).
            return_loss: compute the loss.
        """
        if noise is None:
            noise = torch.rand(pixel_values.shape[0], self.num_patches, device=pixel_values.device)
        mask = patch_mask_from_noise(noise, self.num_masked)
        latent = self.encode_visible(pixel_values, mask.ids_keep)
        prediction = self.decoder(latent, mask.ids_restore).logits
        loss = None
        if return_loss:
            loss = masked_patch_mse(prediction, self.reconstruction_target(pixel_values), mask.mask)
        return MAEOutput(loss=loss, logits=prediction, mask=mask.mask, features=latent[:, 0])

    @torch.no_grad()
    def reconstruction_panels(
        self, images: torch.Tensor, normalize: Callable, denormalize: Callable, generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        """What the model sees and predicts, for a picture: ``images`` (B, C, S, S) in [0, 1] -> panels in [0, 1]:
        the original, the masked input (hidden patches grey), the reconstruction, and the reconstruction with the
        visible patches pasted back. With ``norm_pix_loss`` each predicted patch is de-normalised with the mean and
        std of the true patch (the prediction is of the normalised patch). ``normalize``/``denormalize`` map [0, 1]
        images to the model's input and back; ``generator`` draws the mask (seed it for the same mask each time)."""
        inputs = normalize(images)
        noise = torch.rand(images.shape[0], self.num_patches, generator=generator).to(images.device)
        output = self(inputs, noise=noise, return_loss=False)
        patches = patchify(inputs, self.patch_size)
        prediction = output.logits
        if self.config.norm_pix_loss:
            prediction = denormalize_patches(prediction, normalize_patches(patches)[1])
        hidden = output.mask.unsqueeze(-1)
        side, channels = inputs.shape[-1], inputs.shape[1]

        def to_image(tokens):
            return unpatchify(tokens, self.patch_size, channels, side, side)

        visible_only = to_image(patchify(images, self.patch_size) * (1 - hidden) + HIDDEN_PATCH_GREY * hidden)
        return {
            "original": images,
            "masked input": visible_only,
            "reconstruction": denormalize(to_image(prediction)).clamp(0, 1),
            "reconstruction + visible": denormalize(to_image(patches * (1 - hidden) + prediction * hidden)).clamp(
                0, 1
            ),
        }


def mae_batch_transform(model: MAEModel, image_processor=None) -> MaskedImageTransform:
    """One augmented view of every image (MAE's random resized crop, ``min_crop_scale``-1, and flip; no colour
    change) at the config's ``image_size``, normalised as ``image_processor``, and uniform noise per patch that
    draws the mask.

    Batch: ``{"pixel_values": uint8 (B, C, H, W)}`` -> ``{"pixel_values": (B, C', S, S), "noise": (B, N)}``."""
    config = model.config
    recipe = ViewRecipe(
        crop_scale=(config.min_crop_scale, 1.0),
        color_jitter_probability=0.0,
        grayscale_probability=0.0,
        blur_probability=0.0,
    )
    views = multi_view_transform(config, [recipe], image_processor)
    return MaskedImageTransform(views.view_generator, model.num_patches)
