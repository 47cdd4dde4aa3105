"""Image-text data resolver (CLIP): image-caption pairs from the same sources as the vision resolver.

``load_image_text_datasets`` turns command-line style arguments into a train and an eval
``datasets.Dataset`` with an ``"image"`` and a ``"caption"`` column, plus the columns whose values are the
classes of zero-shot evaluation (``--zero_shot_columns``, e.g. the ``group`` and ``subgroup`` of emoji-captions),
whatever the source:

* ``--train_dir``: an ``imagefolder`` directory whose ``metadata.jsonl`` gives each file's caption
  (``../shared/data/emoji-captions`` is one), with an optional ``--validation_dir``;
* ``--dataset_name``: a Hub dataset with image and caption columns (``--image_column_name``,
  ``--caption_column_name``), or ``builtin:digits``: scikit-learn's digits captioned "a handwritten digit seven",
  shipped with scikit-learn and so available offline.

Everything else is the vision resolver's (:mod:`hfssl.data.vision`): the eval split or a held-out share
(``--validation_split_percentage``: a random share of the pairs, so with one row per image a held-out image is never
seen in training), subsampling, and every image decoded once before training (a bad file stops the run, named, or is
skipped with ``--skip_bad_images``). A pair without a caption (missing or blank) cannot be trained or scored: it
is dropped, and the count logged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional

import datasets
import numpy as np
import pyarrow as pa
import torch

from .idx import array_dataset
from .image_collator import ImageCollator
from .splits import BUILTIN_PREFIX, DataSource
from .vision import (
    IMAGE_COLUMN_CANDIDATES,
    LABEL_COLUMN_CANDIDATES,
    VisionDataArguments,
    _check_arguments,
    _load_eval,
    _named_or_detected,
    _open_source,
    _require_rows,
    split_subsample_and_check,
)

logger = logging.getLogger(__name__)

CAPTION_COLUMN_CANDIDATES = ("caption", "text", "captions", "sentence", "sentences")
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DIGIT_CAPTION = "a handwritten digit {}"


@dataclass
class ImageTextDataArguments(VisionDataArguments):
    """Where the image-caption pairs come from (see the module docstring); parsed by ``HfArgumentParser``."""

    caption_column_name: Optional[str] = field(
        default=None,
        metadata={
            "help": f"Column holding the captions (one string per image); default: the first of "
            f"{', '.join(CAPTION_COLUMN_CANDIDATES)} that exists."
        },
    )
    zero_shot_columns: Optional[str] = field(
        default=None,
        metadata={
            "help": "Comma-separated columns whose values are the classes of zero-shot classification, e.g. "
            "'group,subgroup' for emoji-captions; default: the label column when there is one (--label_column_name)."
        },
    )
    max_seq_length: int = field(
        default=77,
        metadata={"help": "Captions are cut to this many tokens, with their start and end tokens (CLIP: 77)."},
    )

    def __post_init__(self):
        if self.idx_dir:
            raise ValueError(
                "--idx_dir reads MNIST-format files, which hold no captions; pass --train_dir (an imagefolder with a "
                "metadata.jsonl of captions) or --dataset_name."
            )
        if not isinstance(self.max_seq_length, int) or self.max_seq_length < 3:
            raise ValueError(
                f"--max_seq_length must be an int >= 3 (start, one token, end), got {self.max_seq_length!r}."
            )

    @property
    def zero_shot_column_names(self) -> list[str]:
        return [name.strip() for name in (self.zero_shot_columns or "").split(",") if name.strip()]


@dataclass
class ImageTextDatasets:
    """What ``load_image_text_datasets`` resolved: datasets with "image", "caption" and the ``class_columns``.

    ``num_channels`` and ``image_size`` describe the leading train images, as for
    :class:`~hfssl.data.vision.VisionDatasets`; ``skipped_files`` are the images ``--skip_bad_images`` dropped."""

    train: datasets.Dataset
    eval: Optional[datasets.Dataset]
    class_columns: list[str]
    num_channels: int
    image_size: int
    description: str
    skipped_files: list[str] = field(default_factory=list)

    @property
    def skipped_images(self) -> int:
        return len(self.skipped_files)


def load_image_text_datasets(args: ImageTextDataArguments) -> ImageTextDatasets:
    """Resolve ``args`` into train/eval datasets of image-caption pairs (see the module docstring).

    Raises ``ValueError`` naming the problem and the argument that fixes it: a missing image or caption column
    (listing the columns that exist), captions that are not one string per image, a split left empty.
    """
    _check_arguments(args)
    source = _image_text_source(args)
    train = source.load_named(args.train_split, "--train_split")
    eval_dataset = _load_eval(source, args)
    wanted = _resolve_columns(train, args)
    class_columns = [column for column in wanted if wanted[column] not in ("image", "caption")]
    train = _select_columns(train, wanted, "train")
    if eval_dataset is not None:
        eval_dataset = _select_columns(eval_dataset, wanted, "eval")
    train = _drop_missing_captions(train, "train")
    final = split_subsample_and_check(
        train, eval_dataset, source, args, unit="image-caption pairs",
        clean_eval=lambda split: _drop_missing_captions(split, "eval"),
    )  # fmt: skip
    return ImageTextDatasets(
        train=final.train,
        eval=final.eval,
        class_columns=class_columns,
        num_channels=final.num_channels,
        image_size=final.image_size,
        description=final.description,
        skipped_files=final.skipped_files,
    )


def _image_text_source(args: ImageTextDataArguments) -> DataSource:
    if not args.train_dir and args.dataset_name == BUILTIN_PREFIX + "digits":
        return DataSource.from_splits(
            {"train": captioned_digits()}, 'scikit-learn digits, 8x8 greyscale, captioned "a handwritten digit N"'
        )
    if not args.train_dir and args.dataset_name.startswith(BUILTIN_PREFIX):
        raise ValueError(f"Unknown built-in image-text dataset {args.dataset_name!r}; available: builtin:digits.")
    return _open_source(args)


def captioned_digits() -> datasets.Dataset:
    """scikit-learn's 1,797 digits as (8, 8) uint8 images, captioned "a handwritten digit seven", with their class
    ("zero" .. "nine") as "label"."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    dataset = array_dataset(images, digits.target, datasets.ClassLabel(names=list(DIGIT_NAMES)))
    return dataset.add_column("text", [DIGIT_CAPTION.format(DIGIT_NAMES[label]) for label in digits.target])


def _resolve_columns(dataset: datasets.Dataset, args: ImageTextDataArguments) -> dict[str, str]:
    """{column: its name in the resolved splits}: the images as "image", the captions as "caption", the zero-shot
    class columns under their own names."""
    columns = list(dataset.column_names)
    image = _named_or_detected(columns, args.image_column_name, IMAGE_COLUMN_CANDIDATES, "image")
    caption = _named_or_detected(columns, args.caption_column_name, CAPTION_COLUMN_CANDIDATES, "caption")
    for kind, found, candidates in (
        ("image", image, IMAGE_COLUMN_CANDIDATES),
        ("caption", caption, CAPTION_COLUMN_CANDIDATES),
    ):
        if found is None:
            raise ValueError(
                f"No {kind} column found: the dataset has columns {columns} and none is one of {list(candidates)}. "
                f"Pass --{kind}_column_name with the column that holds the {kind}s."
            )
    _require_string_captions(dataset.features[caption], caption)
    classes = args.zero_shot_column_names
    if not classes:
        label = _named_or_detected(columns, args.label_column_name, LABEL_COLUMN_CANDIDATES, "label")
        classes = [label] if label is not None else []
    missing = [column for column in classes if column not in columns]
    if missing:
        raise ValueError(f"--zero_shot_columns names {missing}, which the dataset lacks; it has columns {columns}.")
    clashing = [column for column in classes if column in (image, caption, "image", "caption")]
    if clashing:
        raise ValueError(f"--zero_shot_columns {clashing} name the image or caption column; name class columns.")
    return {image: "image", caption: "caption", **{column: column for column in classes}}


def _require_string_captions(feature, column: str) -> None:
    pa_type = feature.pa_type if isinstance(feature, datasets.Value) else None
    if pa_type is None or not (pa.types.is_string(pa_type) or pa.types.is_large_string(pa_type)):
        raise ValueError(
            f"The caption column {column!r} has type {feature}; hfssl's CLIP takes one caption string per image. "
            "For several captions per image keep one (e.g. dataset.map(lambda row: {'caption': row['caption'][0]}) "
            "saved with save_to_disk, then --dataset_name that folder), or name another column with "
            "--caption_column_name. (One row per caption would put copies of an image on both sides of the "
            "held-out split.)"
        )


def _select_columns(dataset: datasets.Dataset, wanted: dict[str, str], split: str) -> datasets.Dataset:
    missing = [column for column in wanted if column not in dataset.column_names]
    if missing:
        raise ValueError(
            f"The {split} split lacks column(s) {missing} found in the train split; it has columns "
            f"{dataset.column_names}. Pass column names both splits have."
        )
    dataset = dataset.select_columns(list(wanted))
    return dataset.rename_columns({old: new for old, new in wanted.items() if old != new})


def _drop_missing_captions(dataset: datasets.Dataset, split: str) -> datasets.Dataset:
    """``dataset`` without the rows whose caption is missing or blank (logged with their number)."""
    captions = dataset["caption"]
    keep = [index for index, caption in enumerate(captions) if caption is not None and caption.strip()]
    if len(keep) == len(captions):
        return dataset
    logger.warning(
        "%d of the %d %s pairs have no caption (missing or blank) and are dropped: a pair without a caption can be "
        "neither trained on nor scored.",
        len(captions) - len(keep),
        len(captions),
        split,
    )
    dataset = dataset.select(keep)
    _require_rows(dataset, split, " after dropping the pairs without a caption")
    return dataset


class ImageTextCollator:
    """Batch image-caption rows into ``{"pixel_values": uint8 (B, C, H, W), "input_ids": (B, L), "attention_mask":
    (B, L)}`` (plus ``"labels"`` when there is a "label" column): images as :class:`ImageCollator` does, captions
    tokenised with ``tokenizer``, padded to the longest and cut to ``max_seq_length`` tokens (start and end kept)."""

    def __init__(
        self, tokenizer, max_seq_length: int = 77, image_size: int | None = None, num_channels: int | None = None
    ):
        self.tokenizer = tokenizer
        self.max_seq_length = max_seq_length
        self.images = ImageCollator(image_size=image_size, num_channels=num_channels, resize_mixed_only=True)

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        batch = self.images(examples)
        text = self.tokenizer(
            [example["caption"] for example in examples],
            padding=True,
            truncation=True,
            max_length=self.max_seq_length,
            return_tensors="pt",
        )
        batch["input_ids"], batch["attention_mask"] = text["input_ids"], text["attention_mask"]
        return batch
