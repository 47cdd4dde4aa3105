"""Text data resolver shared by every text recipe (word2vec, GPT, BERT, BART).

``load_text_datasets`` turns command-line style arguments into a train and an (optional) eval
dataset with the same columns, ``"text"`` (one document per row, a ``str``) and, when
``--label_column_name`` is given, ``"label"`` (kept as it is, for downstream classification),
whatever the source:

* ``--train_file`` (and optionally ``--validation_file``): a local ``.txt``, ``.json``/``.jsonl``,
  ``.csv`` or ``.tsv`` file, optionally compressed (``train.jsonl.gz``, ``.bz2``, ``.xz``), read
  with ``datasets``' ``text``/``json``/``csv`` builders. ``.txt`` rows are lines, paragraphs
  (blocks separated by a blank line) or whole files, as ``--txt_sample_by`` says;
* ``--dataset_name``: a Hugging Face Hub dataset id (or a local directory ``datasets.load_dataset``
  reads), or ``builtin:enwiki-sample``: the 106 English Wikipedia articles shipped in gensim's test
  data (so available offline; :mod:`hfssl.data.enwiki`).

``--train_file`` wins over ``--dataset_name``. Documents keep their boundaries: a row is a whole
document and paragraphs inside it stay separated by a blank line (``"\\n\\n"``), as in the shared
corpus; splitting into sentences, lines or token blocks is the job of each method's pipeline.
Empty and whitespace-only documents are dropped (the count is logged); anything else wrong (no such
file, an unsupported format, a missing column, non-string text, no text at all) stops with a
``ValueError`` that names the problem and the argument that fixes it. The eval split, the held-out
share and subsampling follow :mod:`hfssl.data.splits`, as for images.
"""

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Optional, Union

import datasets
import pyarrow as pa
from datasets.exceptions import DatasetGenerationError

from .enwiki import (
    ENWIKI_SAMPLE_ABOUT,
    ENWIKI_SAMPLE_FILE,
    enwiki_sample_dataset,
    enwiki_sample_rows,
    wiki_to_plain_text,
)
from .splits import (
    BUILTIN_PREFIX,
    EVAL_SPLIT_CANDIDATES,
    LABEL_COLUMN,
    DataSource,
    check_validation_split_percentage,
    describe,
    eval_split_help,
    split_off_eval,
    split_seed_field,
    subsample,
    validation_split_percentage_field,
)
from .text_check import find_text_file_problem

# The built-in corpus (enwiki.py) and the split names (splits.py) are importable from here too.
__all__ = [
    "BUILTIN_DATASETS",
    "BUILTIN_PREFIX",
    "ENWIKI_SAMPLE_FILE",
    "EVAL_SPLIT_CANDIDATES",
    "LABEL_COLUMN",
    "TEXT_COLUMN",
    "TextDataArguments",
    "TextDataset",
    "TextDatasets",
    "enwiki_sample_dataset",
    "enwiki_sample_rows",
    "iter_texts",
    "load_text_datasets",
    "shuffle_stream",
    "wiki_to_plain_text",
]

logger = logging.getLogger(__name__)

TextDataset = Union[datasets.Dataset, datasets.IterableDataset]

TEXT_COLUMN = "text"
BUILTIN_DATASETS = {"enwiki-sample": ENWIKI_SAMPLE_ABOUT}
TXT_SAMPLE_BY = ("line", "paragraph", "document")
# File extension (after any compression suffix) -> (datasets builder, extra builder arguments).
FILE_FORMATS = {
    ".txt": ("text", {}),
    ".json": ("json", {}),
    ".jsonl": ("json", {}),
    ".csv": ("csv", {}),
    ".tsv": ("csv", {"sep": "\t"}),
}
COMPRESSION_EXTENSIONS = (".gz", ".bz2", ".xz")
# What datasets raises for an unreadable local file: an empty file, a broken JSON or CSV line, bytes
# that are not UTF-8 (StopIteration: an empty .jsonl; UnicodeDecodeError: Latin-1 in a .jsonl, when read).
FILE_ERRORS = (DatasetGenerationError, UnicodeDecodeError, StopIteration, pa.ArrowException)
SUPPORTED_FILES = (
    f"{', '.join(FILE_FORMATS)}, optionally compressed as {', '.join(COMPRESSION_EXTENSIONS)} (e.g. train.jsonl.gz)"
)


@dataclass
class TextDataArguments:
    """Where the text comes from and how to split it; parsed by ``HfArgumentParser``."""

    dataset_name: Optional[str] = field(
        default=None,
        metadata={
            "help": "Hub dataset id (e.g. 'wikitext'), a local directory `datasets.load_dataset` reads, or "
            "'builtin:enwiki-sample' (106 Wikipedia articles shipped with gensim, offline). "
            "Ignored when --train_file is set."
        },
    )
    dataset_config_name: Optional[str] = field(
        default=None,
        metadata={"help": "Configuration name of the Hub dataset, if it has several (e.g. 'wikitext-103-raw-v1')."},
    )
    train_file: Optional[str] = field(
        default=None,
        metadata={"help": f"Local training file: {SUPPORTED_FILES}. Wins over --dataset_name."},
    )
    validation_file: Optional[str] = field(
        default=None,
        metadata={
            "help": "Optional local evaluation file, in any of the --train_file formats (only with --train_file)."
        },
    )
    text_column_name: Optional[str] = field(
        default=None,
        metadata={"help": "Column holding the documents; default: 'text' if it exists, else the only string column."},
    )
    label_column_name: Optional[str] = field(
        default=None,
        metadata={
            "help": "Column holding labels for downstream classification, kept as 'label'; default: no label column."
        },
    )
    train_split: str = field(
        default="train",
        metadata={"help": "Split to train on (Hub and builtin datasets; --train_file is always the train split)."},
    )
    eval_split: Optional[str] = field(default=None, metadata={"help": eval_split_help()})
    validation_split_percentage: Optional[int] = validation_split_percentage_field("documents")
    txt_sample_by: str = field(
        default="line",
        metadata={
            "help": "For .txt files, what one row is: 'line', 'paragraph' (blocks separated by a blank line) "
            "or 'document' (the whole file)."
        },
    )
    streaming: bool = field(
        default=False,
        metadata={
            "help": "Return `datasets.IterableDataset`s that read the data as it is consumed (nothing is "
            "downloaded or converted ahead); --max_*_samples then take the first N rows, unshuffled."
        },
    )
    shuffle_buffer_size: int = field(
        default=10_000,
        metadata={
            "help": "With --streaming, training examples are shuffled through a buffer of this many examples "
            "(reshuffled every epoch; 0 = stream order). Without --streaming the Trainer's sampler shuffles."
        },
    )
    max_train_samples: Optional[int] = field(
        default=None,
        metadata={
            "help": "Keep only this many train documents: the first N after a shuffle with --split_seed "
            "(with --streaming: the first N, unshuffled)."
        },
    )
    max_eval_samples: Optional[int] = field(
        default=None,
        metadata={
            "help": "Keep only this many eval documents: the first N after a shuffle with --split_seed "
            "(with --streaming: the first N, unshuffled)."
        },
    )
    split_seed: int = split_seed_field()
    cache_dir: Optional[str] = field(
        default=None, metadata={"help": "Where `datasets` caches downloaded and prepared data."}
    )


@dataclass
class TextDatasets:
    """What ``load_text_datasets`` resolved: datasets with a str "text" column and, when asked for, a "label" column."""

    train: TextDataset
    eval: Optional[TextDataset]
    description: str = ""


@dataclass
class _TextSource(DataSource):
    """A text ``DataSource``; ``blank_rows_expected`` for a .txt file read line by line, whose blank
    lines separate text rather than being empty documents (their count is logged at info level)."""

    blank_rows_expected: bool = False


def iter_texts(dataset: TextDataset, batch_size: int = 1_000) -> Iterator[str]:
    """The ``text`` column of a ``Dataset`` or ``IterableDataset``, one document at a time."""
    for batch in dataset.iter(batch_size=batch_size):
        yield from batch[TEXT_COLUMN]


def load_text_datasets(args: TextDataArguments) -> TextDatasets:
    """Resolve ``args`` into train/eval datasets with a "text" column (and "label" when asked for).

    Each row is one document: a non-empty ``str`` (paragraphs separated by ``"\\n\\n"``); the text
    column is found as ``text_column_name`` says (default: "text", else the only string column) and
    renamed to "text"; ``label_column_name`` is renamed to "label"; every other column is removed.

    The eval set is ``--validation_file``, else ``--eval_split``, else the first of
    ``EVAL_SPLIT_CANDIDATES`` the source has, else ``validation_split_percentage`` percent of the
    train documents held out (default 10, 0 for none; seeded with ``split_seed`` and logged; see
    :func:`hfssl.data.splits.split_off_eval`). Empty and whitespace-only documents are dropped with
    a logged count. ``max_train_samples``/``max_eval_samples`` keep the first N documents after a
    shuffle with ``split_seed``.

    With ``streaming=True`` both are ``datasets.IterableDataset``s: empty documents are skipped as
    they stream by (not counted), ``max_*_samples`` take the first N documents without shuffling,
    and no share is held out (a stream has no length to split): by default a stream without an
    eval split has no eval set, and an explicit ``validation_split_percentage`` is refused.

    A local file that cannot be read (empty, a broken JSON/CSV line, bytes that are not UTF-8) is
    refused with the file, the line and the fix (:mod:`hfssl.data.text_check`); with
    ``streaming=True`` its first lines are checked up front, before any row is streamed.

    Raises ``ValueError`` naming the problem and the argument that fixes it.
    """
    _check_arguments(args)
    with _naming_file_errors(args):
        return _load_text_datasets(args)


def _load_text_datasets(args: TextDataArguments) -> TextDatasets:
    """:func:`load_text_datasets` once the arguments are checked."""
    source = _open_source(args)
    train = source.load_named(args.train_split, "--train_split")
    eval_name, eval_dataset = _load_eval(source, args)
    label_column = args.label_column_name
    text_column = _resolve_text_column(train, args.text_column_name, label_column)
    train = _drop_empty(_standardize_columns(train, text_column, label_column, "train"), "train", source)
    if eval_dataset is not None:
        eval_dataset = _standardize_columns(eval_dataset, text_column, label_column, eval_name)
        eval_dataset = _drop_empty(eval_dataset, eval_name, source)
    _require_text(train, "train", source.description)
    train, eval_dataset, held_out = split_off_eval(
        train,
        eval_dataset,
        args.validation_split_percentage,
        args.split_seed,
        source.description,
        unit="documents",
        alternatives="--validation_file or --eval_split",
    )
    train = subsample(train, args.max_train_samples, args.split_seed)
    if eval_dataset is not None:
        eval_dataset = subsample(eval_dataset, args.max_eval_samples, args.split_seed)
        _require_text(eval_dataset, eval_name, source.description)
    return TextDatasets(
        train=train,
        eval=eval_dataset,
        description=describe(source.description, train, eval_dataset, held_out, unit="documents"),
    )


def _check_arguments(args: TextDataArguments) -> None:
    """Reject contradictory or missing arguments before touching any data."""
    if not (args.train_file or args.dataset_name):
        raise ValueError(
            "No data source: pass --train_file (a local .txt/.json/.jsonl/.csv file) or --dataset_name "
            f"(a Hub id or one of {', '.join(BUILTIN_PREFIX + name for name in BUILTIN_DATASETS)})."
        )
    if args.validation_file and not args.train_file:
        raise ValueError(
            "--validation_file is only used together with --train_file; pass --train_file or --eval_split instead."
        )
    if args.validation_file and args.eval_split:
        raise ValueError("Both --validation_file and --eval_split are set; pass only one of them.")
    if args.txt_sample_by not in TXT_SAMPLE_BY:
        raise ValueError(f"--txt_sample_by must be one of {', '.join(TXT_SAMPLE_BY)}, got {args.txt_sample_by!r}.")
    check_validation_split_percentage(args.validation_split_percentage)
    for flag, value in (
        ("--max_train_samples", args.max_train_samples),
        ("--max_eval_samples", args.max_eval_samples),
    ):
        if value is not None and value < 1:
            raise ValueError(
                f"{flag} must be a positive number of documents, got {value}; leave it unset to keep them all."
            )
    for flag, path in (("--train_file", args.train_file), ("--validation_file", args.validation_file)):
        if path:
            _file_format(path, flag)


def _file_format(path: str, flag: str) -> tuple[str, dict]:
    """(datasets builder, builder arguments) for ``path``, from its extension; the file must exist."""
    name = path.lower()
    for compression in COMPRESSION_EXTENSIONS:
        if name.endswith(compression):
            name = name[: -len(compression)]
            break
    extension = os.path.splitext(name)[1]
    if extension not in FILE_FORMATS:
        raise ValueError(
            f"{flag} {path!r} has an unsupported format {extension or '(no extension)'!r}; supported: {SUPPORTED_FILES}. "
            "Rename or convert the file."
        )
    if not os.path.isfile(path):
        raise ValueError(
            f"{flag} {path!r} does not exist or is not a file; check the path (supported: {SUPPORTED_FILES})."
        )
    return FILE_FORMATS[extension]


def _local_files(args: TextDataArguments) -> list[tuple[str, str]]:
    """(path, flag) of each local file the arguments name."""
    files = [(args.train_file, "--train_file"), (args.validation_file, "--validation_file")]
    return [(path, flag) for path, flag in files if path]


# A streamed file is checked up front at its start only: a full pass is what --streaming avoids.
STREAMING_CHECK_LINES = 10_000


def _file_problem(path: str, flag: str, max_lines: Optional[int] = None) -> Optional[str]:
    builder, builder_kwargs = _file_format(path, flag)
    return find_text_file_problem(path, flag, builder, builder_kwargs, max_lines)


@contextlib.contextmanager
def _naming_file_errors(args: TextDataArguments) -> Iterator[None]:
    """Turn ``datasets``' generic errors on a local file into a ``ValueError`` naming the file, the
    line and the fix; an error the files do not explain (or from a Hub dataset) passes unchanged."""
    try:
        yield
    except FILE_ERRORS as error:
        for path, flag in _local_files(args):
            problem = _file_problem(path, flag)
            if problem is not None:
                raise ValueError(problem) from error
        raise


def _open_source(args: TextDataArguments) -> _TextSource:
    """Pick the data source by precedence: train_file, builtin:*, then the Hub."""
    if args.train_file:
        return _file_source(args)
    if args.dataset_name.startswith(BUILTIN_PREFIX):
        return _builtin_source(args.dataset_name[len(BUILTIN_PREFIX) :], args.streaming, args.cache_dir)
    return _TextSource.from_hub(args.dataset_name, args.dataset_config_name, args.cache_dir, streaming=args.streaming)


def _file_source(args: TextDataArguments) -> _TextSource:
    files = {"train": (args.train_file, "--train_file")}
    if args.validation_file:
        files["validation"] = (args.validation_file, "--validation_file")

    def load_split(split: str) -> TextDataset:
        path, flag = files[split]
        problem = _file_problem(path, flag, STREAMING_CHECK_LINES) if args.streaming else None
        if problem is not None:  # a stream would hit it at some training step
            raise ValueError(problem)
        builder, builder_kwargs = _file_format(path, flag)
        if builder == "text":
            builder_kwargs = {**builder_kwargs, "sample_by": args.txt_sample_by}
        return datasets.load_dataset(
            builder,
            data_files={split: path},
            split=split,
            streaming=args.streaming,
            cache_dir=args.cache_dir,
            **builder_kwargs,
        )

    description = f"file {args.train_file}" + (f" (eval: {args.validation_file})" if args.validation_file else "")
    blank_rows_expected = args.txt_sample_by == "line" and any(
        _file_format(path, flag)[0] == "text" for path, flag in files.values()
    )
    return _TextSource(list(files), load_split, description, blank_rows_expected)


def _builtin_source(name: str, streaming: bool, cache_dir: Optional[str]) -> _TextSource:
    if name not in BUILTIN_DATASETS:
        available = "; ".join(f"{BUILTIN_PREFIX}{builtin} ({about})" for builtin, about in BUILTIN_DATASETS.items())
        raise ValueError(f"Unknown built-in dataset {BUILTIN_PREFIX + name!r}; available: {available}.")

    def load_split(split: str) -> TextDataset:
        dataset = enwiki_sample_dataset(cache_dir)
        return dataset.to_iterable_dataset() if streaming else dataset

    return _TextSource(["train"], load_split, f"{BUILTIN_PREFIX}{name} ({BUILTIN_DATASETS[name]})")


def _load_eval(source: _TextSource, args: TextDataArguments) -> tuple[str, Optional[TextDataset]]:
    """(split name, eval split) as given, or found among EVAL_SPLIT_CANDIDATES; (name, None) when there is none."""
    if args.train_file:
        return "validation", (source.load_split("validation") if args.validation_file else None)
    if args.eval_split:
        return args.eval_split, source.load_named(args.eval_split, "--eval_split")
    name = source.default_eval_split()
    return ("eval", None) if name is None else (name, source.load_split(name))


# ----------------------------------------------------------------------------- columns


def _features(dataset: TextDataset) -> datasets.Features:
    """The features of ``dataset``; a stream whose features are unknown is peeked at to find them."""
    if dataset.features is None and isinstance(dataset, datasets.IterableDataset):
        dataset = dataset._resolve_features()
    return dataset.features or datasets.Features()


def _is_string(feature) -> bool:
    return isinstance(feature, datasets.Value) and (
        pa.types.is_string(feature.pa_type) or pa.types.is_large_string(feature.pa_type)
    )


def _describe_columns(features: datasets.Features) -> str:
    return ", ".join(f"{name!r} ({feature})" for name, feature in features.items()) or "none"


def _resolve_text_column(dataset: TextDataset, requested: Optional[str], label_column: Optional[str]) -> str:
    """The text column of ``dataset``: ``requested``, else "text", else the only string column (not the label)."""
    features = _features(dataset)
    columns = list(features)
    if requested is not None:
        if requested not in columns:
            raise ValueError(
                f"Text column {requested!r} does not exist; the dataset has columns {columns}. "
                "Pass --text_column_name with one of them."
            )
        return requested
    if TEXT_COLUMN in columns and TEXT_COLUMN != label_column:
        return TEXT_COLUMN
    strings = [name for name, feature in features.items() if _is_string(feature) and name != label_column]
    if len(strings) == 1:
        return strings[0]
    reason = "no column holds strings" if not strings else f"several columns hold strings ({strings})"
    raise ValueError(
        f"Cannot tell which column holds the text: there is no 'text' column and {reason}; the dataset has columns "
        f"{_describe_columns(features)}. Pass --text_column_name with the column that holds the documents."
    )


def _standardize_columns(
    dataset: TextDataset, text_column: str, label_column: Optional[str], split: str
) -> TextDataset:
    """Keep only the text (and label) columns, renamed to "text" (and "label"); the text must be strings."""
    features = _features(dataset)
    wanted = {text_column: TEXT_COLUMN, **({label_column: LABEL_COLUMN} if label_column else {})}
    for column, kind in zip(wanted, ("text", "label")):
        if column not in features:
            raise ValueError(
                f"{kind.capitalize()} column {column!r} does not exist in the {split} split; it has columns {list(features)}. "
                f"Pass --{kind}_column_name naming a column that every split has."
            )
    if not _is_string(features[text_column]):
        raise ValueError(
            f"Text column {text_column!r} of the {split} split holds {features[text_column]}, not strings; "
            f"the dataset has columns {_describe_columns(features)}. Pass --text_column_name with a column of strings."
        )
    if label_column == text_column:
        raise ValueError(
            f"--label_column_name and the text column are both {text_column!r}; pass two different columns."
        )
    dataset = dataset.select_columns(list(wanted))
    renames = {old: new for old, new in wanted.items() if old != new}
    # A new name that is also an old one (text from "body", label from "text"): rename through temporary names.
    if set(renames.values()) & set(renames):
        dataset = dataset.rename_columns({old: f"__hfssl_{new}__" for old, new in renames.items()})
        renames = {f"__hfssl_{new}__": new for new in renames.values()}
    return dataset.rename_columns(renames) if renames else dataset


def _has_text(batch: dict) -> list[bool]:
    """Keep a row whose text holds a non-whitespace character; None counts as empty."""
    keep = []
    for text in batch[TEXT_COLUMN]:
        if text is not None and not isinstance(text, str):
            raise ValueError(
                f"A text value is {type(text).__name__} {text!r}, not a string; "
                "pass --text_column_name with a column of strings."
            )
        keep.append(text is not None and text.strip() != "")
    return keep


def _drop_empty(dataset: TextDataset, split: str, source: _TextSource) -> TextDataset:
    """``dataset`` without empty or whitespace-only documents; the number dropped is logged (not for streams)."""
    if isinstance(dataset, datasets.IterableDataset):
        return dataset.filter(_has_text, batched=True)
    kept = dataset.filter(_has_text, batched=True, desc=f"Dropping empty {split} documents")
    dropped = len(dataset) - len(kept)
    if dropped:
        if source.blank_rows_expected:
            logger.info("Skipped %d blank lines of the %s split (.txt read line by line).", dropped, split)
        else:
            logger.warning(
                "Dropped %d of %d documents of the %s split of %s: they are empty or whitespace only.",
                dropped,
                len(dataset),
                split,
                source.description,
            )
    return kept


def _require_text(dataset: TextDataset, split: str, description: str) -> None:
    """A dataset without a single non-empty document is an error (a stream is peeked at for its first document)."""
    if isinstance(dataset, datasets.IterableDataset):
        empty = next(iter(dataset.take(1)), None) is None
    else:
        empty = len(dataset) == 0
    if empty:
        raise ValueError(
            f"The {split} data of {description} has no text: every document is empty or whitespace only. "
            "Check the file or split, and --text_column_name."
        )


# ----------------------------------------------------------------------------- streams


def shuffle_stream(examples: TextDataset, buffer_size: int, seed: int) -> TextDataset:
    """A streamed training set shuffled through a buffer of ``buffer_size`` examples (the Trainer calls
    ``set_epoch`` on it, which reshuffles each epoch); a ``Dataset`` or ``buffer_size=0`` unchanged.

    A map-style dataset is shuffled by the Trainer's sampler, a stream by nothing: without this, BERT
    pairs and BART examples arrive in document order, a batch full of one document's chunks."""
    if buffer_size < 0:
        raise ValueError(f"--shuffle_buffer_size must be >= 0 (got {buffer_size}); 0 keeps the stream's order.")
    if not isinstance(examples, datasets.IterableDataset) or buffer_size == 0:
        return examples
    return examples.shuffle(seed=seed, buffer_size=buffer_size)
