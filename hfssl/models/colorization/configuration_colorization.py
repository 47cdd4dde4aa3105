"""Colorization configuration."""

from __future__ import annotations

from ..checks import require, require_choice, require_int, require_probability, require_real
from ..vision import VisionSSLConfig

OBJECTIVES = ("classification", "regression")


class ColorizationConfig(VisionSSLConfig):
    """Configuration of :class:`~hfssl.models.colorization.ColorizationModel`.

    Zhang et al. 2016, "Colorful Image Colorization". The backbone sees the lightness L of CIE Lab (one channel)
    and the head predicts the two colour channels ab at a quarter of the image side: by default as a distribution
    over the in-gamut ab bins (:func:`hfssl.pretext.in_gamut_ab_bins`) with the paper's soft-encoded targets and
    class rebalancing, or as a regression of ab.

    Args:
        backbone_config, pooling, image_size: see :class:`~hfssl.models.vision.VisionSSLConfig`; the backbone reads
            one channel (``num_channels=1``; the recipe sets it).
        objective: ``"classification"`` (the paper's multinomial loss) or ``"regression"`` (squared error on ab).
        ab_bin_size: the step of the ab grid (paper: 10).
        soft_encoding_neighbours, soft_encoding_sigma: each target pixel spreads over this many nearest bins with
            Gaussian weights of this std (paper: 5 and 5).
        rebalancing_mix: the weight lambda of the uniform distribution mixed into the empirical one before the
            class weights are inverted (paper: 0.5); 1 weights every bin alike (no rebalancing).
        rebalancing_sigma: std of the Gaussian that smooths the empirical distribution (paper: 5).
        annealed_mean_temperature: sharpening of the predicted distribution for the picture (paper: 0.38).
        decoder_channels: width of the prediction head.
        min_crop_scale, flip_probability: the light augmentation (random resized crop and flip).

    The empirical bin distribution is counted over the training batches seen (all processes), kept in the model as
    a buffer, and saved with it. Every field is checked at construction
    (:class:`~hfssl.models.checks.CheckedConfig`).
    """

    model_type = "hfssl_colorization"

    objective: str = "classification"
    ab_bin_size: float = 10.0
    soft_encoding_neighbours: int = 5
    soft_encoding_sigma: float = 5.0
    rebalancing_mix: float = 0.5
    rebalancing_sigma: float = 5.0
    annealed_mean_temperature: float = 0.38
    decoder_channels: int = 128
    min_crop_scale: float = 0.5
    flip_probability: float = 0.5

    def check_ranges(self) -> None:
        """``objective`` in :data:`OBJECTIVES`; the bin size in [2, 55]; counts ints >= 1; sigmas and temperature
        > 0; the mix and flip chance in [0, 1]; ``min_crop_scale`` in (0, 1]; the backbone reads one channel."""
        super().check_ranges()
        require_choice(self, "objective", OBJECTIVES)
        require_real(self, "ab_bin_size", 2, 55, hint="the step of the ab grid; the paper's is 10")
        require_int(self, "soft_encoding_neighbours", 1, "bins each target pixel spreads over")
        require_real(self, "soft_encoding_sigma", 0, low_open=True, hint="in ab units")
        require_probability(self, "rebalancing_mix", "the share of the uniform distribution")
        require_real(self, "rebalancing_sigma", 0, low_open=True, hint="in ab units")
        require_real(self, "annealed_mean_temperature", 0, low_open=True, hint="paper: 0.38")
        require_int(self, "decoder_channels", 1, "the width of the prediction head")
        require_real(self, "min_crop_scale", 0, 1, low_open=True, hint="the smallest area share of a crop")
        require_probability(self, "flip_probability")
        require(
            self,
            "backbone_config",
            self.num_channels == 1,
            "a backbone of num_channels=1 (it reads the L channel; add num_channels=1 to --backbone_config_overrides)",
        )
