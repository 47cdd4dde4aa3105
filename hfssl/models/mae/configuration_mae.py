"""MAE configuration."""

from __future__ import annotations

from ..checks import require_bool, require_int, require_real
from ..vision import VisionSSLConfig

# A decoder for images of at most this side (CIFAR, Fashion-MNIST, STL-10 crops): the paper's 8 x 512 decoder on
# a 64-token grid would cost several times the ViT-Ti encoder it trains; this one costs about half of it.
SMALL_IMAGE_SIDE = 64
SMALL_IMAGE_DECODER = dict(
    decoder_hidden_size=128, decoder_num_hidden_layers=4, decoder_num_attention_heads=4, decoder_intermediate_size=512
)


class MAEConfig(VisionSSLConfig):
    """Configuration of :class:`~hfssl.models.mae.MAEModel`.

    He et al. 2022, "Masked Autoencoders Are Scalable Vision Learners". Defaults are the paper's
    (sec. 3 and appendix A.1): 75% of the patches masked, a decoder of 8 Transformer blocks of width
    512 (16 heads, MLP 2048) with fixed 2-D sin-cos position embeddings, the per-patch normalised
    pixel target, and random resized crops (0.2-1) with flips as the only augmentation. The encoder is
    the backbone, a ViT (``vit-tiny``, ``vit-small``, ``vit-base`` or any ``vit`` config), run on the
    visible patches alone; its position embeddings are the fixed sin-cos ones too.

    The optimizer is not part of the model: the paper trains with AdamW (betas 0.9, 0.95, weight decay
    0.05) at a base learning rate of 1.5e-4 x batch / 256, 40 warm-up epochs, cosine decay.

    Args:
        backbone_config, pooling, image_size: see :class:`~hfssl.models.vision.VisionSSLConfig`; the
            backbone must be a ViT whose ``image_size`` is ``image_size``.
        mask_ratio: share of the patches hidden in every image, in (0, 1); exactly
            ``round(mask_ratio x N)`` of the N patches (paper: 0.75).
        norm_pix_loss: predict each patch's pixels normalised by the patch's own mean and std
            (paper: yes, it improves the representation, table 1c).
        fixed_position_embeddings: the encoder's position embeddings are MAE's fixed 2-D sin-cos ones
            (not trained); False keeps the ViT's own learned ones.
        decoder_hidden_size, decoder_num_hidden_layers, decoder_num_attention_heads,
        decoder_intermediate_size: the decoder's width, depth, heads and MLP width (paper: 512, 8, 16,
            2048); images of at most 64 px get 128, 4, 4, 512 from the recipe (``sized_for_data``).
        min_crop_scale: smallest area share of the random resized crop (paper: 0.2), in (0, 1].

    Every field is checked at construction (:class:`~hfssl.models.checks.CheckedConfig`).
    """

    model_type = "hfssl_mae"

    mask_ratio: float = 0.75
    norm_pix_loss: bool = True
    fixed_position_embeddings: bool = True
    decoder_hidden_size: int = 512
    decoder_num_hidden_layers: int = 8
    decoder_num_attention_heads: int = 16
    decoder_intermediate_size: int = 2048
    min_crop_scale: float = 0.2

    def sized_for_data(self, num_images: int | None) -> dict:
        """The small decoder (:data:`SMALL_IMAGE_DECODER`) for images of at most 64 px, where the paper's
        costs several times the encoder; nothing for larger images."""
        if self.image_size > SMALL_IMAGE_SIDE:
            return {}
        return {name: value for name, value in SMALL_IMAGE_DECODER.items() if getattr(self, name) != value}

    def check_ranges(self) -> None:
        """``mask_ratio`` in (0, 1); widths, depth and heads ints >= 1, the width a multiple of the heads and of 4;
        flags booleans; ``min_crop_scale`` in (0, 1]."""
        super().check_ranges()
        require_real(self, "mask_ratio", 0, 1, low_open=True, high_open=True, hint="the share of patches hidden")
        require_bool(self, "norm_pix_loss")
        require_bool(self, "fixed_position_embeddings")
        for name in ("decoder_hidden_size", "decoder_num_hidden_layers", "decoder_intermediate_size"):
            require_int(self, name, 1, "a decoder width or depth")
        require_int(self, "decoder_num_attention_heads", 1, "attention heads of the decoder")
        if self.decoder_hidden_size % self.decoder_num_attention_heads:
            raise ValueError(
                f"MAEConfig.decoder_hidden_size ({self.decoder_hidden_size}) must be a multiple of "
                f"decoder_num_attention_heads ({self.decoder_num_attention_heads})."
            )
        if self.decoder_hidden_size % 4:
            raise ValueError(
                f"MAEConfig.decoder_hidden_size must be a multiple of 4 (its 2-D sin-cos position embeddings split "
                f"it in four), got {self.decoder_hidden_size}."
            )
        require_real(self, "min_crop_scale", 0, 1, low_open=True, hint="the smallest area share of a crop")
