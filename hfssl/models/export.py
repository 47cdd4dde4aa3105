"""The preprocessor saved beside a checkpoint, for exports of a model loaded from it."""

from __future__ import annotations

import os


def saved_preprocessor(model, auto_class):
    """The tokenizer or image processor (``auto_class``: ``AutoTokenizer``/``AutoImageProcessor``)
    saved in the local checkpoint directory ``model`` was loaded from, else None (a model built
    from a config, or one whose directory holds no preprocessor)."""
    directory = getattr(model, "name_or_path", "")
    if not directory or not os.path.isdir(directory):
        return None
    try:
        return auto_class.from_pretrained(directory)
    except (OSError, ValueError, KeyError):
        return None
