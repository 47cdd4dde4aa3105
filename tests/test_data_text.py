"""Tests for hfssl.data.text: local files (jsonl.gz, txt, csv), builtin:enwiki-sample, streaming, splits, errors."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

import bz2
import csv
import gzip
import json
import logging
import lzma
import time
from pathlib import Path

import datasets
import numpy as np
import pytest
from conftest import has_full_data
from transformers import HfArgumentParser, TrainingArguments

from hfssl.data import TextDataArguments, TextDatasets, load_text_datasets
from hfssl.data.text import wiki_to_plain_text

# The full corpus, or its in-repo fixture (201 train and 30 validation documents, tests/fixtures/README.md):
# documents, and documents of several paragraphs (Austen, Gutenberg, Wikipedia; a Bible chapter is one block).
CORPUS_TRAIN_DOCS, CORPUS_VALIDATION_DOCS, CORPUS_TRAIN_MULTI_PARAGRAPH = (
    (1767, 92, 444) if has_full_data("corpus") else (201, 30, 52)
)
VALIDATION_HELD_OUT = -(-CORPUS_VALIDATION_DOCS // 10)  # the default 10% of the validation file, rounded up
ENWIKI_ARTICLES = 106  # of the 206 pages in gensim's dump; 99 redirects and 1 non-article page are skipped


def _corpus(shared_data: Path, split: str) -> str:
    return str(shared_data / "corpus" / f"{split}.jsonl.gz")


def _write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def _load(**kwargs) -> TextDatasets:
    return load_text_datasets(TextDataArguments(**kwargs))


@pytest.fixture(scope="module")
def corpus(shared_data) -> TextDatasets:
    return _load(train_file=_corpus(shared_data, "train"), validation_file=_corpus(shared_data, "validation"))


# ----------------------------------------------------------------------------- sources


def test_shared_corpus_from_files(corpus):
    assert isinstance(corpus.train, datasets.Dataset) and isinstance(corpus.eval, datasets.Dataset)
    assert (len(corpus.train), len(corpus.eval)) == (CORPUS_TRAIN_DOCS, CORPUS_VALIDATION_DOCS)
    # "text" auto-detected among source/title/text; the other columns are gone
    assert corpus.train.column_names == ["text"] and corpus.eval.column_names == ["text"]
    first = corpus.train[0]["text"]
    assert isinstance(first, str) and len(first.split()) > 100
    # documents keep their paragraphs
    assert sum("\n\n" in text for text in corpus.train["text"]) == CORPUS_TRAIN_MULTI_PARAGRAPH
    assert f"{CORPUS_TRAIN_DOCS} train / {CORPUS_VALIDATION_DOCS} eval" in corpus.description


def test_txt_sample_by_modes(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("First line of one.\nSecond line of one.\n\nOnly line of two.\n   \nAfter a blank-ish line.\n")
    by_line = _load(train_file=str(path), txt_sample_by="line", validation_split_percentage=0).train
    assert by_line["text"] == [
        "First line of one.",
        "Second line of one.",
        "Only line of two.",
        "After a blank-ish line.",
    ]
    by_paragraph = _load(train_file=str(path), txt_sample_by="paragraph", validation_split_percentage=0).train
    assert by_paragraph["text"][0] == "First line of one.\nSecond line of one."
    assert len(by_paragraph) == 2 and by_paragraph["text"][1].startswith("Only line of two.")
    by_document = _load(train_file=str(path), txt_sample_by="document").train
    assert len(by_document) == 1 and by_document[0]["text"] == path.read_text()


def test_csv_with_custom_text_and_label_columns(tmp_path):
    path = tmp_path / "reviews.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "review", "stars", "author"])
        writer.writerows([[1, "Great, would read again.", 5, "ann"], [2, "Dull.", 1, "bob"], [3, "Fine", 3, "cy"]])
    data = _load(
        train_file=str(path), text_column_name="review", label_column_name="stars", validation_split_percentage=0
    )
    assert data.train.column_names == ["text", "label"] and data.eval is None
    assert data.train["text"] == ["Great, would read again.", "Dull.", "Fine"]
    assert data.train["label"] == [5, 1, 3]


@pytest.mark.parametrize("streaming", [False, True])
def test_compressed_tsv_and_txt(tmp_path, streaming):
    tsv, txt = tmp_path / "train.tsv.bz2", tmp_path / "eval.txt.xz"
    tsv.write_bytes(bz2.compress(b"sentence\tlabel\nhello there\t1\n\t0\nbye now\t2\n"))
    txt.write_bytes(lzma.compress(b"one paragraph\nof two lines\n\nanother\n"))
    data = _load(train_file=str(tsv), label_column_name="label", streaming=streaming, validation_split_percentage=0)
    assert list(data.train) == [{"text": "hello there", "label": 1}, {"text": "bye now", "label": 2}]
    data = _load(train_file=str(txt), txt_sample_by="paragraph", streaming=streaming, validation_split_percentage=0)
    assert [row["text"] for row in data.train] == [
        "one paragraph\nof two lines",
        "another\n",
    ]  # as datasets' text builder
    # the text column is resolved on the train split; an eval file without it is refused
    with pytest.raises(
        ValueError, match=r"Text column 'sentence' does not exist in the validation split; it has columns \['text'\]"
    ):
        _load(train_file=str(tsv), validation_file=str(txt), streaming=streaming)


def test_label_column_named_text_is_renamed_safely(tmp_path):
    path = _write_jsonl(
        tmp_path / "swap.jsonl", [{"body": "a document", "text": "topic-a"}, {"body": "another", "text": "topic-b"}]
    )
    train = _load(
        train_file=path, text_column_name="body", label_column_name="text", validation_split_percentage=0
    ).train
    assert train.column_names == ["text", "label"]
    assert train[0] == {"text": "a document", "label": "topic-a"}


def test_only_string_column_is_the_text(tmp_path):
    path = _write_jsonl(tmp_path / "one.jsonl", [{"id": 1, "content": "alpha beta"}, {"id": 2, "content": "gamma"}])
    assert _load(train_file=path, validation_split_percentage=0).train["text"] == ["alpha beta", "gamma"]


def test_local_dataset_directory_finds_its_eval_split(tmp_path):
    # --dataset_name goes through the Hub code path (load_dataset on a directory works offline)
    _write_jsonl(tmp_path / "train.jsonl", [{"text": f"train document {i}"} for i in range(4)])
    _write_jsonl(tmp_path / "test.jsonl", [{"text": "test document"}])
    data = _load(dataset_name=str(tmp_path))
    assert (len(data.train), len(data.eval)) == (4, 1)
    assert data.eval["text"] == ["test document"]


def test_builtin_enwiki_sample(tmp_path):
    start = time.perf_counter()
    data = _load(
        dataset_name="builtin:enwiki-sample", validation_split_percentage=0, cache_dir=str(tmp_path / "cache")
    )
    first_call = time.perf_counter() - start
    assert len(data.train) == ENWIKI_ARTICLES and data.eval is None
    assert data.train.column_names == ["text"]
    texts = data.train["text"]
    for markup in ("[[", "]]", "{{", "}}", "''", "<ref", "==", "\n\n\n"):
        assert not any(markup in text for text in texts), markup
    assert all("\n" not in text.replace("\n\n", "") for text in texts)  # paragraphs joined by "\n\n" only
    anarchism = next(text for text in texts if text.startswith("Anarchism is a political philosophy"))
    assert anarchism.count("\n\n") > 50
    assert 460_000 < sum(len(text.split()) for text in texts) < 490_000

    start = time.perf_counter()
    again = _load(
        dataset_name="builtin:enwiki-sample", validation_split_percentage=0, cache_dir=str(tmp_path / "cache")
    )
    assert again.train["text"] == texts
    assert time.perf_counter() - start < min(1.0, first_call)


def test_builtin_enwiki_sample_held_out_eval(tmp_path):
    data = _load(
        dataset_name="builtin:enwiki-sample", validation_split_percentage=10, cache_dir=str(tmp_path / "cache")
    )
    assert (len(data.train), len(data.eval)) == (ENWIKI_ARTICLES - 11, 11)


def test_wiki_to_plain_text():
    raw = (
        "{{Infobox|name=x}}\n'''Bold''' and ''italic'' [[Link target|link text]] <ref>cite</ref>end.\n"
        "Same paragraph.\n\n== Section ==\n* first item\n* second item\n"
    )
    assert (
        wiki_to_plain_text(raw)
        == "Bold and italic link text end. Same paragraph.\n\nSection\n\nfirst item second item"
    )


def test_streaming_jsonl(shared_data):
    data = _load(
        train_file=_corpus(shared_data, "train"),
        validation_file=_corpus(shared_data, "validation"),
        streaming=True,
        max_train_samples=5,
    )
    assert isinstance(data.train, datasets.IterableDataset) and isinstance(data.eval, datasets.IterableDataset)
    rows = list(data.train)
    assert len(rows) == 5 and all(set(row) == {"text"} and row["text"].strip() for row in rows)
    # streaming takes the first N documents, unshuffled
    with gzip.open(_corpus(shared_data, "train"), "rt") as handle:
        first = [json.loads(next(handle))["text"] for _ in range(5)]
    assert [row["text"] for row in rows] == first
    assert next(iter(data.eval))["text"]


def test_streamed_training_examples_are_shuffled_each_epoch():
    from hfssl.data import shuffle_stream

    stream = datasets.Dataset.from_dict({"n": list(range(200))}).to_iterable_dataset()
    shuffled = shuffle_stream(stream, buffer_size=50, seed=0)
    first = [row["n"] for row in shuffled]
    assert sorted(first) == list(range(200)) and first != list(range(200))
    assert [row["n"] for row in shuffle_stream(stream, buffer_size=50, seed=0)] == first  # seeded
    shuffled.set_epoch(1)  # what the Trainer calls at each epoch
    assert [row["n"] for row in shuffled] != first
    assert [row["n"] for row in shuffle_stream(stream, buffer_size=0, seed=0)] == list(range(200))
    in_memory = datasets.Dataset.from_dict({"n": [0, 1, 2]})
    assert shuffle_stream(in_memory, buffer_size=50, seed=0) is in_memory  # the Trainer's sampler shuffles it
    with pytest.raises(ValueError, match="shuffle_buffer_size"):
        shuffle_stream(stream, buffer_size=-1, seed=0)


def test_validation_split_percentage(shared_data):
    args = dict(train_file=_corpus(shared_data, "validation"), validation_split_percentage=10)
    data = _load(**args)
    assert (len(data.train), len(data.eval)) == (CORPUS_VALIDATION_DOCS - VALIDATION_HELD_OUT, VALIDATION_HELD_OUT)
    assert not set(data.eval["text"]) & set(data.train["text"])
    assert _load(**args).eval["text"] == data.eval["text"]  # same seed, same split
    assert _load(**args, split_seed=1).eval["text"] != data.eval["text"]
    # an existing eval file wins over the percentage
    both = _load(**args, validation_file=_corpus(shared_data, "validation"))
    assert (len(both.train), len(both.eval)) == (CORPUS_VALIDATION_DOCS, CORPUS_VALIDATION_DOCS)


def test_default_validation_hold_out(shared_data, caplog):
    """Without an eval split, 10% of the train documents are held out, seeded with --split_seed (42), and logged."""
    path = _corpus(shared_data, "validation")
    with caplog.at_level(logging.INFO, logger="hfssl.data.splits"):
        data = _load(train_file=path)
    held_out = VALIDATION_HELD_OUT  # ceil(9.2) = 10 of the full corpus' 92
    assert (len(data.train), len(data.eval)) == (CORPUS_VALIDATION_DOCS - held_out, held_out)
    assert f"{CORPUS_VALIDATION_DOCS - held_out} train / {held_out} held-out eval documents" in data.description
    assert f"Held out {held_out} of the {CORPUS_VALIDATION_DOCS} train documents" in caplog.text
    assert "--split_seed 42" in caplog.text
    assert not set(data.eval["text"]) & set(data.train["text"])
    off = _load(train_file=path, validation_split_percentage=0)
    assert off.eval is None and len(off.train) == CORPUS_VALIDATION_DOCS and "no eval" in off.description
    assert sorted([*data.train["text"], *data.eval["text"]]) == sorted(off.train["text"])
    # the default is --validation_split_percentage 10 with --split_seed 42, whichever way they are given
    assert _load(train_file=path).eval["text"] == data.eval["text"]
    assert _load(train_file=path, validation_split_percentage=10, split_seed=42).eval["text"] == data.eval["text"]
    assert _load(train_file=path, split_seed=0).eval["text"] != data.eval["text"]


def test_default_hold_out_is_skipped_where_it_cannot_apply(shared_data, tmp_path, caplog):
    """A stream and a one-document train split get no eval set by default; asked for explicitly, the share is refused."""
    stream = _load(train_file=_corpus(shared_data, "validation"), streaming=True)
    assert isinstance(stream.train, datasets.IterableDataset) and stream.eval is None
    single = _write_jsonl(tmp_path / "one.jsonl", [{"text": "the only document"}])
    with caplog.at_level(logging.WARNING, logger="hfssl.data.splits"):
        data = _load(train_file=single)
    assert data.eval is None and data.train["text"] == ["the only document"]
    assert "only 1 documents, too few to hold out 10%" in caplog.text
    with pytest.raises(ValueError, match=r"only 1 documents, too few to hold out 50%.*--validation_file"):
        _load(train_file=single, validation_split_percentage=50)


def test_vision_and_text_resolvers_hold_out_and_subsample_the_same_rows(tmp_path):
    """Row i of an IDX file and document i of a jsonl file go to the same side of the split for the same seed."""
    from hfssl.data import VisionDataArguments, load_vision_datasets
    from hfssl.data.splits import DEFAULT_SPLIT_SEED, split_off_eval

    n = 40
    images = np.repeat(np.arange(n, dtype=np.uint8), 4).reshape(n, 2, 2)  # image i is filled with i
    header = (0x803).to_bytes(4, "big") + b"".join(size.to_bytes(4, "big") for size in images.shape)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(header + images.tobytes())
    text_file = _write_jsonl(tmp_path / "docs.jsonl", [{"text": f"document {i}"} for i in range(n)])

    def vision_ids(split):
        return [int(row["image"][0, 0]) for row in split]

    def text_ids(split):
        return [int(text.split()[1]) for text in split["text"]]

    ids = datasets.Dataset.from_dict({"i": list(range(n))})
    _, expected_eval, _ = split_off_eval(ids, None, None, DEFAULT_SPLIT_SEED, "ids")
    for kwargs in (
        dict(),
        dict(split_seed=7, validation_split_percentage=25, max_train_samples=9, max_eval_samples=4),
    ):
        vision = load_vision_datasets(VisionDataArguments(idx_dir=str(tmp_path), **kwargs))
        text = _load(train_file=text_file, **kwargs)
        assert vision_ids(vision.train) == text_ids(text.train) and vision_ids(vision.eval) == text_ids(text.eval)
        assert not set(vision_ids(vision.train)) & set(vision_ids(vision.eval))
    default_vision = load_vision_datasets(VisionDataArguments(idx_dir=str(tmp_path)))
    assert vision_ids(default_vision.eval) == expected_eval["i"] and len(expected_eval) == 4
    assert (len(vision.train), len(vision.eval)) == (9, 4)


def test_max_samples(shared_data):
    args = dict(train_file=_corpus(shared_data, "validation"), validation_file=_corpus(shared_data, "validation"))
    full = _load(**args).train["text"]
    data = _load(**args, max_train_samples=7, max_eval_samples=3)
    assert (len(data.train), len(data.eval)) == (7, 3)
    assert set(data.train["text"]) <= set(full) and data.train["text"] != full[:7]  # shuffled, then the first 7
    assert _load(**args, max_train_samples=7).train["text"] == data.train["text"]
    assert _load(**args, max_train_samples=7, split_seed=3).train["text"] != data.train["text"]
    assert len(_load(**args, max_train_samples=10_000).train) == CORPUS_VALIDATION_DOCS


def test_empty_documents_are_dropped_with_a_warning(tmp_path, caplog):
    rows = [{"text": "kept"}, {"text": ""}, {"text": " \n\t"}, {"text": None}, {"text": "also kept"}]
    path = _write_jsonl(tmp_path / "gaps.jsonl", rows)
    with caplog.at_level(logging.WARNING, logger="hfssl.data.text"):
        train = _load(train_file=path, validation_split_percentage=0).train
    assert train["text"] == ["kept", "also kept"]
    assert "Dropped 3 of 5 documents of the train split" in caplog.text


def test_parsed_by_hf_argument_parser_beside_training_arguments(tmp_path):
    parser = HfArgumentParser((TextDataArguments, TrainingArguments))
    data_args, training_args = parser.parse_args_into_dataclasses(
        [
            "--train_file",
            "a.txt",
            "--txt_sample_by",
            "paragraph",
            "--streaming",
            "--max_train_samples",
            "10",
            "--output_dir",
            str(tmp_path),
        ]
    )
    assert (data_args.train_file, data_args.txt_sample_by, data_args.streaming, data_args.max_train_samples) == (
        "a.txt",
        "paragraph",
        True,
        10,
    )
    # None: the default share (10%) where a split is possible; a stream like this one gets no eval set
    assert data_args.validation_split_percentage is None and data_args.split_seed == 42


# ----------------------------------------------------------------------------- errors


def test_missing_text_column_lists_the_columns(shared_data):
    with pytest.raises(
        ValueError, match=r"Text column 'body' does not exist.*\['source', 'title', 'text'\].*--text_column_name"
    ):
        _load(train_file=_corpus(shared_data, "validation"), text_column_name="body")


def test_missing_label_column_lists_the_columns(shared_data):
    with pytest.raises(
        ValueError, match=r"Label column 'label' does not exist.*'source', 'title', 'text'.*--label_column_name"
    ):
        _load(train_file=_corpus(shared_data, "validation"), label_column_name="label")


def test_ambiguous_text_column_lists_the_columns(tmp_path):
    path = _write_jsonl(tmp_path / "two.jsonl", [{"title": "t", "body": "b", "n": 1}])
    with pytest.raises(
        ValueError, match=r"several columns hold strings.*'title' \(Value\('string'\)\).*'n'.*--text_column_name"
    ):
        _load(train_file=path)


def test_non_string_text_column(tmp_path):
    path = _write_jsonl(tmp_path / "numbers.jsonl", [{"text": 1}, {"text": 2}])
    with pytest.raises(ValueError, match=r"Text column 'text' of the train split holds Value\('int64'\), not strings"):
        _load(train_file=path)


def test_missing_file(tmp_path):
    with pytest.raises(
        ValueError, match=r"--train_file '.*nowhere\.jsonl\.gz' does not exist.*\.txt, \.json, \.jsonl, \.csv"
    ):
        _load(train_file=str(tmp_path / "nowhere.jsonl.gz"))


def test_unsupported_extension(tmp_path):
    path = tmp_path / "train.parquet.gz"
    path.write_bytes(b"")
    with pytest.raises(
        ValueError,
        match=r"--train_file '.*train\.parquet\.gz' has an unsupported format '\.parquet'; supported: \.txt",
    ):
        _load(train_file=str(path))


def test_all_empty_documents(tmp_path):
    path = _write_jsonl(tmp_path / "blank.jsonl", [{"text": ""}, {"text": "   "}, {"text": "\n\n"}])
    with pytest.raises(ValueError, match="has no text: every document is empty or whitespace only"):
        _load(train_file=path)
    with pytest.raises(ValueError, match="has no text"):
        _load(train_file=path, streaming=True)


def test_unknown_builtin():
    with pytest.raises(
        ValueError, match=r"Unknown built-in dataset 'builtin:enwiki'; available: builtin:enwiki-sample"
    ):
        _load(dataset_name="builtin:enwiki")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(), "No data source"),
        (dict(dataset_name="builtin:enwiki-sample", validation_file="v.txt"), "only used together with --train_file"),
        (
            dict(train_file="t.txt", txt_sample_by="sentence"),
            "--txt_sample_by must be one of line, paragraph, document",
        ),
        (dict(train_file="t.txt", validation_split_percentage=100), r"must be in \[0, 100\)"),
        (dict(train_file="t.txt", max_train_samples=0), "--max_train_samples must be a positive number"),
        (
            dict(dataset_name="builtin:enwiki-sample", eval_split="test"),
            r"Split 'test' \(--eval_split\) does not exist.*\['train'\]",
        ),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _load(**kwargs)


def test_streaming_cannot_hold_out(shared_data):
    with pytest.raises(ValueError, match="cannot split a stream"):
        _load(train_file=_corpus(shared_data, "validation"), streaming=True, validation_split_percentage=10)
