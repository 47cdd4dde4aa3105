"""Tests for hfssl.data.vision: every source (IDX, imagefolder, builtin digits, Hub), the collator, the errors."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

import gzip
import io
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from conftest import data_path, has_full_data
from PIL import Image
from transformers import HfArgumentParser, TrainingArguments

from hfssl.data import ImageCollator, VisionDataArguments, VisionDatasets, load_vision_datasets, read_idx

# The full sets from HFSSL_DATA_DIR when there, else their in-repo cuts (tests/fixtures/README.md): Fashion-MNIST's
# first 30 train and 10 test images of each class, the first 3 emoji of each of the 9 groups.
FASHION_MNIST = data_path("fashion-mnist")
FASHION_SPLITS, FASHION_PER_CLASS = (
    ((60000, 10000), (6000, 1000)) if has_full_data("fashion-mnist") else ((300, 100), (30, 10))
)
EMOJI = data_path("emoji-captions")
EMOJI_COUNT = 3655 if has_full_data("emoji-captions") else 27


def _rgb(size, seed):
    return np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)


def _write_image_folder(root: Path) -> Path:
    """Two classes, RGB / L / RGBA images of three different sizes."""
    images = {
        "cat/a.png": Image.fromarray(_rgb((10, 12), 0)),
        "cat/b.png": Image.fromarray(_rgb((20, 20), 1)).convert("L"),
        "cat/c.png": Image.fromarray(_rgb((16, 16), 2)).convert("RGBA"),
        "dog/d.png": Image.fromarray(_rgb((10, 12), 3)).convert("L"),
        "dog/e.png": Image.fromarray(_rgb((16, 16), 4)),
        "dog/f.png": Image.fromarray(_rgb((20, 20), 5)).convert("RGBA"),
    }
    for name, image in images.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        image.save(root / name)
    return root


def _write_idx(path: Path, magic: int, array: np.ndarray, cut: int = 0) -> Path:
    """An IDX file (gzip when the name ends in .gz), optionally missing its last ``cut`` bytes."""
    header = magic.to_bytes(4, "big") + b"".join(int(size).to_bytes(4, "big") for size in array.shape)
    data = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    data = data[: len(data) - cut]
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


@pytest.fixture(scope="module")
def fashion() -> VisionDatasets:
    return load_vision_datasets(VisionDataArguments(idx_dir=str(FASHION_MNIST)))


@pytest.fixture(scope="module")
def digits() -> VisionDatasets:
    return load_vision_datasets(VisionDataArguments())


# ----------------------------------------------------------------------------- IDX


def test_fashion_mnist_idx_shapes_labels_and_balance(fashion):
    assert (len(fashion.train), len(fashion.eval)) == FASHION_SPLITS
    assert fashion.num_channels == 1
    assert fashion.label_names == [str(label) for label in range(10)]
    assert (
        fashion.description == f"IDX files from {FASHION_MNIST} ({FASHION_SPLITS[0]} train / {FASHION_SPLITS[1]} eval)"
    )
    row = fashion.train[0]
    assert row["image"].dtype == np.uint8 and row["image"].shape == (28, 28)
    for split, per_class in zip((fashion.train, fashion.eval), FASHION_PER_CLASS):
        labels = split.with_format("numpy")["label"][:]
        assert labels.min() == 0 and labels.max() == 9
        assert np.bincount(labels).tolist() == [per_class] * 10


@pytest.mark.parametrize("split, prefix", [("train", "train"), ("eval", "t10k")])
def test_fashion_mnist_pixels_match_the_raw_gzip_bytes(fashion, split, prefix):
    images = gzip.decompress((FASHION_MNIST / f"{prefix}-images-idx3-ubyte.gz").read_bytes())
    labels = gzip.decompress((FASHION_MNIST / f"{prefix}-labels-idx1-ubyte.gz").read_bytes())
    dataset = getattr(fashion, split)
    for index in (0, 1, len(dataset) - 1):
        expected = np.frombuffer(images, np.uint8, count=784, offset=16 + 784 * index).reshape(28, 28)
        np.testing.assert_array_equal(dataset[index]["image"], expected)
        assert dataset[index]["label"] == labels[8 + index]


def test_fashion_mnist_through_a_dataloader(fashion):
    loader = torch.utils.data.DataLoader(fashion.train, batch_size=256, shuffle=True, collate_fn=ImageCollator())
    batch = next(iter(loader))
    assert batch["pixel_values"].shape == (256, 1, 28, 28) and batch["pixel_values"].dtype == torch.uint8
    assert batch["labels"].dtype == torch.int64 and batch["labels"].shape == (256,)


def test_idx_files_written_here_raw_and_gzip(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (30, 5, 4), dtype=np.uint8)
    _write_idx(tmp_path / "train-images-idx3-ubyte", 0x803, images)
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", 0x801, np.arange(30) % 3)
    loaded = load_vision_datasets(VisionDataArguments(idx_dir=str(tmp_path), validation_split_percentage=0))
    assert loaded.eval is None and loaded.label_names == ["0", "1", "2"]
    np.testing.assert_array_equal(loaded.train[7]["image"], images[7])
    np.testing.assert_array_equal(read_idx(str(tmp_path / "train-images-idx3-ubyte"), 0x803), images)


@pytest.mark.parametrize(
    "name, magic, array, cut, hint",
    [
        ("train-images-idx3-ubyte", 0x803, np.zeros((4, 3, 3)), 5, "truncated"),
        ("train-images-idx3-ubyte.gz", 0x803, np.zeros((4, 3, 3)), 1, "truncated"),
        ("train-images-idx3-ubyte", 0x803, np.zeros((4, 3, 3)), 40, "12 bytes, shorter than its 16-byte header"),
        ("train-images-idx3-ubyte", 0x801, np.zeros(4), 0, "magic number 0x00000801, expected 0x00000803"),
    ],
)
def test_bad_idx_file_gives_a_clear_error(tmp_path, name, magic, array, cut, hint):
    path = _write_idx(tmp_path / name, magic, array, cut)
    with pytest.raises(ValueError, match=hint) as error:
        load_vision_datasets(VisionDataArguments(idx_dir=str(tmp_path)))
    assert str(path) in str(error.value)


def test_cut_gzip_stream_gives_a_clear_error(tmp_path):
    path = _write_idx(tmp_path / "train-images-idx3-ubyte.gz", 0x803, np.zeros((4, 3, 3)))
    path.write_bytes(path.read_bytes()[:-12])
    with pytest.raises(ValueError, match="Cannot decompress .*train-images-idx3-ubyte.gz.*Re-download"):
        load_vision_datasets(VisionDataArguments(idx_dir=str(tmp_path)))


def test_idx_label_count_mismatch(tmp_path):
    _write_idx(tmp_path / "train-images-idx3-ubyte", 0x803, np.zeros((4, 3, 3)))
    _write_idx(tmp_path / "train-labels-idx1-ubyte", 0x801, np.zeros(5))
    with pytest.raises(ValueError, match="5 labels but .* 4 images"):
        load_vision_datasets(VisionDataArguments(idx_dir=str(tmp_path)))


def test_idx_dir_without_the_expected_files_lists_its_content(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match=r"no train-images-idx3-ubyte.*\['notes.txt'\]"):
        load_vision_datasets(VisionDataArguments(idx_dir=str(tmp_path)))


# ----------------------------------------------------------------------------- imagefolder


def test_imagefolder_with_class_folders_mixed_modes_and_sizes(tmp_path):
    root = _write_image_folder(tmp_path / "pets")
    args = VisionDataArguments(train_dir=str(root), validation_split_percentage=0, cache_dir=str(tmp_path / "cache"))
    loaded = load_vision_datasets(args)
    assert len(loaded.train) == 6 and loaded.eval is None
    assert loaded.label_names == ["cat", "dog"] and loaded.num_channels == 3
    assert loaded.train.column_names == ["image", "label"]
    rows = [loaded.train[index] for index in range(len(loaded.train))]
    assert sorted(row["label"] for row in rows) == [0, 0, 0, 1, 1, 1]
    batch = ImageCollator(image_size=16)(rows)
    assert batch["pixel_values"].shape == (6, 3, 16, 16) and batch["pixel_values"].dtype == torch.uint8
    assert batch["labels"].tolist() == [row["label"] for row in rows]
    assert ImageCollator(image_size=8, num_channels=1)(rows)["pixel_values"].shape == (6, 1, 8, 8)
    with pytest.raises(ValueError, match="different sizes.*--image_size"):
        ImageCollator()(rows)


def test_imagefolder_validation_dir_and_held_out_split(tmp_path):
    root = _write_image_folder(tmp_path / "pets")
    val = _write_image_folder(tmp_path / "val")
    (val / "dog" / "f.png").unlink()
    cache_dir = str(tmp_path / "cache")
    loaded = load_vision_datasets(
        VisionDataArguments(train_dir=str(root), validation_dir=str(val), cache_dir=cache_dir)
    )
    assert (len(loaded.train), len(loaded.eval)) == (6, 5)
    assert loaded.description == f"imagefolder {root} (eval: {val}) (6 train / 5 eval)"
    held_out = load_vision_datasets(
        VisionDataArguments(train_dir=str(root), validation_split_percentage=50, cache_dir=cache_dir)
    )
    assert (len(held_out.train), len(held_out.eval)) == (3, 3)
    assert "held-out eval" in held_out.description
    paths = sorted(row["image"]["path"] for split in (held_out.train, held_out.eval) for row in split)
    assert paths == sorted(str(path) for path in root.rglob("*.png"))


def test_validation_dir_classes_are_aligned_with_train_by_name(tmp_path):
    root = _write_image_folder(tmp_path / "pets")
    (root / "fish").mkdir()
    Image.fromarray(_rgb((4, 4), 0)).save(root / "fish" / "g.png")
    val = tmp_path / "val"
    for index, name in enumerate(["cat", "fish"]):  # no "dog": ids 0, 1 here must become 0, 2
        (val / name).mkdir(parents=True)
        Image.fromarray(_rgb((4, 4), index)).save(val / name / "x.png")
    args = VisionDataArguments(train_dir=str(root), validation_dir=str(val), cache_dir=str(tmp_path / "cache"))
    loaded = load_vision_datasets(args)
    assert loaded.label_names == ["cat", "dog", "fish"]
    assert sorted((Path(row["image"]["path"]).parent.name, row["label"]) for row in loaded.eval) == [
        ("cat", 0),
        ("fish", 2),
    ]
    (val / "bird").mkdir()
    Image.fromarray(_rgb((4, 4), 2)).save(val / "bird" / "y.png")
    with pytest.raises(ValueError, match=r"eval split has classes \['bird'\] that the train split lacks"):
        load_vision_datasets(args)


def test_corrupt_image_is_named_when_collated(tmp_path):
    root = tmp_path / "shapes"
    for index in range(9):
        (root / "a").mkdir(parents=True, exist_ok=True)
        Image.fromarray(_rgb((8, 8), index)).save(root / "a" / f"{index}.png")
    (root / "b").mkdir()
    corrupt = root / "b" / "zz_corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 4)
    args = VisionDataArguments(train_dir=str(root), validation_split_percentage=0, cache_dir=str(tmp_path / "cache"))
    with pytest.raises(ValueError, match=str(corrupt)):  # the resolver's check finds it before training
        load_vision_datasets(args)
    # a file that goes bad after the check (or rows that bypass the resolver): the collator names it
    folder = datasets.load_dataset("imagefolder", data_dir=str(root), split="train", cache_dir=str(tmp_path / "cache"))
    rows = list(folder.cast_column("image", datasets.Image(decode=False)))
    assert rows[-1]["image"]["path"] == str(corrupt)
    ImageCollator()(rows[:-1])
    with pytest.raises(ValueError, match=f"Cannot decode image {corrupt}.*re-encode"):
        ImageCollator()(rows)


def test_emoji_captions_with_a_string_label_column(tmp_path_factory):
    args = VisionDataArguments(
        train_dir=str(EMOJI),
        label_column_name="group",
        validation_split_percentage=0,
        cache_dir=str(tmp_path_factory.mktemp("emoji-cache")),
    )
    loaded = load_vision_datasets(args)
    assert len(loaded.train) == EMOJI_COUNT and loaded.eval is None and loaded.num_channels == 3
    assert len(loaded.label_names) == 9 and loaded.label_names == sorted(loaded.label_names)
    assert "Smileys & Emotion" in loaded.label_names
    assert loaded.train.column_names == ["image", "label"]
    assert loaded.train.features["label"].names == loaded.label_names
    assert loaded.label_names[loaded.train[0]["label"]] == "Smileys & Emotion"  # the first emoji is "grinning face"
    batch = ImageCollator()([loaded.train[index] for index in range(8)])
    assert batch["pixel_values"].shape == (8, 3, 64, 64) and batch["labels"].dtype == torch.int64
    expected = np.asarray(Image.open(EMOJI / "images" / "00000.png").convert("RGB")).transpose(2, 0, 1)
    np.testing.assert_array_equal(batch["pixel_values"][0].numpy(), expected)


# ----------------------------------------------------------------------------- builtin digits


def test_builtin_digits_split_dtype_and_range(digits):
    assert (len(digits.train), len(digits.eval)) == (1617, 180)
    assert digits.num_channels == 1 and digits.label_names == [str(digit) for digit in range(10)]
    images = np.stack([row["image"] for row in digits.train])
    assert images.dtype == np.uint8 and images.shape == (1617, 8, 8)
    assert images.min() == 0 and images.max() == 255
    eval_counts = np.bincount([row["label"] for row in digits.eval], minlength=10)
    assert eval_counts.min() >= 17 and eval_counts.max() <= 19  # stratified: ~18 per class


def test_builtin_digits_split_is_deterministic_per_seed(digits):
    def eval_images(seed):
        loaded = load_vision_datasets(VisionDataArguments(split_seed=seed))
        return np.stack([row["image"] for row in loaded.eval])

    np.testing.assert_array_equal(eval_images(42), np.stack([row["image"] for row in digits.eval]))
    assert not np.array_equal(eval_images(0), eval_images(42))


def test_max_samples_take_the_first_rows_after_a_seeded_shuffle(digits):
    loaded = load_vision_datasets(VisionDataArguments(max_train_samples=100, max_eval_samples=20))
    assert (len(loaded.train), len(loaded.eval)) == (100, 20)
    expected = digits.train.shuffle(seed=42).select(range(100))
    np.testing.assert_array_equal(
        np.stack([row["image"] for row in loaded.train]), np.stack([row["image"] for row in expected])
    )
    assert loaded.train[0]["image"].dtype == np.uint8


# ----------------------------------------------------------------------------- native image size


def test_image_size_of_digits(digits):
    assert digits.image_size == 8 and digits.num_channels == 1


def test_image_size_of_fashion_mnist(fashion):
    assert fashion.image_size == 28 and fashion.num_channels == 1


def test_image_size_is_the_longer_side_of_the_leading_train_images(tmp_path):
    _write_idx(tmp_path / "train-images-idx3-ubyte", 0x803, np.zeros((3, 5, 4)))  # H=5, W=4
    assert (
        load_vision_datasets(VisionDataArguments(idx_dir=str(tmp_path), validation_split_percentage=0)).image_size == 5
    )
    # imagefolder rows come in path order: 8 leading greyscale 4x6 images, then a larger colour one
    root = tmp_path / "folder"
    (root / "a").mkdir(parents=True)
    for index in range(8):
        Image.fromarray(_rgb((4, 6), index)).convert("L").save(root / "a" / f"{index}.png")  # W=4, H=6
    (root / "b").mkdir()
    Image.fromarray(_rgb((30, 30), 8)).save(root / "b" / "z.png")
    args = VisionDataArguments(train_dir=str(root), validation_split_percentage=0, cache_dir=str(tmp_path / "cache"))
    loaded = load_vision_datasets(args)
    assert loaded.image_size == 6 and loaded.num_channels == 1  # both read from the same 8 leading images
    (root / "a" / "7.png").unlink()
    loaded = load_vision_datasets(args)
    assert loaded.image_size == 30 and loaded.num_channels == 3


# ----------------------------------------------------------------------------- Hub (faked: the Hub is offline here)


@pytest.fixture
def fake_hub(monkeypatch):
    """A Hub dataset with an encoded-image column named "img", a "fine_label" ClassLabel and an extra column."""
    encoded = []
    for seed in range(12):
        buffer = io.BytesIO()
        Image.fromarray(_rgb((6, 6), seed)).save(buffer, format="PNG")
        encoded.append({"bytes": buffer.getvalue(), "path": f"img_{seed}.png"})
    features = datasets.Features(
        {
            "img": datasets.Image(),
            "fine_label": datasets.ClassLabel(names=["x", "y", "z"]),
            "note": datasets.Value("string"),
        }
    )
    splits = {
        name: datasets.Dataset.from_dict(
            {
                "img": encoded[start:stop],
                "fine_label": [i % 3 for i in range(start, stop)],
                "note": ["n"] * (stop - start),
            },
            features=features,
        )
        for name, start, stop in (("train", 0, 9), ("test", 9, 12))
    }
    monkeypatch.setattr(datasets, "get_dataset_split_names", lambda name, config_name=None, **kwargs: list(splits))
    monkeypatch.setattr(datasets, "load_dataset", lambda name, config_name=None, split=None, **kwargs: splits[split])
    return encoded


def test_hub_dataset_columns_are_detected_and_renamed(fake_hub):
    loaded = load_vision_datasets(VisionDataArguments(dataset_name="someone/pictures"))
    assert (len(loaded.train), len(loaded.eval)) == (9, 3)
    assert loaded.train.column_names == ["image", "label"] and loaded.label_names == ["x", "y", "z"]
    assert loaded.train.features["image"] == datasets.Image(decode=False) and loaded.num_channels == 3
    assert loaded.description == "Hub dataset someone/pictures (9 train / 3 eval)"
    batch = ImageCollator()([loaded.eval[0]])
    np.testing.assert_array_equal(batch["pixel_values"][0].numpy(), _rgb((6, 6), 9).transpose(2, 0, 1))


def test_hub_unknown_eval_split_lists_the_splits(fake_hub):
    with pytest.raises(ValueError, match=r"'validation'.*available splits: \['train', 'test'\]"):
        load_vision_datasets(VisionDataArguments(dataset_name="someone/pictures", eval_split="validation"))


def test_hub_without_an_image_column_candidate(fake_hub):
    with pytest.raises(ValueError, match=r"columns \['img', 'fine_label', 'note'\].*--image_column_name"):
        load_vision_datasets(VisionDataArguments(dataset_name="someone/pictures", image_column_name="photo"))


def test_missing_labels_are_refused_for_evaluation_and_dropped_for_pretraining(monkeypatch, caplog):
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["x", "y"])})
    encoded = []
    for seed in range(4):
        buffer = io.BytesIO()
        Image.fromarray(_rgb((4, 4), seed)).save(buffer, format="PNG")
        encoded.append({"bytes": buffer.getvalue(), "path": f"{seed}.png"})
    splits = {
        "train": datasets.Dataset.from_dict({"image": encoded, "label": [0, 1, 0, 1]}, features=features),
        "test": datasets.Dataset.from_dict(
            {"image": encoded, "label": [-1] * 4}, features=features
        ),  # labels withheld
        "unlabeled": datasets.Dataset.from_dict(
            {"image": encoded, "label": [-1] * 4}, features=features
        ),  # as STL-10's
    }
    monkeypatch.setattr(datasets, "get_dataset_split_names", lambda name, config_name=None, **kwargs: list(splits))
    monkeypatch.setattr(datasets, "load_dataset", lambda name, config_name=None, split=None, **kwargs: splits[split])
    with pytest.raises(ValueError, match=r"eval split has missing labels.*--eval_split"):
        load_vision_datasets(VisionDataArguments(dataset_name="someone/contest"))
    assert len(load_vision_datasets(VisionDataArguments(dataset_name="someone/contest", eval_split="train")).eval) == 4
    with caplog.at_level("WARNING", logger="hfssl.data.vision"):
        loaded = load_vision_datasets(
            VisionDataArguments(dataset_name="someone/contest", train_split="unlabeled", eval_split="train")
        )
    assert loaded.train.column_names == ["image"] and len(loaded.train) == 4  # every image kept, for pretraining
    assert "without labels" in caplog.text


def test_hub_string_label_column_by_name(fake_hub):
    loaded = load_vision_datasets(VisionDataArguments(dataset_name="someone/pictures", label_column_name="note"))
    assert loaded.label_names == ["n"] and {row["label"] for row in loaded.train} == {0}


def test_local_dataset_directory_through_the_load_dataset_path(tmp_path):
    root = tmp_path / "splits"
    _write_image_folder(root / "train")
    _write_image_folder(root / "test")
    (root / "test" / "cat" / "a.png").unlink()
    loaded = load_vision_datasets(VisionDataArguments(dataset_name=str(root), cache_dir=str(tmp_path / "cache")))
    assert (len(loaded.train), len(loaded.eval)) == (6, 5) and loaded.label_names == ["cat", "dog"]
    assert loaded.description == f"local dataset {root} (6 train / 5 eval)"
    from_train_dir = load_vision_datasets(VisionDataArguments(train_dir=str(root), cache_dir=str(tmp_path / "cache")))
    assert (len(from_train_dir.train), len(from_train_dir.eval)) == (6, 5)


def test_hub_is_unreachable_offline():
    with pytest.raises(ConnectionError):
        load_vision_datasets(VisionDataArguments(dataset_name="uoft-cs/cifar10"))


# ----------------------------------------------------------------------------- argument errors


@pytest.mark.parametrize(
    "kwargs, hint",
    [
        (
            {"image_column_name": "picture"},
            r"Image column 'picture' does not exist.*\['image', 'label'\].*--image_column_name",
        ),
        (
            {"label_column_name": "class"},
            r"Label column 'class' does not exist.*\['image', 'label'\].*--label_column_name",
        ),
        ({"max_train_samples": 0}, "train dataset is empty after --max_train_samples 0"),
        ({"max_eval_samples": 0}, "eval dataset is empty after --max_eval_samples 0"),
        ({"eval_split": "test"}, r"'test' \(--eval_split\) does not exist.*available splits: \['train'\]"),
        ({"train_split": "training"}, r"'training' \(--train_split\) does not exist.*\['train'\]"),
        ({"dataset_name": "builtin:cifar"}, "Unknown built-in dataset 'builtin:cifar'; available: builtin:digits"),
        ({"dataset_name": None}, "No data source: pass --dataset_name"),
        ({"train_dir": ".", "idx_dir": "."}, "Both --train_dir and --idx_dir"),
        ({"validation_dir": "."}, "--validation_dir is only used together with --train_dir"),
        ({"idx_dir": "/no/such/dir"}, "--idx_dir '/no/such/dir' is not a directory"),
        ({"validation_split_percentage": 100}, r"must be in \[0, 100\)"),
    ],
)
def test_bad_arguments_raise_with_the_fix(kwargs, hint):
    with pytest.raises(ValueError, match=hint):
        load_vision_datasets(VisionDataArguments(**kwargs))


def test_eval_split_missing_the_label_column(tmp_path):
    flat = tmp_path / "flat"  # no class subfolders, so no label column
    flat.mkdir()
    Image.fromarray(_rgb((4, 4), 0)).save(flat / "one.png")
    args = VisionDataArguments(
        train_dir=str(_write_image_folder(tmp_path / "pets")), validation_dir=str(flat), cache_dir=str(tmp_path / "c")
    )
    with pytest.raises(ValueError, match=r"eval split lacks column\(s\) \['label'\].*--label_column_name"):
        load_vision_datasets(args)


@pytest.mark.parametrize("validation_split_percentage", [0, 10])
def test_empty_source_dataset(tmp_path, validation_split_percentage):
    _write_idx(tmp_path / "train-images-idx3-ubyte", 0x803, np.zeros((0, 3, 3)))
    args = VisionDataArguments(idx_dir=str(tmp_path), validation_split_percentage=validation_split_percentage)
    with pytest.raises(ValueError, match="The train dataset is empty; check the data source"):
        load_vision_datasets(args)


def test_arguments_parse_with_hfargumentparser_next_to_training_arguments(tmp_path):
    parser = HfArgumentParser((VisionDataArguments, TrainingArguments))
    argv = [
        "--idx_dir",
        "/data",
        "--max_train_samples",
        "5",
        "--seed",
        "7",
        "--split_seed",
        "3",
        "--output_dir",
        str(tmp_path),
    ]
    args, training_args = parser.parse_args_into_dataclasses(argv)
    assert args.idx_dir == "/data" and args.max_train_samples == 5 and args.dataset_name == "builtin:digits"
    assert (args.split_seed, training_args.seed) == (3, 7)
    assert all(field.metadata.get("help") for field in VisionDataArguments.__dataclass_fields__.values())


# ----------------------------------------------------------------------------- collator


def test_collator_round_trips_every_input_type_exactly():
    rgb = _rgb((5, 4), 0)  # (H, W, C) = (4, 5, 3)
    grey = rgb[..., 0].copy()
    expected_rgb = torch.from_numpy(rgb).permute(2, 0, 1)
    for value in (rgb, Image.fromarray(rgb), torch.from_numpy(rgb).permute(2, 0, 1), rgb.tolist()):
        batch = ImageCollator()([{"image": value, "label": 3}])
        assert batch["pixel_values"].dtype == torch.uint8 and batch["pixel_values"].is_contiguous()
        assert torch.equal(batch["pixel_values"][0], expected_rgb)
        assert batch["labels"].tolist() == [3] and batch["labels"].dtype == torch.int64
    for value in (grey, grey[..., None], Image.fromarray(grey), torch.from_numpy(grey), grey.astype(np.int64)):
        pixel_values = ImageCollator()([{"image": value}])["pixel_values"]
        assert pixel_values.shape == (1, 1, 4, 5) and torch.equal(pixel_values[0, 0], torch.from_numpy(grey))


def test_collator_channel_conversions():
    rgb = _rgb((6, 6), 1)
    grey = rgb[..., 1].copy()
    rgba = np.concatenate([rgb, np.full((6, 6, 1), 7, np.uint8)], axis=2)
    mixed = ImageCollator()([{"image": grey}, {"image": Image.fromarray(rgba)}, {"image": rgba}])["pixel_values"]
    assert mixed.shape == (3, 3, 6, 6)
    assert torch.equal(mixed[0], torch.from_numpy(grey).expand(3, 6, 6))
    assert torch.equal(mixed[1], torch.from_numpy(rgb).permute(2, 0, 1)) and torch.equal(mixed[2], mixed[1])
    as_grey = ImageCollator(num_channels=1)([{"image": rgb}, {"image": Image.fromarray(rgb)}])["pixel_values"]
    expected = np.array(Image.fromarray(rgb).convert("L"))
    assert torch.equal(as_grey[0, 0], torch.from_numpy(expected)) and torch.equal(as_grey[1], as_grey[0])
    palette = Image.fromarray(rgb).convert("P")
    from_palette = ImageCollator()([{"image": palette}])["pixel_values"]
    assert torch.equal(from_palette[0], torch.from_numpy(np.array(palette.convert("RGB"))).permute(2, 0, 1))


def test_collator_resize_and_labels():
    image = _rgb((10, 7), 2)
    batch = ImageCollator(image_size=4)([{"image": image, "label": 1}, {"image": image[:4, :4], "label": None}])
    expected = np.array(Image.fromarray(image).resize((4, 4), Image.Resampling.BILINEAR))
    assert torch.equal(batch["pixel_values"][0], torch.from_numpy(expected).permute(2, 0, 1))
    assert torch.equal(
        batch["pixel_values"][1], torch.from_numpy(image[:4, :4]).permute(2, 0, 1)
    )  # already 4x4: untouched
    assert "labels" not in batch


@pytest.mark.parametrize(
    "value, hint",
    [
        (np.zeros((4, 4), np.float32), "dtype float32; expected integers in 0..255"),
        (np.full((4, 4), 300), "expected integers in 0..255"),
        (np.zeros((4, 4, 7), np.uint8), r"shape \(4, 4, 7\)"),
        ({"bytes": b"garbage", "path": "photo.jpg"}, "Cannot decode image photo.jpg"),
        ({"bytes": None, "path": None}, "neither 'bytes' nor 'path'"),
        ("cat", r"Unsupported image array of shape \(\)"),
    ],
)
def test_collator_rejects_bad_images(value, hint):
    with pytest.raises(ValueError, match=hint):
        ImageCollator()([{"image": value}])


def test_collator_arguments():
    with pytest.raises(ValueError, match="num_channels must be 1"):
        ImageCollator(num_channels=4)
    with pytest.raises(ValueError, match="image_size must be a positive"):
        ImageCollator(image_size=0)


def test_collator_resizes_only_mixed_batches_when_asked():
    small = {"image": np.zeros((10, 10), dtype=np.uint8), "label": 0}
    large = {"image": np.zeros((20, 20), dtype=np.uint8), "label": 1}
    collator = ImageCollator(image_size=16, resize_mixed_only=True)
    assert collator([small, small])["pixel_values"].shape == (2, 1, 10, 10)  # uniform: native size
    assert collator([small, large])["pixel_values"].shape == (2, 1, 16, 16)  # mixed: brought to image_size
    assert ImageCollator(image_size=16)([small, small])["pixel_values"].shape == (2, 1, 16, 16)
