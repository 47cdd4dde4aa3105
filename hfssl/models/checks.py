"""Range checks shared by every method's config.

Every hfssl config subclasses :class:`CheckedConfig` and states its ranges in :meth:`CheckedConfig.check_ranges`
with :func:`require` and the helpers below. The checks run however transformers builds the config (the
constructor, ``from_dict``/``from_pretrained``/``AutoConfig`` with or without keyword overrides) and again
before ``save_pretrained`` writes it, so a bad ``--config_overrides`` fails at once and an out-of-range
value set later never reaches a checkpoint.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

from transformers import PreTrainedConfig


def require(config: PreTrainedConfig, name: str, valid: bool, expected: str) -> None:
    """Raise a ValueError naming ``config``'s field ``name``, its value and the valid range, unless ``valid``.

    Configs validate their ranges at construction, so a bad ``--config_overrides`` fails at once."""
    if not valid:
        raise ValueError(f"{type(config).__name__}.{name} must be {expected}, got {getattr(config, name)!r}.")


def is_int(value) -> bool:
    """Whether ``value`` is an integer (``True``/``False`` are not)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value) -> bool:
    """Whether ``value`` is a finite real number (``True``/``False``, NaN and infinities are not)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def interval(
    low: float | None = None, high: float | None = None, low_open: bool = False, high_open: bool = False
) -> str:
    """The range in words: ``"> 0"``, ``">= 0"``, ``"<= 1"``, ``"in (0, 1]"``, ..."""
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high:g}"
    return "a finite number"


def within(value, low: float | None, high: float | None, low_open: bool, high_open: bool) -> bool:
    """Whether ``value`` is a finite real number in the interval."""
    if not is_real(value):
        return False
    above = low is None or (value > low if low_open else value >= low)
    below = high is None or (value < high if high_open else value <= high)
    return above and below


def require_real(
    config: PreTrainedConfig,
    name: str,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    hint: str = "",
) -> None:
    """``config.<name>`` is a finite number in the interval (closed ends unless ``*_open``); ``hint`` says why."""
    expected = interval(low, high, low_open, high_open) + (f" ({hint})" if hint else "")
    require(config, name, within(getattr(config, name), low, high, low_open, high_open), expected)


def require_probability(config: PreTrainedConfig, name: str, hint: str = "") -> None:
    """``config.<name>`` is a probability or share, in [0, 1]."""
    require_real(config, name, 0, 1, hint=hint)


def require_int(config: PreTrainedConfig, name: str, minimum: int = 1, hint: str = "") -> None:
    """``config.<name>`` is an int >= ``minimum`` (a size, a count, a width)."""
    value = getattr(config, name)
    require(config, name, is_int(value) and value >= minimum, f"an int >= {minimum}" + (f" ({hint})" if hint else ""))


def require_optional_int(config: PreTrainedConfig, name: str, minimum: int = 1, hint: str = "") -> None:
    """``config.<name>`` is None or an int >= ``minimum``."""
    value = getattr(config, name)
    expected = f"None or an int >= {minimum}" + (f" ({hint})" if hint else "")
    require(config, name, value is None or (is_int(value) and value >= minimum), expected)


def require_bool(config: PreTrainedConfig, name: str) -> None:
    """``config.<name>`` is a flag: ``True``/``False`` (or ``1``/``0``, as command lines and gensim write them)."""
    value = getattr(config, name)
    require(config, name, isinstance(value, bool) or (is_int(value) and value in (0, 1)), "True or False (1 or 0)")


def require_choice(config: PreTrainedConfig, name: str, choices: Iterable[str]) -> None:
    """``config.<name>`` is one of ``choices``."""
    choices = tuple(choices)
    require(
        config, name, isinstance(getattr(config, name), str) and getattr(config, name) in choices, f"one of {choices}"
    )


class CheckedConfig(PreTrainedConfig):
    """A ``PreTrainedConfig`` that checks its ranges whenever it is built, and before it is saved.

    Subclasses extend :meth:`check_ranges` (calling ``super().check_ranges()`` first) and derive any
    field in ``__post_init__`` *before* calling ``super().__post_init__``, which ends with the checks.
    ``from_dict`` (behind ``from_pretrained`` and ``AutoConfig``) sets keyword overrides after the
    constructor has run, so it checks again; ``validate`` (which ``save_pretrained`` calls) too.
    """

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.check_ranges()

    def check_ranges(self) -> None:
        """Raise a ValueError naming the first field out of its range, its value and the valid range."""

    def validate(self) -> None:
        """transformers' own checks, then :meth:`check_ranges`: an out-of-range value set after construction
        (``config.tau = -1``) is refused before ``save_pretrained`` writes it."""
        super().validate()
        self.check_ranges()

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs):
        """``PreTrainedConfig.from_dict``, checked after the keyword overrides are set."""
        result = super().from_dict(config_dict, **kwargs)
        (result[0] if isinstance(result, tuple) else result).check_ranges()
        return result


def require_rising_momentum(config: PreTrainedConfig, network: str) -> None:
    """``base_momentum`` and ``final_momentum`` in [0, 1], the final one >= the base one: the EMA weights of
    ``network`` (the teacher of BYOL, MoCo v3, DINO) at step 0 and at the last step of a cosine rise."""
    require_real(config, "base_momentum", 0, 1, hint=f"the EMA weight of the {network} at step 0")
    require_real(config, "final_momentum", 0, 1, hint=f"the EMA weight of the {network} at the last step")
    require(
        config,
        "final_momentum",
        config.final_momentum >= config.base_momentum,
        f">= base_momentum = {config.base_momentum!r} (the momentum rises to it)",
    )


def require_crop_scale(config: PreTrainedConfig, name: str) -> None:
    """``name`` is a pair (min, max) of area shares with ``0 < min <= max <= 1`` (a multi-crop method's crop scale)."""
    scale = getattr(config, name)
    pair = isinstance(scale, (list, tuple)) and len(scale) == 2 and all(is_real(s) for s in scale)
    require(config, name, pair and 0 < scale[0] <= scale[1] <= 1, "a pair (min, max) with 0 < min <= max <= 1")
