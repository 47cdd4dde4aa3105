"""Range checks shared by every method's config."""

from __future__ import annotations

from transformers import PreTrainedConfig


def require(config: PreTrainedConfig, name: str, valid: bool, expected: str) -> None:
    """Raise a ValueError naming ``config``'s field ``name``, its value and the valid range, unless ``valid``.

    Configs validate their ranges at construction, so a bad ``--config_overrides`` fails at once."""
    if not valid:
        raise ValueError(f"{type(config).__name__}.{name} must be {expected}, got {getattr(config, name)!r}.")
