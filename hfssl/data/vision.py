"""Vision data resolver shared by every vision recipe.

``load_vision_datasets`` turns command-line style arguments into a train and an eval
``datasets.Dataset`` with the same two columns, ``"image"`` and (when the data has labels)
``"label"`` (int), whatever the source:

* ``--idx_dir``: MNIST-format IDX files (``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``);
* ``--train_dir``: a local ``imagefolder`` directory (class subfolders and/or ``metadata.jsonl``),
  with an optional ``--validation_dir``;
* ``--dataset_name``: a Hugging Face Hub dataset id, or ``builtin:digits`` (scikit-learn's 8x8
  handwritten digits, shipped with scikit-learn and so available offline).

``--idx_dir`` and ``--train_dir`` win over ``--dataset_name``. Array sources (IDX, digits) are
stored as uint8 ``Array2D``/``Array3D`` columns formatted as numpy, so a row costs no decoding;
``datasets.Image`` columns are kept undecoded (``decode=False``) and decoded by
``ImageCollator``, which names the file when one cannot be read.
"""

import gzip
import io
import logging
import math
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import datasets
import numpy as np
import pyarrow as pa
import torch
from PIL import Image as PILImage

logger = logging.getLogger(__name__)

IMAGE_COLUMN_CANDIDATES = ("image", "img", "pixel_values", "png", "jpg")
LABEL_COLUMN_CANDIDATES = ("label", "labels", "fine_label", "class")
EVAL_SPLIT_CANDIDATES = ("test", "validation", "valid", "val")
BUILTIN_DATASETS = ("digits",)
BUILTIN_PREFIX = "builtin:"

# Modes PIL uses for single-channel images (with or without alpha); every other mode is colour.
_GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
# How many leading train images decide VisionDatasets.num_channels.
_CHANNEL_PROBE_ROWS = 8
_IDX_IMAGES_MAGIC = 0x00000803  # uint8, 3 dimensions (N, H, W)
_IDX_LABELS_MAGIC = 0x00000801  # uint8, 1 dimension (N,)


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
    eval_split: Optional[str] = field(
        default=None,
        metadata={
            "help": f"Split to evaluate on; default: the first of {', '.join(EVAL_SPLIT_CANDIDATES)} that exists, "
            "else a held-out share of the train split (see --validation_split_percentage)."
        },
    )
    validation_split_percentage: int = field(
        default=10,
        metadata={
            "help": "Percentage of the train split held out for evaluation when there is no eval split "
            "(deterministic, stratified by label when possible; 0 = no eval set)."
        },
    )
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
    # Not named `seed`: TrainingArguments owns --seed (and --data_seed), and HfArgumentParser rejects duplicates.
    # Kept apart from the training seed, so the eval split stays the same across training runs.
    split_seed: int = field(
        default=42,
        metadata={"help": "Seed for the held-out eval split and for max_*_samples subsampling (not --seed)."},
    )


@dataclass
class VisionDatasets:
    """What ``load_vision_datasets`` resolved: datasets with an "image" and optional int "label" column."""

    train: datasets.Dataset
    eval: Optional[datasets.Dataset]
    num_channels: int
    label_names: Optional[list[str]]
    description: str


@dataclass
class _Source:
    """The splits a data source offers, loaded on demand (a Hub split is only fetched when asked for)."""

    split_names: list[str]
    load_split: Callable[[str], datasets.Dataset]
    description: str


def load_vision_datasets(args: VisionDataArguments) -> VisionDatasets:
    """Resolve ``args`` into train/eval datasets with an "image" and, when known, a "label" column.

    Images are uint8 arrays of shape (H, W) or (H, W, C) for IDX and digits data, or undecoded
    ``{"bytes", "path"}`` dicts (``datasets.Image(decode=False)``) for imagefolder and Hub data;
    batch them with ``ImageCollator`` into (B, C, H, W) uint8 tensors. Labels are ints in
    ``[0, len(label_names))``; string label columns are mapped to ids in sorted name order.

    The eval set is ``--validation_dir``, else ``--eval_split``, else the first of
    ``EVAL_SPLIT_CANDIDATES`` the source has, else ``validation_split_percentage`` percent of the
    train split held out (seeded, stratified by label when every class can be represented).
    ``max_train_samples``/``max_eval_samples`` keep the first N rows after a shuffle with ``split_seed``.
    ``num_channels`` is 3 when any of the first 8 train images is colour, else 1.

    Raises ``ValueError`` naming the problem and the argument that fixes it.
    """
    _check_arguments(args)
    source = _open_source(args)
    train = _load_named_split(source, args.train_split, "--train_split")
    eval_dataset = _load_eval(source, args)
    image_column, label_column = _resolve_columns(train, args)
    train = _standardize_columns(train, image_column, label_column, "train")
    if eval_dataset is not None:
        eval_dataset = _standardize_columns(eval_dataset, image_column, label_column, "eval")
    train = _drop_missing_train_labels(train)
    _refuse_missing_eval_labels(eval_dataset)
    train, eval_dataset, label_names = _encode_labels(train, eval_dataset)
    held_out = eval_dataset is None and args.validation_split_percentage > 0
    if held_out:
        _require_rows(train, "train", "")
        train, eval_dataset = _hold_out(train, args.validation_split_percentage, args.split_seed)
    train = _finalize(_subsample(train, args.max_train_samples, args.split_seed), "train", args.max_train_samples)
    if eval_dataset is not None:
        eval_dataset = _subsample(eval_dataset, args.max_eval_samples, args.split_seed)
        eval_dataset = _finalize(eval_dataset, "eval", args.max_eval_samples)
    return VisionDatasets(
        train=train,
        eval=eval_dataset,
        num_channels=_infer_num_channels(train),
        label_names=label_names,
        description=_describe(source.description, train, eval_dataset, held_out),
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
    if not 0 <= args.validation_split_percentage < 100:
        raise ValueError(f"--validation_split_percentage must be in [0, 100), got {args.validation_split_percentage}.")
    directories = {"--train_dir": args.train_dir, "--validation_dir": args.validation_dir, "--idx_dir": args.idx_dir}
    for flag, path in directories.items():
        if path and not os.path.isdir(path):
            raise ValueError(f"{flag} {path!r} is not a directory; check the path.")


def _open_source(args: VisionDataArguments) -> _Source:
    """Pick the data source by precedence: idx_dir, train_dir, builtin:*, then the Hub."""
    if args.idx_dir:
        return _dict_source(_load_idx_splits(args.idx_dir), f"IDX files from {args.idx_dir}")
    if args.train_dir:
        description = f"imagefolder {args.train_dir}" + (
            f" (eval: {args.validation_dir})" if args.validation_dir else ""
        )
        return _dict_source(_load_imagefolder(args.train_dir, args.cache_dir), description)
    if args.dataset_name.startswith(BUILTIN_PREFIX):
        return _builtin_source(args.dataset_name[len(BUILTIN_PREFIX) :])
    return _hub_source(args.dataset_name, args.dataset_config_name, args.cache_dir)


def _dict_source(splits: dict[str, datasets.Dataset], description: str) -> _Source:
    return _Source(list(splits), splits.__getitem__, description)


def _builtin_source(name: str) -> _Source:
    if name not in BUILTIN_DATASETS:
        available = ", ".join(BUILTIN_PREFIX + builtin for builtin in BUILTIN_DATASETS)
        raise ValueError(f"Unknown built-in dataset {BUILTIN_PREFIX + name!r}; available: {available}.")
    return _dict_source({"train": _digits_dataset()}, "scikit-learn digits, 8x8 greyscale")


def _hub_source(name: str, config_name: Optional[str], cache_dir: Optional[str]) -> _Source:
    split_names = datasets.get_dataset_split_names(name, config_name, cache_dir=cache_dir)

    def load_split(split: str) -> datasets.Dataset:
        return datasets.load_dataset(name, config_name, split=split, cache_dir=cache_dir)

    kind = "local dataset" if os.path.isdir(name) else "Hub dataset"
    return _Source(split_names, load_split, f"{kind} {name}" + (f" ({config_name})" if config_name else ""))


def _load_imagefolder(
    directory: str, cache_dir: Optional[str], split: Optional[str] = None
) -> Union[datasets.DatasetDict, datasets.Dataset]:
    return datasets.load_dataset("imagefolder", data_dir=directory, split=split, cache_dir=cache_dir)


def _load_named_split(source: _Source, split: str, flag: str) -> datasets.Dataset:
    if split not in source.split_names:
        raise ValueError(
            f"Split {split!r} ({flag}) does not exist in {source.description}; available splits: {source.split_names}."
        )
    return source.load_split(split)


def _load_eval(source: _Source, args: VisionDataArguments) -> Optional[datasets.Dataset]:
    """The eval split as given, or found among EVAL_SPLIT_CANDIDATES; None when there is none."""
    if args.validation_dir:
        return _load_imagefolder(args.validation_dir, args.cache_dir, split="train")
    if args.eval_split:
        return _load_named_split(source, args.eval_split, "--eval_split")
    name = next((split for split in EVAL_SPLIT_CANDIDATES if split in source.split_names), None)
    return None if name is None else source.load_split(name)


# ----------------------------------------------------------------------------- array sources


def _load_idx_splits(directory: str) -> dict[str, datasets.Dataset]:
    """Read ``train-*`` (required) and ``t10k-*`` (optional, becomes "test") IDX files from ``directory``."""
    arrays = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images_path = _find_idx_file(directory, prefix, "images", "idx3")
        if images_path is not None:
            arrays[split] = _read_idx_pair(images_path, _find_idx_file(directory, prefix, "labels", "idx1"))
    if "train" not in arrays:
        raise ValueError(
            f"--idx_dir {directory!r} has no train-images-idx3-ubyte[.gz] file; it holds {sorted(os.listdir(directory))}. "
            "Expected MNIST-format files {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]."
        )
    # IDX files carry no class names: ids 0..max become the names "0", "1", ...
    label_arrays = [labels for _, labels in arrays.values() if labels is not None]
    num_classes = max((int(labels.max(initial=0)) + 1 for labels in label_arrays), default=0)
    label_feature = datasets.ClassLabel(num_classes=num_classes) if label_arrays else None
    return {split: _array_dataset(images, labels, label_feature) for split, (images, labels) in arrays.items()}


def _find_idx_file(directory: str, prefix: str, kind: str, idx: str) -> Optional[str]:
    """Path of ``{prefix}-{kind}-{idx}-ubyte`` (also ``.{idx}``, and ``.gz``) in ``directory``, or None."""
    for separator in ("-", "."):
        for extension in ("", ".gz"):
            path = os.path.join(directory, f"{prefix}-{kind}{separator}{idx}-ubyte{extension}")
            if os.path.isfile(path):
                return path
    return None


def _read_idx_pair(images_path: str, labels_path: Optional[str]) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """Images (N, H, W) uint8 and labels (N,) uint8 (None without a labels file), checked to match."""
    images = read_idx(images_path, _IDX_IMAGES_MAGIC)
    if labels_path is None:
        return images, None
    labels = read_idx(labels_path, _IDX_LABELS_MAGIC)
    if len(labels) != len(images):
        raise ValueError(
            f"{labels_path} has {len(labels)} labels but {images_path} has {len(images)} images; "
            "the two files must come from the same release."
        )
    return images, labels


def read_idx(path: str, magic: int) -> np.ndarray:
    """Parse one IDX file (raw or ``.gz``) whose header must carry ``magic`` (0x803 images, 0x801 labels).

    Returns a read-only uint8 array shaped by the header: (N, H, W) for images, (N,) for labels.
    Raises ``ValueError`` naming the file when it is not gzip-readable, has another magic number,
    or holds fewer or more data bytes than its header announces.
    """
    data = _read_file_bytes(path)
    ndim = magic & 0xFF
    header_size = 4 + 4 * ndim
    found = int.from_bytes(data[:4], "big")
    if len(data) >= 4 and found != magic:
        raise ValueError(
            f"IDX file {path} has magic number 0x{found:08X}, expected 0x{magic:08X} "
            f"({'uint8 images (N, H, W)' if magic == _IDX_IMAGES_MAGIC else 'uint8 labels (N,)'}); is it the right file?"
        )
    if len(data) < header_size:
        raise ValueError(
            f"IDX file {path} is truncated: {len(data)} bytes, shorter than its {header_size}-byte header. Re-download it."
        )
    dims = tuple(int(size) for size in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = math.prod(dims)
    available = len(data) - header_size
    if available != expected:
        problem = "truncated" if available < expected else "longer than its header says"
        raise ValueError(
            f"IDX file {path} is {problem}: its header announces dimensions {dims} ({expected} bytes of data) "
            f"but {available} bytes follow the header. Re-download the file."
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(dims)


def _read_file_bytes(path: str) -> bytes:
    """Whole file content, gunzipped when the name ends in ``.gz``."""
    if not path.endswith(".gz"):
        with open(path, "rb") as handle:
            return handle.read()
    try:
        with gzip.open(path, "rb") as handle:
            return handle.read()
    except (OSError, EOFError, zlib.error) as error:
        raise ValueError(
            f"Cannot decompress {path} ({error}); the file is truncated or not gzip. Re-download it."
        ) from error


def _digits_dataset() -> datasets.Dataset:
    """scikit-learn's 1,797 digits as (8, 8) uint8 images (0..16 scaled to 0..255) with labels "0".."9"."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    return _array_dataset(images, digits.target, datasets.ClassLabel(names=[str(digit) for digit in range(10)]))


def _array_dataset(
    images: np.ndarray, labels: Optional[np.ndarray], label_feature: Optional[datasets.ClassLabel]
) -> datasets.Dataset:
    """Dataset over uint8 ``images`` (N, H, W) or (N, H, W, C), stored as ``Array2D``/``Array3D``.

    The Arrow column is built from the flat buffer (no per-row Python): 60,000 28x28 images take
    well under a second.
    """
    shape = images.shape[1:]
    array_type = datasets.Array2D if len(shape) == 2 else datasets.Array3D
    column = pa.array(np.ascontiguousarray(images, dtype=np.uint8).reshape(-1))
    for size in reversed(shape):
        column = pa.FixedSizeListArray.from_arrays(column, size)
    columns: dict[str, Any] = {"image": column}
    features: dict[str, Any] = {"image": array_type(shape=shape, dtype="uint8")}
    if labels is not None:
        columns["label"] = pa.array(np.asarray(labels, dtype=np.int64))
        features["label"] = label_feature
    return datasets.Dataset.from_dict(columns, features=datasets.Features(features))


# ----------------------------------------------------------------------------- columns and splits


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


def _hold_out(train: datasets.Dataset, percentage: int, seed: int) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Split ``percentage`` percent (rounded up) off ``train`` for evaluation, seeded; stratified when possible."""
    n_eval = math.ceil(len(train) * percentage / 100)
    if n_eval >= len(train):
        raise ValueError(
            f"The train split has only {len(train)} rows, too few to hold out {percentage}% for evaluation; "
            "pass --validation_split_percentage 0 or an eval split."
        )
    stratify = "label" if _can_stratify(train, n_eval) else None
    parts = train.train_test_split(test_size=n_eval, seed=seed, stratify_by_column=stratify)
    return parts["train"], parts["test"]


def _can_stratify(train: datasets.Dataset, n_eval: int) -> bool:
    """Whether a stratified split exists: ClassLabel labels, every class twice, room for each class on both sides."""
    if not isinstance(train.features.get("label"), datasets.ClassLabel):
        return False
    counts = np.unique(train.with_format("numpy")["label"][:], return_counts=True)[1]
    return counts.min() >= 2 and min(n_eval, len(train) - n_eval) >= len(counts)


def _subsample(dataset: datasets.Dataset, max_samples: Optional[int], seed: int) -> datasets.Dataset:
    """The first ``max_samples`` rows after a shuffle with ``seed``; all rows, in order, when None or not fewer."""
    if max_samples is None or max_samples >= len(dataset):
        return dataset
    return dataset.shuffle(seed=seed).select(range(max(max_samples, 0)))


def _finalize(dataset: datasets.Dataset, split: str, max_samples: Optional[int]) -> datasets.Dataset:
    """Check ``dataset`` has rows and set the image representation the collator reads fastest."""
    _require_rows(dataset, split, f" after --max_{split}_samples {max_samples}" if max_samples is not None else "")
    feature = dataset.features["image"]
    if isinstance(feature, datasets.Image):
        return dataset.cast_column("image", datasets.Image(decode=False))
    if isinstance(feature, (datasets.Array2D, datasets.Array3D)) and feature.dtype == "uint8":
        return dataset.with_format("numpy", columns=["image"], output_all_columns=True, dtype=np.uint8)
    return dataset


def _require_rows(dataset: datasets.Dataset, split: str, detail: str) -> None:
    if len(dataset) == 0:
        raise ValueError(f"The {split} dataset is empty{detail}; check the data source and --max_{split}_samples.")


def _infer_num_channels(dataset: datasets.Dataset) -> int:
    """3 when any of the first few images is colour, else 1."""
    probe = dataset.select(range(min(len(dataset), _CHANNEL_PROBE_ROWS)))
    return 3 if any(_is_colour(_load_image(row["image"])) for row in probe) else 1


def _describe(source: str, train: datasets.Dataset, eval_dataset: Optional[datasets.Dataset], held_out: bool) -> str:
    if eval_dataset is None:
        return f"{source} ({len(train)} train, no eval)"
    return f"{source} ({len(train)} train / {len(eval_dataset)} {'held-out ' if held_out else ''}eval)"


# ----------------------------------------------------------------------------- collation

_Image = Union[PILImage.Image, np.ndarray]


class ImageCollator:
    """Batch dataset rows into ``{"pixel_values": uint8 (B, C, H, W)}`` plus ``{"labels": int64 (B,)}``.

    Each row's "image" may be a PIL image, a ``{"bytes", "path"}`` dict (``datasets.Image(decode=False)``),
    a numpy array (H, W) or (H, W, C), a torch tensor (H, W) or (C, H, W), or nested lists of ints;
    pixel values must be integers in 0..255. Images become greyscale (C=1) or RGB (C=3): the
    ``num_channels`` given, else RGB as soon as one image of the batch is colour (alpha is dropped).
    With ``image_size``, images of another size are resized to (image_size, image_size) with PIL's
    bilinear filter; with ``resize_mixed_only`` too, only batches whose images differ in size are
    resized (the on-device views and eval transform resize anyway, so a uniform dataset such as
    CIFAR leaves the loader at its native size). Without ``image_size``, every image of a batch must
    have the same size. "labels" is only returned when every row has a non-None "label".
    """

    def __init__(
        self, image_size: Optional[int] = None, num_channels: Optional[int] = None, resize_mixed_only: bool = False
    ):
        if num_channels not in (None, 1, 3):
            raise ValueError(
                f"num_channels must be 1 (greyscale), 3 (RGB) or None (from the data), got {num_channels}."
            )
        if image_size is not None and image_size < 1:
            raise ValueError(f"image_size must be a positive number of pixels, got {image_size}.")
        self.image_size = image_size
        self.num_channels = num_channels
        self.resize_mixed_only = resize_mixed_only

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        images = [_load_image(example["image"]) for example in examples]
        mode = self._target_mode(images)
        arrays = [_to_mode_array(image, mode) for image in images]
        if not (self.resize_mixed_only and len({array.shape[:2] for array in arrays}) == 1):
            arrays = [self._resize(array) for array in arrays]
        sizes = sorted({array.shape[:2] for array in arrays})
        if len(sizes) > 1:
            raise ValueError(
                f"Images in this batch have different sizes (H, W) {sizes}; pass --image_size to resize them to a common square size."
            )
        pixel_values = torch.from_numpy(np.stack(arrays))
        pixel_values = pixel_values.unsqueeze(1) if mode == "L" else pixel_values.permute(0, 3, 1, 2)
        batch = {"pixel_values": pixel_values.contiguous()}
        labels = [example.get("label") for example in examples]
        if all(label is not None for label in labels):
            batch["labels"] = torch.as_tensor(np.asarray(labels, dtype=np.int64))
        return batch

    def _target_mode(self, images: list[_Image]) -> str:
        if self.num_channels is not None:
            return "L" if self.num_channels == 1 else "RGB"
        return "RGB" if any(_is_colour(image) for image in images) else "L"

    def _resize(self, array: np.ndarray) -> np.ndarray:
        if self.image_size is None or array.shape[:2] == (self.image_size, self.image_size):
            return array
        resized = PILImage.fromarray(array).resize((self.image_size, self.image_size), PILImage.Resampling.BILINEAR)
        return np.asarray(resized)


def _load_image(value: Any) -> _Image:
    """A PIL image, or a uint8 array (H, W) / (H, W, C), from any supported image value."""
    if isinstance(value, PILImage.Image):
        return value
    if isinstance(value, dict):
        return _decode(value)
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
        value = value.transpose(1, 2, 0) if value.ndim == 3 else value
    return _as_uint8_array(np.asarray(value))


def _decode(value: dict) -> PILImage.Image:
    """Decode a ``{"bytes", "path"}`` image; unreadable data raises ``ValueError`` naming the file."""
    path = value.get("path")
    source = io.BytesIO(value["bytes"]) if value.get("bytes") is not None else path
    if source is None:
        raise ValueError(
            f"Image value {value!r} has neither 'bytes' nor 'path'; is --image_column_name the image column?"
        )
    try:
        image = PILImage.open(source)
        image.load()
    except (OSError, ValueError, SyntaxError) as error:
        raise ValueError(
            f"Cannot decode image {path or '<in-memory bytes without a path>'}: {error}. "
            "Remove the file from the dataset or re-encode it (e.g. open and save it again as PNG)."
        ) from error
    return image


def _as_uint8_array(array: np.ndarray) -> np.ndarray:
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 2, 3, 4)):
        raise ValueError(
            f"Unsupported image array of shape {array.shape}; expected (H, W) or (H, W, C) with C in 1..4 "
            "(torch tensors: (H, W) or (C, H, W))."
        )
    if array.dtype == np.uint8:
        return array
    if np.issubdtype(array.dtype, np.integer) and array.size and 0 <= array.min() and array.max() <= 255:
        return array.astype(np.uint8)
    raise ValueError(
        f"Unsupported image pixel values of dtype {array.dtype}; expected integers in 0..255 "
        "(convert float images with (x * 255).round().astype('uint8'))."
    )


def _is_colour(image: _Image) -> bool:
    if isinstance(image, PILImage.Image):
        return image.mode not in _GREY_MODES
    return image.ndim == 3 and image.shape[2] >= 3


def _to_mode_array(image: _Image, mode: str) -> np.ndarray:
    """``image`` as uint8 (H, W) for mode "L" or (H, W, 3) for "RGB", with PIL's conversion rules."""
    if isinstance(image, PILImage.Image):
        if image.mode == "P":
            image = image.convert("RGBA")  # P -> RGB directly warns when the palette has transparency
        return np.asarray(image if image.mode == mode else image.convert(mode))
    if image.ndim == 3:
        image = image[..., 0] if image.shape[2] <= 2 else image[..., :3]
    if image.ndim == 2:
        return image if mode == "L" else np.repeat(image[..., None], 3, axis=2)
    return image if mode == "RGB" else np.asarray(PILImage.fromarray(image).convert("L"))
