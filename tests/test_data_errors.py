"""Data errors are found before training and named: bad image files, unreadable text files,
pathological text for tokenizer training, impossible vocabulary sizes."""

import json
import logging
import shutil
import sys
import time

import datasets
import numpy as np
import pytest
from conftest import REPO_ROOT
from PIL import ImageFile
from transformers import TrainingArguments

from hfssl.data import (
    ImageCollator,
    TextDataArguments,
    VisionDataArguments,
    image_check,
    load_text_datasets,
    load_vision_datasets,
)
from hfssl.data.image_check import check_images, decode_errors, find_bad_images
from hfssl.tokenization import MAX_WORD_CHARS, LongWordCutter, train_subword_tokenizer
from hfssl.training.language_models import LanguageModelArguments, load_or_train_tokenizer

sys.path.insert(0, str(REPO_ROOT / "recipes"))
import evaluate_vision  # noqa: E402
import pretrain_vision  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models (conftest.one_torch_thread)

GOOD_PER_CLASS = 4


# ----------------------------------------------------------------------------- images


@pytest.fixture
def bad_folder(tmp_path, shared_data):
    """An imagefolder of 8 real emoji PNGs in two classes plus three bad files: an empty one, one cut
    inside its pixel data, and one that lost only its IEND chunk (it loads, but fails verify())."""
    sources = sorted((shared_data / "emoji-captions" / "images").glob("*.png"))
    root = tmp_path / "emoji"
    for index, source in enumerate(sources[: 2 * GOOD_PER_CLASS]):
        folder = root / ("faces" if index < GOOD_PER_CLASS else "hands")
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, folder / source.name)
    whole = sources[10].read_bytes()
    bad = {
        "empty": root / "faces" / "zz_empty.png",
        "cut": root / "hands" / "zz_cut.png",
        "no_end": root / "hands" / "zz_no_end.png",
    }
    bad["empty"].write_bytes(b"")
    bad["cut"].write_bytes(whole[: len(whole) // 2])
    bad["no_end"].write_bytes(whole[:-12])
    return root, bad


def _args(root, tmp_path, **kwargs) -> VisionDataArguments:
    return VisionDataArguments(
        train_dir=str(root), validation_split_percentage=0, cache_dir=str(tmp_path / "cache"), **kwargs
    )


def test_bad_images_stop_loading_naming_the_files_and_the_fix(bad_folder, tmp_path):
    root, bad = bad_folder
    with pytest.raises(ValueError) as error:
        load_vision_datasets(_args(root, tmp_path))
    message = str(error.value)
    assert message.startswith(
        f"3 of 11 train images of imagefolder {root} cannot be decoded (checked before training)"
    )
    assert f"{bad['empty']} (empty file (0 bytes))" in message
    assert f"{bad['cut']} (OSError: " in message and f"{bad['no_end']} (OSError: truncated PNG file)" in message
    assert "Delete or replace these files" in message and "pass --skip_bad_images" in message


def test_truncated_images_are_caught_with_load_truncated_images_on(bad_folder, tmp_path, monkeypatch):
    """PIL's switch pads a truncated image with grey; the check turns it off while it runs, then restores it."""
    root, bad = bad_folder
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(ValueError, match="3 of 11 train images"):
        load_vision_datasets(_args(root, tmp_path))
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True


def test_skip_bad_images_drops_logs_and_counts_them(bad_folder, tmp_path, caplog):
    root, bad = bad_folder
    with caplog.at_level(logging.WARNING, logger="hfssl.data.image_check"):
        loaded = load_vision_datasets(_args(root, tmp_path, skip_bad_images=True))
    assert loaded.skipped_images == 3 and sorted(loaded.skipped_files) == sorted(map(str, bad.values()))
    assert len(loaded.train) == 2 * GOOD_PER_CLASS
    assert {row["image"]["path"] for row in loaded.train}.isdisjoint(map(str, bad.values()))
    for path in bad.values():
        assert f"Skipping train image {path}: it cannot be decoded" in caplog.text
    assert f"Skipped 3 of 11 train images of imagefolder {root}" in caplog.text
    batch = ImageCollator(image_size=16)(list(loaded.train))  # every kept row decodes
    assert batch["pixel_values"].shape == (8, 3, 16, 16) and batch["labels"].tolist() == [0] * 4 + [1] * 4


def test_bad_images_of_the_eval_split_are_listed_and_skipped_too(bad_folder, tmp_path):
    root, bad = bad_folder
    validation = tmp_path / "validation"
    shutil.copytree(root, validation)
    args = VisionDataArguments(train_dir=str(root), validation_dir=str(validation), cache_dir=str(tmp_path / "c"))
    with pytest.raises(ValueError, match=r"^3 of 11 train and 3 of 11 eval images .*; and 1 more\. Delete"):
        load_vision_datasets(args)
    args.skip_bad_images = True
    loaded = load_vision_datasets(args)
    assert (loaded.skipped_images, len(loaded.train), len(loaded.eval)) == (6, 8, 8)


def test_the_check_is_cached_per_file(bad_folder, tmp_path, monkeypatch):
    """A second run decodes nothing; replacing a bad file (new size and mtime) re-checks that file only."""
    root, bad = bad_folder
    args = _args(root, tmp_path, skip_bad_images=True)
    assert load_vision_datasets(args).skipped_images == 3
    decoded = []
    real_image_error = image_check.image_error
    monkeypatch.setattr(image_check, "image_error", lambda source: decoded.append(source) or real_image_error(source))
    assert load_vision_datasets(args).skipped_images == 3
    assert decoded == []
    shutil.copy(root / "faces" / sorted(p.name for p in (root / "faces").glob("0*.png"))[0], bad["empty"])
    loaded = load_vision_datasets(args)
    assert decoded == [str(bad["empty"])] and loaded.skipped_images == 2 and len(loaded.train) == 9
    cache_files = list((tmp_path / "cache" / image_check.CACHE_FOLDER).glob("*.json"))
    assert len(cache_files) == 1 and len(json.loads(cache_files[0].read_text())["files"]) == 11


def test_parallel_check_matches_the_serial_one(bad_folder):
    root, bad = bad_folder
    files = sorted(str(path) for path in root.rglob("*.png"))
    sources = files * (image_check.PARALLEL_MIN_IMAGES // len(files) + 1)
    parallel = decode_errors(sources, num_workers=2)
    assert parallel == decode_errors(sources, num_workers=1)
    assert sum(error is not None for error in parallel) == 3 * (len(sources) // len(files))


def test_in_memory_bytes_are_checked_and_cached_by_content(bad_folder, tmp_path, monkeypatch):
    """Hub datasets hold encoded bytes: a cut image among them is named by its row, and cached by digest."""
    root, bad = bad_folder
    good = sorted((root / "faces").glob("0*.png"))[0].read_bytes()
    images = [{"bytes": good, "path": None}] * 3 + [{"bytes": bad["cut"].read_bytes(), "path": None}]
    dataset = datasets.Dataset.from_dict({"image": images}, features=datasets.Features({"image": datasets.Image()}))
    cache_file = str(tmp_path / "bytes.json")
    [found] = find_bad_images(dataset, cache_file)
    assert (found.row, found.name) == (3, "row 3 (in-memory bytes)")
    monkeypatch.setattr(image_check, "image_error", lambda source: pytest.fail("decoded again"))
    kept, skipped = check_images({"train": dataset}, "a Hub dataset", cache_file, skip_bad=True)
    assert len(kept["train"]) == 3 and skipped == ["row 3 (in-memory bytes)"]


def test_array_images_need_no_check(monkeypatch):
    monkeypatch.setattr(image_check, "find_bad_images", lambda *args: pytest.fail("arrays were checked"))
    loaded = load_vision_datasets(VisionDataArguments(dataset_name="builtin:digits", max_train_samples=20))
    assert loaded.skipped_images == 0


def test_recipes_record_skipped_images_in_all_results(bad_folder, tmp_path):
    """pretrain_vision.py stops before training on a bad file; with --skip_bad_images it trains and
    records the count, as evaluate_vision.py does."""
    root, bad = bad_folder
    common = [
        "--train_dir", str(root), "--cache_dir", str(tmp_path / "cache"), "--use_cpu", "--report_to", "none",
        "--disable_tqdm", "true", "--dataloader_num_workers", "0", "--seed", "0",
        "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "4",
    ]  # fmt: skip
    pretrain = [
        "--method", "simclr", "--backbone", "resnet-tiny", "--image_size", "16", "--max_steps", "1",
        "--save_strategy", "no", "--final_protocols", "", "--baselines", "false", "--validation_split_percentage", "0",
        *common,
    ]  # fmt: skip
    refused = tmp_path / "refused"
    with pytest.raises(ValueError, match=r"^3 of 11 train images .* cannot be decoded"):
        pretrain_vision.main([*pretrain, "--output_dir", str(refused)])
    assert not (refused / "trainer_state.json").exists()
    output = tmp_path / "simclr"
    pretrain_vision.main([*pretrain, "--output_dir", str(output), "--skip_bad_images"])
    results = json.loads((output / "all_results.json").read_text())
    assert results["skipped_images"] == 3 and "train_runtime" in results
    evaluate_vision.main([
        "--model_name_or_path", str(output / "backbone"), "--protocol", "knn", "--output_dir", str(tmp_path / "eval"),
        "--validation_split_percentage", "25", "--skip_bad_images", *common,
    ])  # fmt: skip
    assert json.loads((tmp_path / "eval" / "all_results.json").read_text())["skipped_images"] == 3


# ----------------------------------------------------------------------------- text files


def _load_text(path, **kwargs):
    return load_text_datasets(TextDataArguments(train_file=str(path), cache_dir=str(path.parent / "cache"), **kwargs))


@pytest.mark.parametrize("name", ["empty.txt", "empty.jsonl", "empty.csv"])
def test_an_empty_file_is_named(tmp_path, name):
    (tmp_path / name).write_bytes(b"")
    with pytest.raises(ValueError, match=rf"^--train_file {tmp_path / name} is empty \(no bytes\)\. Pass a file"):
        _load_text(tmp_path / name)


@pytest.mark.parametrize("streaming", [False, True])
def test_a_broken_json_line_is_named_by_its_number(tmp_path, streaming):
    path = tmp_path / "docs.jsonl"
    path.write_text('{"text": "one doc"}\n\n{"text": "two"}\n{"text": "three"\n{"text": "four"}\n')
    with pytest.raises(ValueError) as error:
        _load_text(path, streaming=streaming)
    assert str(error.value).startswith(f"--train_file {path}: line 4 is not valid JSON (Expecting ',' delimiter")
    assert "Repair or drop line 4" in str(error.value)


@pytest.mark.parametrize("name", ["latin.txt", "latin.jsonl", "latin.csv", "latin.txt.gz"])
def test_latin1_bytes_name_the_line_and_the_re_encoding(tmp_path, name):
    import gzip

    content = '{"text": "première"}\n' if ".jsonl" in name else "text\npremière\n" if ".csv" in name else "a\nprem\n"
    data = content.replace("prem", "caf\xe9 prem").encode("latin-1")
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    with pytest.raises(ValueError) as error:
        _load_text(path)
    message = str(error.value)
    line = 1 if ".jsonl" in name else 2
    assert message.startswith(f"--train_file {path} is not UTF-8: line {line}, byte ")
    assert "is b'\\xe9'" in message and "Re-encode the file as UTF-8" in message
    assert ("zcat" if name.endswith(".gz") else f"iconv -f latin1 -t utf-8 {path}") in message


def test_a_csv_row_with_a_stray_separator_is_named(tmp_path):
    path = tmp_path / "docs.csv"
    path.write_text("text,label\nfine,1\nnot, fine,2\n")
    with pytest.raises(ValueError, match=r"line 3 has 3 fields where the header has 2 \(','-separated\)\. Quote"):
        _load_text(path)


def test_a_good_file_still_loads_and_streams(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"text": f"document {index}"}) + "\n" for index in range(20)))
    assert len(_load_text(path, validation_split_percentage=0).train) == 20
    assert len(list(_load_text(path, streaming=True).train)) == 20


# ----------------------------------------------------------------------------- tokenizers


def _random_letters(count: int, seed: int = 0) -> str:
    letters = np.random.default_rng(seed).integers(ord("a"), ord("z") + 1, size=count, dtype=np.uint8)
    return letters.tobytes().decode("ascii")


@pytest.mark.parametrize("kind,special_tokens", [("byte_level_bpe", "gpt"), ("wordpiece", "bert")])
def test_a_huge_word_is_cut_for_tokenizer_training(kind, special_tokens, caplog):
    """One 1M-letter line took a byte-level BPE trainer over 15 minutes; cut, it takes well under a second."""
    texts = ["the quick brown fox jumps over the lazy dog"] * 50 + [_random_letters(1_000_000)]
    start = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="hfssl.tokenization"):
        tokenizer = train_subword_tokenizer(iter(texts), kind, special_tokens, vocab_size=400)
    assert time.perf_counter() - start < 10
    limit = MAX_WORD_CHARS[kind]
    assert (
        f"Cut 1 words longer than {limit} characters (the longest had 1000000) to their first {limit}" in caplog.text
    )
    assert tokenizer.tokenize("the lazy fox")


def test_only_words_the_pre_tokenizer_keeps_together_are_cut():
    minified = "a=1;" * 1000  # 4,000 characters without a space, but short words
    cutter = LongWordCutter("wordpiece", max_chars=5)
    assert list(cutter([minified, "short words stay"])) == [minified, "short words stay"]
    assert list(cutter(["abcdefgh, 你好世界你好世界"])) == ["abcde, 你好世界你好世界"]  # CJK: one word a character
    assert cutter.cut_words == 1


@pytest.mark.parametrize(
    "kind,special_tokens,vocab_size,minimum",
    [("byte_level_bpe", "gpt", 3, 258), ("byte_level_bpe", "bart", 260, 261), ("wordpiece", "bert", 6, 7)],
)
def test_a_vocab_size_the_tokenizer_cannot_hold_is_refused(kind, special_tokens, vocab_size, minimum):
    with pytest.raises(ValueError, match=rf"^--vocab_size {vocab_size} is below the {minimum} tokens a {kind}"):
        train_subword_tokenizer(["some text"], kind, special_tokens, vocab_size=vocab_size)


def test_a_vocabulary_of_another_size_than_asked_is_logged(caplog):
    texts = ["the quick brown fox jumps over the lazy dog again and again"] * 20
    with caplog.at_level(logging.WARNING, logger="hfssl.tokenization"):
        tokenizer = train_subword_tokenizer(texts, "wordpiece", "bert", vocab_size=20)
    assert len(tokenizer) == 51 and "has 51 tokens, more than --vocab_size 20" in caplog.text  # the alphabet needs 51
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hfssl.tokenization"):
        tokenizer = train_subword_tokenizer(texts, "wordpiece", "bert", vocab_size=500)
    assert f"has {len(tokenizer)} tokens, fewer than --vocab_size 500" in caplog.text and len(tokenizer) < 500


def test_the_recipes_refuse_vocab_size_3_before_training_a_tokenizer(tmp_path):
    args = LanguageModelArguments(vocab_size=3)
    training_args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    train = datasets.Dataset.from_dict({"text": ["a document"]})
    with pytest.raises(ValueError, match=r"--vocab_size 3 is below the 258 tokens .* pass --vocab_size 258 or more"):
        load_or_train_tokenizer(args, training_args, train, "byte_level_bpe", "gpt")
    assert not (tmp_path / "tokenizer.json").exists()
