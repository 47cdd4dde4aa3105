#!/usr/bin/env python
"""Seconds per 10,000 images of the pre-training image check, and its share of a short SimCLR run.

    python benchmarks/image_check_speed.py
    python benchmarks/image_check_speed.py --fmnist_images 60000 --train_steps 20

Two real image folders: the shared emoji-captions PNGs (3,655 RGB 64x64, read in place) and
``--fmnist_images`` Fashion-MNIST train images written as greyscale 28x28 PNGs into a temporary
imagefolder (class subfolders). For each, :func:`hfssl.data.image_check.find_bad_images` runs
cold (no cache file; the files themselves are in the OS page cache, as they are after
``load_dataset`` listed them) with 1 worker and with one per core, then warm (every answer from
the cache). The ``load_dataset("imagefolder")`` time is printed beside it for scale.

The share of a run: ``recipes/pretrain_vision.py`` trains SimCLR (resnet-tiny, 28 px, batch 256)
for ``--train_steps`` steps on the Fashion-MNIST folder; its ``train_samples_per_second`` gives
the training time of one epoch over the folder, against which the cold check is set. Prints a
Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import datasets
import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "recipes"))

from hfssl.data.idx import load_idx_splits  # noqa: E402
from hfssl.data.image_check import find_bad_images, num_check_workers  # noqa: E402

SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def write_fashion_mnist_folder(root: Path, count: int) -> Path:
    """The first ``count`` Fashion-MNIST train images as PNGs in class subfolders of ``root``."""
    train = load_idx_splits(str(SHARED_DATA / "fashion-mnist"))["train"].with_format("numpy")
    names = train.features["label"].names
    rows = train[:count]
    for index, (image, label) in enumerate(zip(rows["image"], rows["label"])):
        folder = root / names[label].replace("/", "-")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.asarray(image, dtype=np.uint8)).save(folder / f"{index:05d}.png")
    return root


def time_check(directory: Path, cache_root: Path, workers: list[int]) -> dict:
    """Seconds per 10,000 images: cold with each worker count, then warm; and the load_dataset time."""
    start = time.perf_counter()
    dataset = datasets.load_dataset("imagefolder", data_dir=str(directory), split="train", cache_dir=str(cache_root))
    result = {"images": len(dataset), "load_dataset_s": time.perf_counter() - start}
    per_10k = 10_000 / len(dataset)
    cache_file = None
    for count in workers:
        cache_file = str(cache_root / f"check-{count}.json")
        start = time.perf_counter()
        bad = find_bad_images(dataset, cache_file, num_workers=count)
        result[f"cold_{count}"] = (time.perf_counter() - start) * per_10k
        assert not bad, bad
    start = time.perf_counter()
    find_bad_images(dataset, cache_file)
    result["warm"] = (time.perf_counter() - start) * per_10k
    return result


def train_images_per_second(directory: Path, output_dir: Path, steps: int) -> tuple[float, float]:
    """(train images/s, wall seconds) of a short SimCLR run of pretrain_vision.py on ``directory``."""
    import pretrain_vision

    start = time.perf_counter()
    pretrain_vision.main([
        "--method", "simclr", "--backbone", "resnet-tiny", "--image_size", "28", "--train_dir", str(directory),
        "--validation_split_percentage", "0", "--max_steps", str(steps), "--per_device_train_batch_size", "256",
        "--final_protocols", "", "--baselines", "false", "--save_strategy", "no", "--use_cpu", "--report_to", "none",
        "--disable_tqdm", "true", "--dataloader_num_workers", "0", "--cache_dir", str(output_dir / "cache"),
        "--output_dir", str(output_dir / "run"),
    ])  # fmt: skip
    wall = time.perf_counter() - start
    results = json.loads((output_dir / "run" / "all_results.json").read_text())
    return results["train_samples_per_second"], wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fmnist_images", type=int, default=10_000)
    parser.add_argument("--train_steps", type=int, default=10)
    args = parser.parse_args()
    cores = num_check_workers()
    workers = sorted({1, cores})
    print(f"Machine: {platform.machine()}, {cores} usable cores, Python {platform.python_version()}")
    print("Load average before (1, 5, 15 min): " + ", ".join(f"{load:.1f}" for load in os.getloadavg()))
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        folders = {
            "emoji-captions (RGB 64x64)": SHARED_DATA / "emoji-captions",
            f"Fashion-MNIST as PNG (L 28x28, {args.fmnist_images})": write_fashion_mnist_folder(
                scratch / "fmnist", args.fmnist_images
            ),
        }
        rows = {
            name: time_check(folder, scratch / f"cache-{index}", workers)
            for index, (name, folder) in enumerate(folders.items())
        }
        images_per_s, wall = train_images_per_second(folders[list(folders)[1]], scratch, args.train_steps)
    header = " | ".join(f"cold, {count} worker{'s' * (count > 1)}" for count in workers)
    print(f"\n| folder | images | load_dataset s | {header} | warm (cached) |")
    print("|---|---:|---:|" + "---:|" * len(workers) + "---:|")
    for name, row in rows.items():
        cold = " | ".join(f"{row[f'cold_{count}']:.2f} s" for count in workers)
        print(f"| {name} | {row['images']} | {row['load_dataset_s']:.2f} | {cold} | {row['warm']:.3f} s |")
    fmnist = rows[list(rows)[1]]
    check_s = fmnist[f"cold_{cores}"] * fmnist["images"] / 10_000
    epoch_s = fmnist["images"] / images_per_s
    print(
        f"\nSimCLR resnet-tiny 28 px, batch 256, {args.train_steps} steps: {images_per_s:.0f} train images/s "
        f"({wall:.1f} s wall for the whole recipe run, check included). Cold check of the {fmnist['images']} images: "
        f"{check_s:.2f} s = {100 * check_s / (check_s + epoch_s):.1f}% of a 1-epoch run over them "
        f"({epoch_s:.1f} s of training), {100 * check_s / (check_s + 18 * epoch_s):.2f}% of an 18-epoch run; "
        "warm: the cached check costs "
        f"{fmnist['warm'] * fmnist['images'] / 10_000:.3f} s."
    )
    print("Load average after (1, 5, 15 min): " + ", ".join(f"{load:.1f}" for load in os.getloadavg()))


if __name__ == "__main__":
    main()
