"""What the vision and text resolvers share: split names, the held-out eval share, seeds, subsampling.

Both resolvers (:mod:`hfssl.data.vision`, :mod:`hfssl.data.text`) open a :class:`DataSource`, load
its train split, take an eval split (given, or the first of :data:`EVAL_SPLIT_CANDIDATES` the
source has), and otherwise hold out a seeded share of the train split with :func:`split_off_eval`.
``max_train_samples``/``max_eval_samples`` then keep the first N rows after a shuffle with the same
seed (:func:`subsample`). Keeping these rules in one place makes the two modalities agree on which
split is evaluated, how much is held out and which rows a seed picks.

The split seed is ``--split_seed``, not ``--seed``: ``TrainingArguments`` owns ``--seed`` (and
``--data_seed``), and ``HfArgumentParser`` rejects duplicate names. Keeping it apart from the
training seed also keeps the eval set the same across training runs with different seeds.
"""

import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import datasets
import numpy as np

logger = logging.getLogger(__name__)

AnyDataset = Union[datasets.Dataset, datasets.IterableDataset]

# Validation first: a split named "test" is often unlabelled (ImageNet's labels are -1) or meant to
# be touched once, at the end.
EVAL_SPLIT_CANDIDATES = ("validation", "test", "valid", "val")
BUILTIN_PREFIX = "builtin:"
DEFAULT_VALIDATION_SPLIT_PERCENTAGE = 10
DEFAULT_SPLIT_SEED = 42
LABEL_COLUMN = "label"


def validation_split_percentage_field(unit: str) -> Any:
    """The ``--validation_split_percentage`` argument; None means the default share (see :func:`split_off_eval`)."""
    return field(
        default=None,
        metadata={
            "help": f"Percentage of the train {unit} held out for evaluation when there is no eval split, shuffled "
            f"with --split_seed (stratified by a class-label column when every class fits). Default: "
            f"{DEFAULT_VALIDATION_SPLIT_PERCENTAGE}, or none when the train split is a stream or too small to "
            "split; 0 = no eval set."
        },
    )


def split_seed_field() -> Any:
    """The ``--split_seed`` argument (named apart from ``--seed``, which ``TrainingArguments`` owns)."""
    return field(
        default=DEFAULT_SPLIT_SEED,
        metadata={"help": "Seed for the held-out eval split and for max_*_samples subsampling (not --seed)."},
    )


def eval_split_help() -> str:
    return (
        f"Split to evaluate on; default: the first of {', '.join(EVAL_SPLIT_CANDIDATES)} that exists, "
        "else a held-out share of the train split (see --validation_split_percentage)."
    )


@dataclass
class DataSource:
    """The splits a data source offers, loaded on demand (a Hub split is only fetched when asked for)."""

    split_names: list[str]
    load_split: Callable[[str], AnyDataset]
    description: str

    @classmethod
    def from_splits(cls, splits: dict[str, AnyDataset], description: str) -> "DataSource":
        """A source over splits already loaded (IDX files, an imagefolder, a built-in dataset)."""
        return cls(list(splits), splits.__getitem__, description)

    @classmethod
    def from_hub(cls, name: str, config_name: Optional[str], cache_dir: Optional[str], **load_kwargs) -> "DataSource":
        """A Hub dataset id, or a local directory ``datasets.load_dataset`` reads (offline)."""
        split_names = datasets.get_dataset_split_names(name, config_name, cache_dir=cache_dir)

        def load_split(split: str) -> AnyDataset:
            return datasets.load_dataset(name, config_name, split=split, cache_dir=cache_dir, **load_kwargs)

        kind = "local dataset" if os.path.isdir(name) else "Hub dataset"
        return cls(split_names, load_split, f"{kind} {name}" + (f" ({config_name})" if config_name else ""))

    def load_named(self, split: str, flag: str) -> AnyDataset:
        """Split ``split`` (passed as ``flag``); an unknown name lists the splits that exist."""
        if split not in self.split_names:
            raise ValueError(
                f"Split {split!r} ({flag}) does not exist in {self.description}; available splits: {self.split_names}."
            )
        return self.load_split(split)

    def default_eval_split(self) -> Optional[str]:
        """The first of :data:`EVAL_SPLIT_CANDIDATES` this source has, or None."""
        return next((split for split in EVAL_SPLIT_CANDIDATES if split in self.split_names), None)


def check_validation_split_percentage(percentage: Optional[int]) -> None:
    if percentage is not None and not 0 <= percentage < 100:
        raise ValueError(f"--validation_split_percentage must be in [0, 100), got {percentage}.")


def split_off_eval(
    train: AnyDataset,
    eval_dataset: Optional[AnyDataset],
    percentage: Optional[int],
    seed: int,
    source: str,
    unit: str = "rows",
    alternatives: str = "an --eval_split",
) -> tuple[AnyDataset, Optional[AnyDataset], bool]:
    """(train, eval, held out?): ``eval_dataset`` when there is one, else a share of ``train`` held out.

    ``percentage`` None is the default share, :data:`DEFAULT_VALIDATION_SPLIT_PERCENTAGE`, skipped
    (logged) where it cannot apply: a stream (its length is unknown) or a train split too small to
    keep a row on each side. A share asked for explicitly is refused in those cases, naming
    ``alternatives`` (the arguments that give an eval split instead). 0 holds nothing out.
    ``source`` (the data's description) and ``unit`` ("images", "documents") word the log and errors.
    """
    if eval_dataset is not None:
        return train, eval_dataset, False
    requested = percentage is not None
    percentage = percentage if requested else DEFAULT_VALIDATION_SPLIT_PERCENTAGE
    if percentage == 0:
        return train, None, False
    if isinstance(train, datasets.IterableDataset):
        if not requested:
            logger.info("%s has no eval split and streams its train split: no eval set is held out.", source)
            return train, None, False
        raise ValueError(
            f"{source} has no eval split, and --validation_split_percentage cannot split a stream (its length is unknown). "
            f"Pass {alternatives}, drop --streaming, or pass --validation_split_percentage 0."
        )
    n_eval = held_out_size(len(train), percentage)
    if n_eval >= len(train):
        if not requested:
            logger.warning(
                "The train split of %s has only %d %s, too few to hold out %d%% for evaluation: no eval set.",
                source,
                len(train),
                unit,
                percentage,
            )
            return train, None, False
        raise ValueError(
            f"The train split has only {len(train)} {unit}, too few to hold out {percentage}% for evaluation; "
            f"pass --validation_split_percentage 0 or {alternatives}."
        )
    train, eval_dataset = hold_out(train, n_eval, seed)
    logger.info(
        "Held out %d of the %d train %s of %s for evaluation (%d%%, --split_seed %d; "
        "--validation_split_percentage 0 turns it off).",
        len(eval_dataset),
        len(train) + len(eval_dataset),
        unit,
        source,
        percentage,
        seed,
    )
    return train, eval_dataset, True


def held_out_size(num_rows: int, percentage: int) -> int:
    """How many of ``num_rows`` a ``percentage`` share holds out: rounded up, so any share > 0 holds out a row."""
    return math.ceil(num_rows * percentage / 100)


def hold_out(train: datasets.Dataset, n_eval: int, seed: int) -> tuple[datasets.Dataset, datasets.Dataset]:
    """(rest, ``n_eval`` rows) of ``train`` by ``Dataset.train_test_split`` with ``seed``, stratified by
    the "label" column when :func:`can_stratify` says a stratified split exists."""
    stratify = LABEL_COLUMN if can_stratify(train, n_eval) else None
    parts = train.train_test_split(test_size=n_eval, seed=seed, stratify_by_column=stratify)
    return parts["train"], parts["test"]


def can_stratify(train: datasets.Dataset, n_eval: int) -> bool:
    """Whether a stratified split exists: ClassLabel labels, every class twice, room for each class on both sides."""
    if not isinstance(train.features.get(LABEL_COLUMN), datasets.ClassLabel):
        return False
    counts = np.unique(train.with_format("numpy")[LABEL_COLUMN][:], return_counts=True)[1]
    return counts.min() >= 2 and min(n_eval, len(train) - n_eval) >= len(counts)


def subsample(dataset: AnyDataset, max_samples: Optional[int], seed: int) -> AnyDataset:
    """The first ``max_samples`` rows after a shuffle with ``seed``; all rows, in order, when None or
    not fewer. A stream has no length to shuffle by: its first ``max_samples`` rows, unshuffled."""
    if max_samples is None:
        return dataset
    if isinstance(dataset, datasets.IterableDataset):
        return dataset.take(max_samples)
    if max_samples >= len(dataset):
        return dataset
    return dataset.shuffle(seed=seed).select(range(max(max_samples, 0)))


def describe(
    source: str, train: AnyDataset, eval_dataset: Optional[AnyDataset], held_out: bool, unit: str = ""
) -> str:
    """``source`` with the split sizes, e.g. "file x.jsonl (95 train / 11 held-out eval documents)"."""
    unit = f" {unit}" if unit else ""
    if isinstance(train, datasets.IterableDataset):
        return f"{source} (streaming{', with eval' if eval_dataset is not None else ', no eval'})"
    if eval_dataset is None:
        return f"{source} ({len(train)} train{unit}, no eval)"
    return f"{source} ({len(train)} train / {len(eval_dataset)} {'held-out ' if held_out else ''}eval{unit})"
