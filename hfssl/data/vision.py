"""Vision data resolver shared by every vision recipe.

``load_vision_datasets`` turns command-line style arguments into a train and an eval
``datasets.Dataset`` with the same two columns, ``"image"`` and (when the data has labels)
``"label"`` (int), whatever the source:

* ``--idx_dir``: MNIST-format IDX files (``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``,
  read by :mod:`hfssl.data.idx`);
* ``--train_dir``: a local ``imagefolder`` directory (class subfolders and/or ``metadata.jsonl``),
  with an optional ``--validation_dir``;
* ``--dataset_name``: a Hugging Face Hub dataset id, or ``builtin:digits`` (scikit-learn's 8x8
  handwritten digits, shipped with scikit-learn and so available offline).

``--idx_dir`` and ``--train_dir`` win over ``--dataset_name``. Array sources (IDX, digits) are
stored as uint8 ``Array2D``/``Array3D`` columns formatted as numpy, so a row costs no decoding;
``datasets.Image`` columns are kept undecoded (``decode=False``) and decoded by
:class:`~hfssl.data.image_collator.ImageCollator`; before that, every image of the final splits is
decoded once (in parallel, cached: :mod:`hfssl.data.image_check`), so a truncated or empty file
stops the run before training, named, or is skipped and counted with ``--skip_bad_images``.
The eval split, the held-out share and subsampling follow :mod:`hfssl.data.splits`, as for text.
"""

import logging
import os
from dataclasses import dataclass, field
from typing import Optional, Union

import datasets
import numpy as np
import pyarrow as pa

from .idx import array_dataset, load_idx_splits, read_idx
from .image_check import cache_path, check_images
from .image_collator import ImageCollator, image_hw, is_colour, load_image
from .splits import (
    BUILTIN_PREFIX,
    EVAL_SPLIT_CANDIDATES,
    DataSource,
    check_validation_split_percentage,
    describe,
    eval_split_help,
    split_off_eval,
    split_seed_field,
    subsample,
    validation_split_percentage_field,
)

# ImageCollator (image_collator.py), read_idx (idx.py) and the split names (splits.py) are importable from here too.
__all__ = [
    "BUILTIN_DATASETS",
    "BUILTIN_PREFIX",
    "EVAL_SPLIT_CANDIDATES",
    "IMAGE_COLUMN_CANDIDATES",
    "LABEL_COLUMN_CANDIDATES",
    "ImageCollator",
    "VisionDataArguments",
    "VisionDatasets",
    "load_vision_datasets",
    "read_idx",
]

logger = logging.getLogger(__name__)

IMAGE_COLUMN_CANDIDATES = ("image", "img", "pixel_values", "png", "jpg")
LABEL_COLUMN_CANDIDATES = ("label", "labels", "fine_label", "class")
BUILTIN_DATASETS = ("digits",)
# How many leading train images decide VisionDatasets.num_channels and image_size.
PROBE_ROWS = 8


@dataclass
class VisionDataArguments:
    """Where the images come from and how to split them; parsed by ``HfArgumentParser``."""

    dataset_name: Optional[str] = field(
        default="builtin:digits",
        metadata={
            "help": "Hub dataset id (e.g. 'uoft-cs/cifar10'), a local directory `datasets.load_dataset` reads, or "
            "'builtin:digits' (scikit-learn's 8x8 digits, offline). "
            "Ignored when --train_dir or --idx_dir is set."
        },
    )
    dataset_config_name: Optional[str] = field(
        default=None, metadata={"help": "Configuration name of the Hub dataset, if it has several."}
    )
    train_dir: Optional[str] = field(
        default=None,
        metadata={
            "help": "Local imagefolder directory (class subfolders and/or metadata.jsonl); wins over --dataset_name."
        },
    )
    validation_dir: Optional[str] = field(
        default=None, metadata={"help": "Optional imagefolder directory for evaluation (only with --train_dir)."}
    )
    idx_dir: Optional[str] = field(
        default=None,
        metadata={
            "help": "Directory with MNIST-format IDX files {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] "
            "(e.g. MNIST, Fashion-MNIST); wins over --dataset_name."
        },
    )
    image_column_name: Optional[str] = field(
        default=None,
        metadata={
            "help": f"Column holding the images; default: the first of {', '.join(IMAGE_COLUMN_CANDIDATES)} that exists."
        },
    )
    label_column_name: Optional[str] = field(
        default=None,
        metadata={
            "help": f"Column holding the class labels; default: the first of {', '.join(LABEL_COLUMN_CANDIDATES)} "
            "that exists (none is fine for pretraining). String labels are mapped to ids in sorted order."
        },
    )
    train_split: str = field(default="train", metadata={"help": "Split to train on."})
    eval_split: Optional[str] = field(default=None, metadata={"help": eval_split_help()})
    validation_split_percentage: Optional[int] = validation_split_percentage_field("images")
    max_train_samples: Optional[int] = field(
        default=None,
        metadata={"help": "Keep only this many train rows: the first N after a shuffle with --split_seed."},
    )
    max_eval_samples: Optional[int] = field(
        default=None,
        metadata={"help": "Keep only this many eval rows: the first N after a shuffle with --split_seed."},
    )
    cache_dir: Optional[str] = field(
        default=None, metadata={"help": "Where `datasets` caches downloaded and prepared data."}
    )
    split_seed: int = split_seed_field()
    skip_bad_images: bool = field(
        default=False,
        metadata={
            "help": "Drop the images that cannot be decoded (truncated, empty, not an image) instead of stopping "
            "before training; each is logged, and their count is recorded as skipped_images in all_results.json."
        },
    )


@dataclass
class VisionDatasets:
    """What ``load_vision_datasets`` resolved: datasets with an "image" and optional int "label" column.

    ``num_channels`` and ``image_size`` describe the data as stored, read from the same first
    :data:`PROBE_ROWS` train images: ``num_channels`` is 3 when any of them is colour, else 1;
    ``image_size`` is the largest side (max of height and width) among them, so a non-square
    image counts by its longer side: 28 for Fashion-MNIST, 8 for the digits, 64 for the emoji. It
    is the native size a backbone can be built for; it says nothing about later rows, so a dataset
    of mixed sizes still needs ``ImageCollator(image_size=...)`` to batch.

    ``skipped_files`` are the images ``--skip_bad_images`` dropped from both splits because they
    cannot be decoded, ``skipped_images`` their number (0 without bad images, and for array sources).
    """

    train: datasets.Dataset
    eval: Optional[datasets.Dataset]
    num_channels: int
    image_size: int
    label_names: Optional[list[str]]
    description: str
    skipped_files: list[str] = field(default_factory=list)

    @property
    def skipped_images(self) -> int:
        return len(self.skipped_files)


def load_vision_datasets(args: VisionDataArguments) -> VisionDatasets:
    """Resolve ``args`` into train/eval datasets with an "image" and, when known, a "label" column.

    Images are uint8 arrays of shape (H, W) or (H, W, C) for IDX and digits data, or undecoded
    ``{"bytes", "path"}`` dicts (``datasets.Image(decode=False)``) for imagefolder and Hub data;
    batch them with ``ImageCollator`` into (B, C, H, W) uint8 tensors. Labels are ints in
    ``[0, len(label_names))``; string label columns are mapped to ids in sorted name order.

    The eval set is ``--validation_dir``, else ``--eval_split``, else the first of
    ``EVAL_SPLIT_CANDIDATES`` the source has, else ``validation_split_percentage`` percent of the
    train split held out (default 10; seeded, stratified by label when every class can be
    represented; see :func:`hfssl.data.splits.split_off_eval`). ``max_train_samples``/
    ``max_eval_samples`` keep the first N rows after a shuffle with ``split_seed``.
    ``num_channels`` and ``image_size`` are read from the leading train images (see :class:`VisionDatasets`).

    Image files (and encoded bytes) are decoded once before training, see :func:`_check_decodable`.

    Raises ``ValueError`` naming the problem and the argument that fixes it.
    """
    _check_arguments(args)
    source = _open_source(args)
    train = source.load_named(args.train_split, "--train_split")
    eval_dataset = _load_eval(source, args)
    image_column, label_column = _resolve_columns(train, args)
    train = _standardize_columns(train, image_column, label_column, "train")
    if eval_dataset is not None:
        eval_dataset = _standardize_columns(eval_dataset, image_column, label_column, "eval")
    train = _drop_missing_train_labels(train)
    _refuse_missing_eval_labels(eval_dataset)
    train, eval_dataset, label_names = _encode_labels(train, eval_dataset)
    if eval_dataset is None:
        _require_rows(train, "train", "")
    final = split_subsample_and_check(train, eval_dataset, source, args, unit="images")
    return VisionDatasets(
        train=final.train,
        eval=final.eval,
        num_channels=final.num_channels,
        image_size=final.image_size,
        label_names=label_names,
        description=final.description,
        skipped_files=final.skipped_files,
    )


@dataclass
class FinalImageSplits:
    """What :func:`split_subsample_and_check` made: the final splits, their description, the files dropped as
    undecodable, and the channels and largest side of the leading train images (see :class:`VisionDatasets`)."""

    train: datasets.Dataset
    eval: Optional[datasets.Dataset]
    description: str
    skipped_files: list[str]
    num_channels: int
    image_size: int


def split_subsample_and_check(
    train: datasets.Dataset,
    eval_dataset: Optional[datasets.Dataset],
    source: DataSource,
    args: VisionDataArguments,
    unit: str,
    clean_eval=None,
) -> FinalImageSplits:
    """The steps every image resolver ends with: the eval split, else a held-out share of ``train``
    (:func:`hfssl.data.splits.split_off_eval`; ``unit`` words its log); ``clean_eval`` (a function of a split, e.g.
    dropping pairs without a caption) on a given eval split; ``--max_*_samples``; every image decoded once
    (:func:`_check_decodable`); the leading train images probed."""
    train, eval_dataset, held_out = split_off_eval(
        train,
        eval_dataset,
        args.validation_split_percentage,
        args.split_seed,
        source.description,
        unit=unit,
        alternatives="--validation_dir or --eval_split",
    )
    train = _finalize(subsample(train, args.max_train_samples, args.split_seed), "train", args.max_train_samples)
    if eval_dataset is not None:
        if clean_eval is not None:
            eval_dataset = clean_eval(eval_dataset)
        eval_dataset = subsample(eval_dataset, args.max_eval_samples, args.split_seed)
        eval_dataset = _finalize(eval_dataset, "eval", args.max_eval_samples)
    train, eval_dataset, skipped_files = _check_decodable(train, eval_dataset, source.description, args)
    probe = _leading_images(train)
    return FinalImageSplits(
        train=train,
        eval=eval_dataset,
        description=describe(source.description, train, eval_dataset, held_out),
        skipped_files=skipped_files,
        num_channels=3 if any(is_colour(image) for image in probe) else 1,
        image_size=max(max(image_hw(image)) for image in probe),
    )


def _check_arguments(args: VisionDataArguments) -> None:
    """Reject contradictory or missing source arguments before touching any data."""
    if args.train_dir and args.idx_dir:
        raise ValueError(
            "Both --train_dir and --idx_dir are set; pass only one of them (each replaces --dataset_name)."
        )
    if not (args.train_dir or args.idx_dir or args.dataset_name):
        raise ValueError("No data source: pass --dataset_name (a Hub id or builtin:digits), --train_dir or --idx_dir.")
    if args.validation_dir and not args.train_dir:
        raise ValueError(
            "--validation_dir is only used together with --train_dir; pass --train_dir or --eval_split instead."
        )
    if args.validation_dir and args.eval_split:
        raise ValueError("Both --validation_dir and --eval_split are set; pass only one of them.")
    check_validation_split_percentage(args.validation_split_percentage)
    directories = {"--train_dir": args.train_dir, "--validation_dir": args.validation_dir, "--idx_dir": args.idx_dir}
    for flag, path in directories.items():
        if path and not os.path.isdir(path):
            raise ValueError(f"{flag} {path!r} is not a directory; check the path.")


def _open_source(args: VisionDataArguments) -> DataSource:
    """Pick the data source by precedence: idx_dir, train_dir, builtin:*, then the Hub."""
    if args.idx_dir:
        return DataSource.from_splits(load_idx_splits(args.idx_dir), f"IDX files from {args.idx_dir}")
    if args.train_dir:
        description = f"imagefolder {args.train_dir}" + (
            f" (eval: {args.validation_dir})" if args.validation_dir else ""
        )
        return DataSource.from_splits(_load_imagefolder(args.train_dir, args.cache_dir), description)
    if args.dataset_name.startswith(BUILTIN_PREFIX):
        return _builtin_source(args.dataset_name[len(BUILTIN_PREFIX) :])
    return DataSource.from_hub(args.dataset_name, args.dataset_config_name, args.cache_dir)


def _builtin_source(name: str) -> DataSource:
    if name not in BUILTIN_DATASETS:
        available = ", ".join(BUILTIN_PREFIX + builtin for builtin in BUILTIN_DATASETS)
        raise ValueError(f"Unknown built-in dataset {BUILTIN_PREFIX + name!r}; available: {available}.")
    return DataSource.from_splits({"train": _digits_dataset()}, "scikit-learn digits, 8x8 greyscale")


def _digits_dataset() -> datasets.Dataset:
    """scikit-learn's 1,797 digits as (8, 8) uint8 images (0..16 scaled to 0..255) with labels "0".."9"."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    return array_dataset(images, digits.target, datasets.ClassLabel(names=[str(digit) for digit in range(10)]))


def _load_imagefolder(
    directory: str, cache_dir: Optional[str], split: Optional[str] = None
) -> Union[datasets.DatasetDict, datasets.Dataset]:
    return datasets.load_dataset("imagefolder", data_dir=directory, split=split, cache_dir=cache_dir)


def _load_eval(source: DataSource, args: VisionDataArguments) -> Optional[datasets.Dataset]:
    """The eval split as given, or found among EVAL_SPLIT_CANDIDATES; None when there is none."""
    if args.validation_dir:
        return _load_imagefolder(args.validation_dir, args.cache_dir, split="train")
    if args.eval_split:
        return source.load_named(args.eval_split, "--eval_split")
    name = source.default_eval_split()
    return None if name is None else source.load_split(name)


# ----------------------------------------------------------------------------- columns and labels


def _resolve_columns(dataset: datasets.Dataset, args: VisionDataArguments) -> tuple[str, Optional[str]]:
    """(image column, label column or None) of ``dataset``, as named in ``args`` or auto-detected."""
    columns = list(dataset.column_names)
    image_column = _named_or_detected(columns, args.image_column_name, IMAGE_COLUMN_CANDIDATES, "image")
    if image_column is None:
        raise ValueError(
            f"No image column found: the dataset has columns {columns} and none is one of {list(IMAGE_COLUMN_CANDIDATES)}. "
            "Pass --image_column_name with the column that holds the images."
        )
    return image_column, _named_or_detected(columns, args.label_column_name, LABEL_COLUMN_CANDIDATES, "label")


def _named_or_detected(
    columns: list[str], requested: Optional[str], candidates: tuple[str, ...], kind: str
) -> Optional[str]:
    if requested is None:
        return next((column for column in candidates if column in columns), None)
    if requested not in columns:
        raise ValueError(
            f"{kind.capitalize()} column {requested!r} does not exist; the dataset has columns {columns}. "
            f"Pass --{kind}_column_name with one of them."
        )
    return requested


def _standardize_columns(
    dataset: datasets.Dataset, image_column: str, label_column: Optional[str], split: str
) -> datasets.Dataset:
    """Keep only the image and label columns, renamed to "image" and "label"."""
    wanted = {image_column: "image", **({label_column: "label"} if label_column else {})}
    missing = [column for column in wanted if column not in dataset.column_names]
    if missing:
        raise ValueError(
            f"The {split} split lacks column(s) {missing} found in the train split; it has columns {dataset.column_names}. "
            "Pass --image_column_name/--label_column_name naming columns both splits have."
        )
    dataset = dataset.select_columns(list(wanted))
    return dataset.rename_columns({old: new for old, new in wanted.items() if old != new})


def _encode_labels(
    train: datasets.Dataset, eval_dataset: Optional[datasets.Dataset]
) -> tuple[datasets.Dataset, Optional[datasets.Dataset], Optional[list[str]]]:
    """Give "label" int ids that mean the same in both splits; also return the class names when known.

    Strings become a ClassLabel over the sorted names of both splits; a ClassLabel eval split is
    re-aligned by name to the train split's ids; plain ints are kept (no names).
    """
    feature = train.features.get("label")
    if feature is None:
        return train, eval_dataset, None
    pa_type = feature.pa_type if isinstance(feature, datasets.Value) else None
    if pa_type is not None and (pa.types.is_string(pa_type) or pa.types.is_large_string(pa_type)):
        train, eval_dataset = _strings_to_class_label(train, eval_dataset)
        feature = train.features["label"]
    if isinstance(feature, datasets.ClassLabel):
        return train, _align_eval_labels(eval_dataset, feature.names), list(feature.names)
    if pa_type is not None and pa.types.is_integer(pa_type):
        return train, eval_dataset, None
    raise ValueError(
        f"The label column has type {feature}; expected class ids (int or ClassLabel) or class-name strings. "
        "Pass --label_column_name with another column."
    )


def _missing_labels(dataset: datasets.Dataset) -> int:
    """How many distinct negative class ids ``dataset`` has: Hub datasets store a missing label as -1
    (STL-10's unlabelled split, unlabelled test splits of competitions)."""
    return sum(1 for label in dataset.unique("label") if isinstance(label, int) and label < 0)


def _drop_missing_train_labels(train: datasets.Dataset) -> datasets.Dataset:
    """A train split with missing labels pretrains on all its images, without labels (logged)."""
    if "label" not in train.column_names or not _missing_labels(train):
        return train
    logger.warning(
        "The train split has missing labels (-1): pretraining uses all its images without labels, so there is no kNN "
        "memory bank and no final kNN / linear-probe evaluation. For those, pass a labelled --train_split."
    )
    return train.remove_columns("label")


def _refuse_missing_eval_labels(eval_dataset: Optional[datasets.Dataset]) -> None:
    """Negative class ids in the eval split would make kNN and linear-probe accuracy silently wrong."""
    if eval_dataset is not None and "label" in eval_dataset.column_names and _missing_labels(eval_dataset):
        raise ValueError(
            "The eval split has missing labels (-1, as in unlabelled Hub test splits). Evaluate on a labelled split "
            "(--eval_split, or --validation_split_percentage to hold out labelled train images)."
        )


def _strings_to_class_label(
    train: datasets.Dataset, eval_dataset: Optional[datasets.Dataset]
) -> tuple[datasets.Dataset, Optional[datasets.Dataset]]:
    splits = [train] + ([eval_dataset] if eval_dataset is not None else [])
    names = sorted({name for split in splits for name in split.unique("label") if name is not None})
    train, *rest = [split.cast_column("label", datasets.ClassLabel(names=names)) for split in splits]
    return train, (rest[0] if rest else None)


def _align_eval_labels(eval_dataset: Optional[datasets.Dataset], names: list[str]) -> Optional[datasets.Dataset]:
    """Re-map a ClassLabel eval split whose classes differ from ``names`` (e.g. a class folder missing)."""
    feature = eval_dataset.features["label"] if eval_dataset is not None else None
    if not isinstance(feature, datasets.ClassLabel) or feature.names == names:
        return eval_dataset
    unknown = sorted(set(feature.names) - set(names))
    if unknown:
        raise ValueError(
            f"The eval split has classes {unknown} that the train split lacks (train classes: {names}); "
            "remove them from the eval data or add them to the train data."
        )
    return eval_dataset.align_labels_with_mapping({name: index for index, name in enumerate(names)}, "label")


# ----------------------------------------------------------------------------- final form


def _finalize(dataset: datasets.Dataset, split: str, max_samples: Optional[int]) -> datasets.Dataset:
    """Check ``dataset`` has rows and set the image representation the collator reads fastest."""
    _require_rows(dataset, split, f" after --max_{split}_samples {max_samples}" if max_samples is not None else "")
    feature = dataset.features["image"]
    if isinstance(feature, datasets.Image):
        return dataset.cast_column("image", datasets.Image(decode=False))
    if isinstance(feature, (datasets.Array2D, datasets.Array3D)) and feature.dtype == "uint8":
        return dataset.with_format("numpy", columns=["image"], output_all_columns=True, dtype=np.uint8)
    return dataset


def _check_decodable(
    train: datasets.Dataset, eval_dataset: Optional[datasets.Dataset], description: str, args: VisionDataArguments
) -> tuple[datasets.Dataset, Optional[datasets.Dataset], list[str]]:
    """The final splits once every image in them decodes: a bad image stops the run here, before
    training, naming the files; with ``--skip_bad_images`` its row is dropped (logged) and its file
    returned. Only ``datasets.Image`` columns are checked (arrays need no decoding); the results are
    cached per file, see :mod:`hfssl.data.image_check`."""
    cache_file = cache_path(description, args.cache_dir)
    splits, skipped = check_images(
        {"train": train, "eval": eval_dataset}, description, cache_file, args.skip_bad_images
    )
    for split, dataset in splits.items():
        if dataset is not None:
            _require_rows(dataset, split, " after --skip_bad_images dropped every image")
    return splits["train"], splits["eval"], skipped


def _require_rows(dataset: datasets.Dataset, split: str, detail: str) -> None:
    if len(dataset) == 0:
        raise ValueError(f"The {split} dataset is empty{detail}; check the data source and --max_{split}_samples.")


def _leading_images(dataset: datasets.Dataset) -> list:
    """The first :data:`PROBE_ROWS` images of ``dataset``, decoded (``dataset`` has at least one row)."""
    probe = dataset.select(range(min(len(dataset), PROBE_ROWS)))
    return [load_image(row["image"]) for row in probe]
