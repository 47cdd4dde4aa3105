"""Range checks of hfssl's own training arguments (kNN evaluation, LARS), run where they are parsed.

``SSLTrainingArguments.__post_init__`` calls :func:`check_ssl_training_arguments`, so a bad flag fails
before any data is read, with the flag, its value and the valid range.
"""

from __future__ import annotations

from ..models.checks import interval, is_int, within


def require_flag(args, name: str, valid: bool, expected: str) -> None:
    """Raise a ValueError naming ``--<name>``, its value and the valid range, unless ``valid``."""
    if not valid:
        raise ValueError(f"--{name} must be {expected}, got {getattr(args, name)!r}.")


def require_int_flag(args, name: str, minimum: int, hint: str) -> None:
    """``args.<name>`` is an int >= ``minimum``."""
    value = getattr(args, name)
    require_flag(args, name, is_int(value) and value >= minimum, f"an int >= {minimum} ({hint})")


def require_real_flag(
    args,
    name: str,
    low: float | None,
    high: float | None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    hint: str,
) -> None:
    """``args.<name>`` is a finite number in the interval."""
    value = getattr(args, name)
    expected = f"{interval(low, high, low_open, high_open)} ({hint})"
    require_flag(args, name, within(value, low, high, low_open, high_open), expected)


def check_ssl_training_arguments(args) -> None:
    """Refuse kNN and LARS settings out of range (the LARS ones only matter with ``--use_lars``, but a
    value out of range is a mistake either way):

    * ``--knn_k``: an int >= 1 (neighbours of the kNN vote);
    * ``--knn_temperature``: > 0 (the vote weights are ``exp(similarity / T)``);
    * ``--lars_eta``: > 0 (the trust coefficient scales every layer's step; 0 takes none);
    * ``--lars_momentum``: in [0, 1) (1 never forgets a gradient, so the steps grow without bound);
    * ``--lars_exclude_lr_scale``: > 0 (0 would freeze every bias and norm parameter).
    """
    require_int_flag(args, "knn_k", 1, "neighbours of the weighted kNN vote; 200 is the InstDisc protocol")
    require_real_flag(args, "knn_temperature", 0, None, low_open=True, hint="the vote weights are exp(sim / T)")
    require_real_flag(args, "lars_eta", 0, None, low_open=True, hint="the LARS trust coefficient; 0.001 is usual")
    require_real_flag(args, "lars_momentum", 0, 1, high_open=True, hint="SGD momentum; 0.9 is usual")
    require_real_flag(
        args, "lars_exclude_lr_scale", 0, None, low_open=True, hint="the biases' and norms' share of the learning rate"
    )
