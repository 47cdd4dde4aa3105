#!/usr/bin/env python
"""SimCLR on Fashion-MNIST: pretrained vs the same backbone at random init vs raw pixels.

    python benchmarks/simclr_fashion_mnist.py --idx_dir ../shared/data/fashion-mnist \
        --num_train_epochs 18 --output_dir benchmarks/results/simclr-fmnist
    python benchmarks/simclr_fashion_mnist.py --backbone resnet --num_train_epochs 30 --channels_last false \
        --backbone_config_overrides "num_channels=1,embedding_size=32,hidden_sizes=[64,128],depths=[1,1],layer_type=basic"

Pretrains with recipes/pretrain_vision.py on the 60k train split, then measures kNN (k=200,
T=0.1) and linear-probe accuracy on the 10k test split for (1) the pretrained backbone, (2) the
same architecture at random initialisation, (3) raw pixels. Prints a Markdown table and writes
``benchmark.json`` in --output_dir.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np
import torch

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO_ROOT, "recipes"))

import evaluate_vision  # noqa: E402
import pretrain_vision  # noqa: E402

from hfssl.data import VisionDataArguments, load_vision_datasets  # noqa: E402
from hfssl.evaluation.knn import knn_accuracy  # noqa: E402
from hfssl.evaluation.linear_probe import linear_probe_accuracy  # noqa: E402

# A 2-stage RegNet-X whose stem is the only stride-2 layer before the last stage: 14x14 maps in stage 1
# and 7x7 in stage 2 on a 28 px image, where ResNet's stem (7x7 stride 2 + max-pool) leaves 7x7 and 4x4.
REGNET_OVERRIDES = "num_channels=1,embedding_size=32,hidden_sizes=[32,128],depths=[1,1],groups_width=16,downsample_in_first_stage=false"
RESNET_OVERRIDES = "num_channels=1,embedding_size=32,hidden_sizes=[64,128],depths=[1,1],layer_type=basic"


def raw_pixel_metrics(idx_dir: str) -> dict:
    """kNN and linear probe on the 784 raw pixels scaled to [0, 1]."""
    data = load_vision_datasets(VisionDataArguments(idx_dir=idx_dir))
    as_matrix = lambda dataset: torch.from_numpy(
        np.stack(dataset.with_format("numpy")["image"]).reshape(len(dataset), -1) / 255.0
    ).float()  # noqa: E731
    train_x, eval_x = as_matrix(data.train), as_matrix(data.eval)
    train_y, eval_y = torch.tensor(data.train["label"]), torch.tensor(data.eval["label"])
    return {
        "knn_accuracy": knn_accuracy(train_x, train_y, eval_x, eval_y),
        **linear_probe_accuracy(train_x, train_y, eval_x, eval_y),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--idx_dir", default=os.path.join(REPO_ROOT, "..", "shared", "data", "fashion-mnist"))
    parser.add_argument("--output_dir", default=os.path.join(REPO_ROOT, "benchmarks", "results", "simclr-fmnist"))
    parser.add_argument("--backbone", default="regnet")
    parser.add_argument(
        "--backbone_config_overrides",
        default=REGNET_OVERRIDES,
        help=f"default: the RegNet; the ResNet was {RESNET_OVERRIDES!r}",
    )
    parser.add_argument("--num_train_epochs", default="18")
    parser.add_argument("--channels_last", default="true")
    parser.add_argument("--batch_size", default="256")
    parser.add_argument("--learning_rate", default="3e-3")
    parser.add_argument("--extra", default="", help="more recipe arguments, space-separated")
    args = parser.parse_args()
    common = ["--idx_dir", args.idx_dir, "--report_to", "none", "--disable_tqdm", "true", "--seed", "0"]
    if not torch.cuda.is_available():
        common.append("--use_cpu")

    start = time.time()
    pretrained = pretrain_vision.main(
        [
            "--method",
            "simclr",
            "--backbone",
            args.backbone,
            "--backbone_config_overrides",
            args.backbone_config_overrides,
            "--config_overrides",
            "projection_hidden_dim=512,projection_dim=128,tau=0.1,min_crop_scale=0.4",
            "--image_size",
            "28",
            "--output_dir",
            args.output_dir,
            "--per_device_train_batch_size",
            args.batch_size,
            "--num_train_epochs",
            args.num_train_epochs,
            "--learning_rate",
            args.learning_rate,
            "--weight_decay",
            "1e-4",
            "--warmup_steps",
            "0.05",
            "--lr_scheduler_type",
            "cosine",
            "--logging_steps",
            "50",
            "--save_strategy",
            "no",
            "--per_device_eval_batch_size",
            "1024",
            "--channels_last",
            args.channels_last,
            *common,
            *args.extra.split(),
        ]
    )
    train_seconds = json.load(open(os.path.join(args.output_dir, "train_results.json")))["train_runtime"]
    random_init = evaluate_vision.main(
        [
            "--model_name_or_path",
            args.output_dir,
            "--random_init",
            "--protocol",
            "knn,linear",
            "--output_dir",
            os.path.join(args.output_dir, "random-init"),
            "--per_device_eval_batch_size",
            "1024",
            *common,
        ]
    )
    pixels = raw_pixel_metrics(args.idx_dir)
    results = {
        "machine": torch.cuda.get_device_name()
        if torch.cuda.is_available()
        else f"{platform.machine()} CPU, {torch.get_num_threads()} threads",
        "pretraining_seconds": train_seconds,
        "total_seconds": time.time() - start,
        "pretrained": pretrained,
        "random_init": random_init,
        "raw_pixels": pixels,
    }
    with open(os.path.join(args.output_dir, "benchmark.json"), "w") as handle:
        json.dump(results, handle, indent=2)
    print(
        f"\nSimCLR, Fashion-MNIST, {args.num_train_epochs} epochs in {train_seconds / 60:.1f} min on {results['machine']}\n"
    )
    print("| features | kNN accuracy (test) | linear probe accuracy (test) |")
    print("|---|---|---|")
    for name in ("pretrained", "random_init", "raw_pixels"):
        r = results[name]
        print(f"| {name} | {100 * r['knn_accuracy']:.2f}% | {100 * r['linear_probe_accuracy']:.2f}% |")


if __name__ == "__main__":
    main()
