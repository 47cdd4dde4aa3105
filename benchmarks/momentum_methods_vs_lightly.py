#!/usr/bin/env python
"""hfssl's image methods beside lightly's implementations: same backbone, batch, data and CPU budget.

    # both sides, every method, 10 minutes of training each (run in the main env)
    python benchmarks/momentum_methods_vs_lightly.py --side both --budget_minutes 10 \
        --output_dir benchmarks/results/momentum-vs-lightly
    # one method, one side; a smoke run of 3 steps on 512 images
    python benchmarks/momentum_methods_vs_lightly.py --side both --methods byol --max_steps 3 \
        --max_train_samples 512 --max_eval_samples 256 --batch_size 32 --output_dir /tmp/mvl

Every method of ``--methods`` (simclr, byol, simsiam, moco_v2, moco_v3, dino, barlow_twins, vicreg, swav) is
pretrained on the Fashion-MNIST train split twice, back to back: by hfssl (``recipes/pretrain_vision.py``) and
by a plain PyTorch loop built from lightly's losses, heads, momentum utilities and transforms, in a subprocess
run with ``--lightly_python`` (a separate venv, see ``../shared/docs/environment.md``). Both sides train the
same transformers ResNet (the config is built once by hfssl, saved, and loaded by the lightly side), with the
same head sizes and loss settings (:data:`SETTINGS`; the hfssl defaults the lightly side mirrors are in the
``*_DEFAULTS`` dicts), batch size, AdamW learning rate, weight decay, warmup + cosine schedule and gradient
clipping (1.0, the Trainer's default).

Budget: each side first times ``--calibration_steps`` steps (hfssl: a throwaway run of the recipe; lightly:
steps on the same process, after which the weights and optimizer are reset) and sets ``max_steps`` to
``budget / median step time``, so its learning-rate, momentum and teacher schedules run to their end;
a wall-clock callback (hfssl) and a check in the loop (lightly) also stop at 1.1x the budget.
``--max_steps N`` skips the calibration.

Both sides' backbones are saved with ``save_pretrained`` (with the same image processor) and evaluated by
the same code in the main env, with hfssl's evaluation: weighted kNN (k=200 and k=20, T=0.1) and the
linear probe, on the test split, beside the same architecture at random init and raw pixels.
Prints a Markdown table and writes ``benchmark.json`` in --output_dir.

Settings that differ between the sides (lightly 1.6 has no equivalent): the lightly side copies the
student for the teacher/target/key networks, as the papers do (a deepcopy of the backbone, the heads rebuilt
and loaded with the student's weights: DINO's weight-normed head refuses deepcopy); lightly's own benchmark
scripts build teacher heads afresh; its losses run with ``gather_distributed=False`` (one process here);
lightly has no MoCo v3 heads or loss, so its MoCo v3 uses lightly's generic ``ProjectionHead`` blocks in
the paper's layout and ``NTXentLoss`` (which also takes the other view's queries as negatives);
``DINOLoss`` warms the teacher temperature up per whole epoch (hfssl per step). lightly's augmentations
run on PIL images in ``--lightly_num_workers`` DataLoader workers, hfssl's on tensors in the training step.
Gaussian blur is off on both sides at 32 px and below (hfssl's rule, the papers' CIFAR setting), decided per
crop size (SwAV's local crops get a second ``SwaVTransform`` when their rule differs from the global crops').

Barlow Twins and VICReg match: lightly's ``BarlowTwinsLoss`` standardises with ``F.batch_norm`` (biased variance,
eps 1e-5) and divides the cross-correlation by N, as hfssl's; ``VICRegLoss`` averages the two variance hinges
(unbiased variance, eps 1e-4) and sums the two covariance terms (each / D), as hfssl's, with gamma fixed at 1
(hfssl's ``variance_target`` default). Their lightly projectors give the last Linear a bias (hfssl: none), which
the batch standardisation (Barlow Twins) and the differences and centring (VICReg) cancel. For SwAV, lightly's
``SwaVPrototypes`` is a Linear *with* a bias (hfssl's and the paper's have none): ``normalize()`` rescales only
the weights, and the learnt per-prototype bias shifts the swapped prediction's logits (the Sinkhorn codes are
unchanged by it: the row normalisation removes it); lightly freezes the prototypes for the first epoch of steps
with ``requires_grad_(False)`` in ``forward(x, step)``, so their gradients stay out of the clipping norm (hfssl
drops them after clipping); its Sinkhorn-Knopp runs in the linear domain (hfssl's in the log domain, the same
codes at epsilon 0.05). Both sides normalise the prototypes around every step (lightly before, as its example;
hfssl after) and run the projection head once over all crops, the backbone once per crop size; no queue.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_LIGHTLY_PYTHON = "/work/venvs/lightly/bin/python"
LIGHTLY_METHODS = ("simclr", "byol", "simsiam", "moco_v2", "moco_v3", "dino", "barlow_twins", "vicreg", "swav")
# Methods lightly does not ship (the classic pretext tasks): hfssl's side only, beside the same baselines.
HFSSL_ONLY_METHODS = ("rotation", "relative_position", "jigsaw", "cpc")
ALL_METHODS = LIGHTLY_METHODS + HFSSL_ONLY_METHODS

# Head sizes and loss settings, identical on both sides (hfssl config field names), sized for a small
# backbone on a CPU; fields left out keep hfssl's defaults, which the lightly side mirrors.
SETTINGS: dict[str, dict] = {
    "simclr": {"projection_hidden_dim": 512, "projection_dim": 128, "tau": 0.1},
    "byol": {
        "projection_hidden_dim": 1024,
        "projection_dim": 256,
        "prediction_hidden_dim": 1024,
        "base_momentum": 0.99,
    },
    "simsiam": {"projection_hidden_dim": 512, "projection_dim": 512, "prediction_hidden_dim": 128},
    "moco_v2": {"projection_hidden_dim": 512, "projection_dim": 128, "queue_size": 4096, "momentum": 0.99, "tau": 0.2},
    "moco_v3": {
        "projection_hidden_dim": 1024,
        "projection_dim": 256,
        "prediction_hidden_dim": 1024,
        "tau": 0.2,
        "base_momentum": 0.99,
    },
    "dino": {
        "output_dim": 4096,
        "hidden_dim": 512,
        "bottleneck_dim": 128,
        "num_local_crops": 4,
        "teacher_temperature_warmup_epochs": 30.0,
        "base_momentum": 0.996,
    },
    "barlow_twins": {"projection_hidden_dim": 1024, "projection_dim": 1024, "off_diagonal_weight": 0.005},
    "vicreg": {"projection_hidden_dim": 1024, "projection_dim": 1024},
    # num_prototypes explicit: the recipe would otherwise lower it to one per 16 training images (hfssl only)
    "swav": {"projection_hidden_dim": 512, "projection_dim": 128, "num_prototypes": 512, "num_local_crops": 4},
    # the papers' defaults (hfssl's); nothing to mirror
    "rotation": {},
    "relative_position": {},
    "jigsaw": {},
    "cpc": {},
}
# hfssl defaults the lightly side needs to mirror (read from the configs in the main env, fixed here for the worker)
DINO_DEFAULTS = {
    "student_temperature": 0.1,
    "teacher_temperature": 0.07,
    "warmup_teacher_temperature": 0.04,
    "center_momentum": 0.9,
    "base_weight_decay": 0.04,
    "final_weight_decay": 0.4,
    "freeze_last_layer_epochs": 1,
    "local_crop_scale": (0.05, 0.4),
    "global_crop_scale": (0.4, 1.0),
}
BARLOW_TWINS_DEFAULTS = {"min_crop_scale": 0.08}
VICREG_DEFAULTS = {
    "invariance_weight": 25.0,
    "variance_weight": 25.0,
    "covariance_weight": 1.0,
    "variance_eps": 1e-4,
    "min_crop_scale": 0.08,
}
SWAV_DEFAULTS = {
    "temperature": 0.1,
    "sinkhorn_epsilon": 0.05,
    "sinkhorn_iterations": 3,
    "global_crop_scale": (0.14, 1.0),
    "local_crop_scale": (0.05, 0.14),
    "freeze_prototypes_epochs": 1.0,
}
GREYSCALE_NORMALIZE = {"mean": [0.5], "std": [0.5]}


def config_overrides(method: str) -> str:
    return ",".join(f"{key}={value}" for key, value in SETTINGS[method].items())


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", choices=("hfssl", "lightly", "both"), default="both")
    parser.add_argument("--methods", default=",".join(ALL_METHODS), help=f"comma-separated, among {ALL_METHODS}")
    parser.add_argument("--idx_dir", default=os.path.join(REPO_ROOT, "..", "shared", "data", "fashion-mnist"))
    parser.add_argument(
        "--output_dir", default=os.path.join(REPO_ROOT, "benchmarks", "results", "momentum-vs-lightly")
    )
    parser.add_argument("--budget_minutes", type=float, default=10.0, help="training wall clock per method and side")
    parser.add_argument("--max_steps", type=int, default=None, help="fixed step count (skips the calibration)")
    parser.add_argument("--calibration_steps", type=int, default=20)
    parser.add_argument("--backbone", default="resnet-tiny", help="hfssl preset or transformers model type")
    parser.add_argument("--backbone_config_overrides", default="")
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--learning_rate", type=float, default=3e-3)
    parser.add_argument("--weight_decay", type=float, default=1e-4)
    parser.add_argument("--warmup_ratio", type=float, default=0.05)
    parser.add_argument("--max_grad_norm", type=float, default=1.0)
    parser.add_argument("--max_train_samples", type=int, default=None)
    parser.add_argument("--max_eval_samples", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baselines", default="true", help="also evaluate random init and raw pixels")
    parser.add_argument("--lightly_python", default=DEFAULT_LIGHTLY_PYTHON)
    parser.add_argument("--lightly_num_workers", type=int, default=2)
    parser.add_argument("--hfssl_extra", default="", help="more pretrain_vision.py arguments, space-separated")
    parser.add_argument("--worker", action="store_true", help="internal: the lightly training loop (lightly venv)")
    parser.add_argument("--method", help="internal: the worker's method")
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------------------------------
# main env: shared inputs, the hfssl side, evaluation, the table
# ---------------------------------------------------------------------------------------------------
def prepare_shared(args):
    """The data (subsampled as the recipe does), the backbone config and image processor, written once."""
    import numpy as np

    from hfssl.backbones import build_backbone_config
    from hfssl.data import VisionDataArguments, load_vision_datasets
    from hfssl.preprocessing import make_image_processor

    data = load_vision_datasets(
        VisionDataArguments(
            idx_dir=args.idx_dir, max_train_samples=args.max_train_samples, max_eval_samples=args.max_eval_samples
        )
    )
    shared = os.path.join(args.output_dir, "shared")
    os.makedirs(shared, exist_ok=True)
    images = np.stack(data.train.with_format("numpy")["image"]).astype(np.uint8)
    np.save(os.path.join(shared, "train_images.npy"), images.reshape(len(data.train), *images.shape[-2:]))
    config = build_backbone_config(args.backbone, args.backbone_config_overrides or None, args.image_size, 1)
    config.save_pretrained(os.path.join(shared, "backbone_config"))
    make_image_processor(args.image_size, 1).save_pretrained(os.path.join(shared, "backbone_config"))
    return data, shared


def make_budget_trainer(base, budget_s: float, step_times: list):
    """``base`` (SSLTrainer) with a callback that records step times and stops at 1.1x ``budget_s``."""
    from transformers import TrainerCallback

    class WallClockBudget(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self.start = self.last = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            now = time.perf_counter()
            step_times.append(now - self.last)
            self.last = now
            if budget_s and now - self.start > 1.1 * budget_s:
                control.should_training_stop = True

    class BudgetTrainer(base):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.add_callback(WallClockBudget())

    return BudgetTrainer


def median_step_time(step_times: list) -> float:
    warm = step_times[3:] if len(step_times) > 5 else step_times
    return statistics.median(warm)


def run_hfssl(args, method: str, shared: str) -> dict:
    """pretrain_vision.main with the shared settings; calibration first unless --max_steps."""
    sys.path.insert(0, os.path.join(REPO_ROOT, "recipes"))
    import pretrain_vision
    import torch

    from hfssl.training import SSLTrainer

    out = os.path.join(args.output_dir, method, "hfssl")
    budget_s = 60 * args.budget_minutes

    def train(steps: int, output_dir: str, budget: float):
        step_times: list = []
        pretrain_vision.SSLTrainer = make_budget_trainer(SSLTrainer, budget, step_times)
        argv = [
            "--method", method, "--backbone", args.backbone, "--image_size", str(args.image_size),
            "--idx_dir", args.idx_dir, "--output_dir", output_dir,
            "--per_device_train_batch_size", str(args.batch_size), "--max_steps", str(steps),
            "--learning_rate", str(args.learning_rate), "--weight_decay", str(args.weight_decay),
            "--warmup_steps", str(args.warmup_ratio), "--lr_scheduler_type", "cosine",
            "--max_grad_norm", str(args.max_grad_norm), "--logging_steps", "50", "--save_strategy", "no",
            "--final_protocols", "", "--baselines", "false", "--report_to", "none", "--disable_tqdm", "true",
            "--seed", str(args.seed), "--per_device_eval_batch_size", "1024",
        ]  # fmt: skip
        if config_overrides(method):
            argv += ["--config_overrides", config_overrides(method)]
        if args.backbone_config_overrides:
            argv += ["--backbone_config_overrides", args.backbone_config_overrides]
        for flag, value in (
            ("--max_train_samples", args.max_train_samples),
            ("--max_eval_samples", args.max_eval_samples),
        ):
            if value is not None:
                argv += [flag, str(value)]
        if not torch.cuda.is_available():
            argv.append("--use_cpu")
        try:
            pretrain_vision.main(argv + args.hfssl_extra.split())
        finally:
            pretrain_vision.SSLTrainer = SSLTrainer
        return step_times

    steps, calibration = args.max_steps, None
    if steps is None:
        times = train(args.calibration_steps, os.path.join(args.output_dir, method, "hfssl-calibration"), 0)
        calibration = median_step_time(times)
        steps = max(1, int(budget_s / calibration))
    step_times = train(steps, out, 0 if args.max_steps else budget_s)
    results = json.load(open(os.path.join(out, "train_results.json")))
    seconds = sum(step_times)
    return {
        "backbone_dir": os.path.join(out, "backbone"),
        "planned_steps": steps,
        "steps": len(step_times),
        "calibrated_step_seconds": calibration,
        "train_seconds": seconds,
        "train_runtime": results.get("train_runtime"),
        "images_per_second": len(step_times) * args.batch_size / seconds,
    }


def run_lightly(args, method: str, shared: str) -> dict:
    """The worker in the lightly venv, then the image processor beside its backbone."""
    out = os.path.join(args.output_dir, method, "lightly")
    os.makedirs(out, exist_ok=True)
    command = [
        args.lightly_python, os.path.abspath(__file__), "--side", "lightly", "--worker", "--method", method,
        "--output_dir", args.output_dir, "--budget_minutes", str(args.budget_minutes),
        "--calibration_steps", str(args.calibration_steps), "--image_size", str(args.image_size),
        "--batch_size", str(args.batch_size), "--learning_rate", str(args.learning_rate),
        "--weight_decay", str(args.weight_decay), "--warmup_ratio", str(args.warmup_ratio),
        "--max_grad_norm", str(args.max_grad_norm), "--seed", str(args.seed),
        "--lightly_num_workers", str(args.lightly_num_workers),
    ]  # fmt: skip
    if args.max_steps is not None:
        command += ["--max_steps", str(args.max_steps)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    subprocess.run(command, check=True, env=env)
    from transformers import AutoImageProcessor

    AutoImageProcessor.from_pretrained(os.path.join(shared, "backbone_config")).save_pretrained(
        os.path.join(out, "backbone")
    )
    return json.load(open(os.path.join(out, "train_results.json")))


def evaluate_backbone(backbone_dir: str, data, seed: int) -> dict:
    """hfssl's evaluation of a plain transformers backbone: kNN k=200 and k=20 (T=0.1), linear probe."""
    import torch
    from transformers import AutoModel

    from hfssl.backbones import PooledBackbone
    from hfssl.data import ImageCollator
    from hfssl.evaluation.features import extract_features
    from hfssl.evaluation.knn import knn_accuracy
    from hfssl.evaluation.linear_probe import linear_probe_accuracy
    from hfssl.preprocessing import eval_transform_from_pretrained

    torch.manual_seed(seed)
    encode = PooledBackbone(AutoModel.from_pretrained(backbone_dir))
    transform = eval_transform_from_pretrained(backbone_dir, 1)
    collator = ImageCollator(image_size=transform.image_size, num_channels=data.num_channels, resize_mixed_only=True)
    loader = lambda dataset: torch.utils.data.DataLoader(dataset, batch_size=1024, collate_fn=collator)  # noqa: E731
    with torch.no_grad():
        train_x, train_y = extract_features(encode, loader(data.train), transform)
        eval_x, eval_y = extract_features(encode, loader(data.eval), transform)
    return features_metrics(train_x, train_y, eval_x, eval_y, knn_accuracy, linear_probe_accuracy)


def features_metrics(train_x, train_y, eval_x, eval_y, knn_accuracy, linear_probe_accuracy) -> dict:
    return {
        "knn200_accuracy": knn_accuracy(train_x, train_y, eval_x, eval_y, k=200, temperature=0.1),
        "knn20_accuracy": knn_accuracy(train_x, train_y, eval_x, eval_y, k=20, temperature=0.1),
        **linear_probe_accuracy(train_x, train_y, eval_x, eval_y),
    }


def baselines(args, data, shared: str) -> dict:
    import numpy as np
    import torch
    from transformers import AutoConfig, AutoImageProcessor, AutoModel

    from hfssl.evaluation.knn import knn_accuracy
    from hfssl.evaluation.linear_probe import linear_probe_accuracy

    torch.manual_seed(args.seed)
    random_dir = os.path.join(shared, "random-init")
    AutoModel.from_config(AutoConfig.from_pretrained(os.path.join(shared, "backbone_config"))).save_pretrained(
        random_dir
    )
    AutoImageProcessor.from_pretrained(os.path.join(shared, "backbone_config")).save_pretrained(random_dir)
    pixels = lambda dataset: torch.from_numpy(  # noqa: E731
        np.stack(dataset.with_format("numpy")["image"]).reshape(len(dataset), -1) / 255.0
    ).float()
    labels = lambda dataset: torch.tensor(dataset["label"])  # noqa: E731
    return {
        "random_init": evaluate_backbone(random_dir, data, args.seed),
        "raw_pixels": features_metrics(
            pixels(data.train),
            labels(data.train),
            pixels(data.eval),
            labels(data.eval),
            knn_accuracy,
            linear_probe_accuracy,
        ),  # fmt: skip
    }


def print_table(results: dict, args) -> None:
    print(
        f"\nFashion-MNIST, {results['backbone']} backbone ({results['backbone_parameters']:,} parameters), batch "
        f"{args.batch_size}, {args.budget_minutes:g} min budget per run, {results['machine']}\n"
    )
    print("| method | implementation | steps | train min | images/s | kNN k=200 | kNN k=20 | linear probe |")
    print("|---|---|---|---|---|---|---|---|")
    pct = lambda value: f"{100 * value:.2f}%"  # noqa: E731
    for method, sides in results["methods"].items():
        for side, r in sides.items():
            print(
                f"| {method} | {side} | {r['steps']} | {r['train_seconds'] / 60:.1f} | {r['images_per_second']:.0f} | "
                f"{pct(r['knn200_accuracy'])} | {pct(r['knn20_accuracy'])} | {pct(r['linear_probe_accuracy'])} |"
            )
    for name, r in results.get("baselines", {}).items():
        print(
            f"| {name} | - | - | - | - | {pct(r['knn200_accuracy'])} | {pct(r['knn20_accuracy'])} | "
            f"{pct(r['linear_probe_accuracy'])} |"
        )


def orchestrate(args) -> dict:
    import torch
    from transformers import AutoConfig, AutoModel

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = set(methods) - set(ALL_METHODS)
    if unknown:
        raise SystemExit(f"Unknown --methods {sorted(unknown)}; choose from {ALL_METHODS}.")
    data, shared = prepare_shared(args)
    config = AutoConfig.from_pretrained(os.path.join(shared, "backbone_config"))
    results = {
        "machine": torch.cuda.get_device_name()
        if torch.cuda.is_available()
        else f"{platform.machine()} CPU, {torch.get_num_threads()} threads",
        "backbone": args.backbone + (f" ({args.backbone_config_overrides})" if args.backbone_config_overrides else ""),
        "backbone_parameters": sum(p.numel() for p in AutoModel.from_config(config).parameters()),
        "arguments": vars(args),
        "settings": {m: SETTINGS[m] for m in methods},
        "methods": {},
    }
    sides = ("hfssl", "lightly") if args.side == "both" else (args.side,)
    for method in methods:
        results["methods"][method] = {}
        for side in sides:  # back to back
            if side == "lightly" and method in HFSSL_ONLY_METHODS:
                print(f"{method}: lightly has no implementation; hfssl's side only.")
                continue
            run = run_hfssl if side == "hfssl" else run_lightly
            trained = run(args, method, shared)
            trained.update(evaluate_backbone(trained["backbone_dir"], data, args.seed))
            results["methods"][method][side] = trained
            with open(os.path.join(args.output_dir, "benchmark.json"), "w") as handle:
                json.dump(results, handle, indent=2)
    if args.baselines.lower() in ("1", "true", "yes"):
        results["baselines"] = baselines(args, data, shared)
    with open(os.path.join(args.output_dir, "benchmark.json"), "w") as handle:
        json.dump(results, handle, indent=2)
    print_table(results, args)
    return results


# ---------------------------------------------------------------------------------------------------
# lightly venv: the training loop (imports nothing from hfssl)
# ---------------------------------------------------------------------------------------------------
def define_torchvision_op_schemas():
    """The torchvision CUDA build's C++ ops fail to load against the CPU torch; defining the two schemas
    it checks lets its pure-Python transforms import (../shared/docs/environment.md)."""
    import torch

    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    return lib  # keep it referenced


def build_lightly_method(method: str, feature_dim: int, image_size: int, steps_per_epoch: int = 0):
    """(student modules, loss, transform) from lightly's building blocks; ``steps_per_epoch`` sets SwAV's frozen
    prototype steps."""
    from lightly.loss import (
        BarlowTwinsLoss,
        DINOLoss,
        NegativeCosineSimilarity,
        NTXentLoss,
        SwaVLoss,
        VICRegLoss,
    )
    from lightly.models.modules import heads
    from lightly.transforms import (
        BYOLTransform,
        BYOLView1Transform,
        BYOLView2Transform,
        DINOTransform,
        MoCoV2Transform,
        SimCLRTransform,
        SimSiamTransform,
        SwaVTransform,
    )
    from lightly.transforms.multi_view_transform import MultiViewTransform
    from torch import nn

    s, blur = SETTINGS[method], image_size > 32
    size = dict(input_size=image_size, normalize=GREYSCALE_NORMALIZE)
    if method == "simclr":
        student = {
            "projection": heads.SimCLRProjectionHead(feature_dim, s["projection_hidden_dim"], s["projection_dim"])
        }
        return student, NTXentLoss(temperature=s["tau"]), SimCLRTransform(**size, gaussian_blur=0.5 * blur)
    if method == "simsiam":
        student = {
            "projection": heads.SimSiamProjectionHead(feature_dim, s["projection_hidden_dim"], s["projection_dim"]),
            "prediction": heads.SimSiamPredictionHead(
                s["projection_dim"], s["prediction_hidden_dim"], s["projection_dim"]
            ),
        }
        return student, NegativeCosineSimilarity(), SimSiamTransform(**size, gaussian_blur=0.5 * blur)
    if method == "byol":
        student = {
            "projection": heads.BYOLProjectionHead(feature_dim, s["projection_hidden_dim"], s["projection_dim"]),
            "prediction": heads.BYOLPredictionHead(
                s["projection_dim"], s["prediction_hidden_dim"], s["projection_dim"]
            ),
        }
        transform = BYOLTransform(
            BYOLView1Transform(**size, gaussian_blur=1.0 * blur), BYOLView2Transform(**size, gaussian_blur=0.1 * blur)
        )
        return student, NegativeCosineSimilarity(), transform
    if method == "moco_v2":
        student = {
            "projection": heads.MoCoProjectionHead(feature_dim, s["projection_hidden_dim"], s["projection_dim"])
        }
        loss = NTXentLoss(temperature=s["tau"], memory_bank_size=(s["queue_size"], s["projection_dim"]))
        return student, loss, MoCoV2Transform(**size, gaussian_blur=0.5 * blur)
    if method == "moco_v3":
        hidden, out = s["projection_hidden_dim"], s["projection_dim"]
        student = {  # MoCo v3's layout (Chen, Xie & He 2021): BN after every layer, the last one without affine
            "projection": heads.ProjectionHead(
                [
                    (feature_dim, hidden, nn.BatchNorm1d(hidden), nn.ReLU()),
                    (hidden, hidden, nn.BatchNorm1d(hidden), nn.ReLU()),
                    (hidden, out, nn.BatchNorm1d(out, affine=False), None),
                ]
            ),
            "prediction": heads.ProjectionHead(
                [
                    (out, s["prediction_hidden_dim"], nn.BatchNorm1d(s["prediction_hidden_dim"]), nn.ReLU()),
                    (s["prediction_hidden_dim"], out, nn.BatchNorm1d(out, affine=False), None),
                ]
            ),
        }
        transform = BYOLTransform(
            BYOLView1Transform(**size, gaussian_blur=1.0 * blur), BYOLView2Transform(**size, gaussian_blur=0.1 * blur)
        )
        return student, NTXentLoss(temperature=s["tau"]), transform
    if method == "dino":
        d = DINO_DEFAULTS
        student = {
            "projection": heads.DINOProjectionHead(
                feature_dim,
                s["hidden_dim"],
                s["bottleneck_dim"],
                s["output_dim"],
                batch_norm=False,
                freeze_last_layer=d["freeze_last_layer_epochs"],
                norm_last_layer=True,
            )  # fmt: skip
        }
        loss = DINOLoss(
            output_dim=s["output_dim"], warmup_teacher_temp=d["warmup_teacher_temperature"],
            teacher_temp=d["teacher_temperature"], warmup_teacher_temp_epochs=int(s["teacher_temperature_warmup_epochs"]),
            student_temp=d["student_temperature"], center_momentum=d["center_momentum"],
        )  # fmt: skip
        local = max(1, round(image_size * 96 / 224))
        transform = DINOTransform(
            global_crop_size=image_size, global_crop_scale=d["global_crop_scale"], local_crop_size=local,
            local_crop_scale=d["local_crop_scale"], n_local_views=s["num_local_crops"],
            gaussian_blur=(1.0 * blur, 0.1 * blur, 0.5 * (local > 32)), normalize=GREYSCALE_NORMALIZE,
        )  # fmt: skip
        return student, loss, transform
    if method in ("barlow_twins", "vicreg"):
        head = heads.BarlowTwinsProjectionHead if method == "barlow_twins" else heads.VICRegProjectionHead
        student = {"projection": head(feature_dim, s["projection_hidden_dim"], s["projection_dim"])}
        if method == "barlow_twins":
            d = BARLOW_TWINS_DEFAULTS
            loss = BarlowTwinsLoss(lambda_param=s["off_diagonal_weight"], gather_distributed=False)
        else:
            d = VICREG_DEFAULTS
            loss = VICRegLoss(
                lambda_param=d["invariance_weight"], mu_param=d["variance_weight"], nu_param=d["covariance_weight"],
                gather_distributed=False, eps=d["variance_eps"],
            )  # fmt: skip
        crop = dict(**size, min_scale=d["min_crop_scale"])
        transform = BYOLTransform(
            BYOLView1Transform(**crop, gaussian_blur=1.0 * blur), BYOLView2Transform(**crop, gaussian_blur=0.1 * blur)
        )
        return student, loss, transform
    if method == "swav":
        d = SWAV_DEFAULTS
        student = {
            "projection": heads.SwaVProjectionHead(feature_dim, s["projection_hidden_dim"], s["projection_dim"]),
            "prototypes": heads.SwaVPrototypes(
                s["projection_dim"], n_prototypes=s["num_prototypes"],
                n_steps_frozen_prototypes=round(d["freeze_prototypes_epochs"] * steps_per_epoch),
            ),
        }  # fmt: skip
        loss = SwaVLoss(
            temperature=d["temperature"], sinkhorn_iterations=d["sinkhorn_iterations"],
            sinkhorn_epsilon=d["sinkhorn_epsilon"], sinkhorn_gather_distributed=False,
        )  # fmt: skip
        local, (g, l_) = max(1, round(image_size * 96 / 224)), (d["global_crop_scale"], d["local_crop_scale"])

        def crops(sizes, counts, scales, blur_probability):
            return SwaVTransform(
                crop_sizes=sizes, crop_counts=counts, crop_min_scales=tuple(lo for lo, _ in scales),
                crop_max_scales=tuple(hi for _, hi in scales), gaussian_blur=blur_probability,
                normalize=GREYSCALE_NORMALIZE,
            )  # fmt: skip

        transform = crops((image_size, local), (2, s["num_local_crops"]), (g, l_), 0.5 * blur)
        if (local > 32) != blur:  # one blur probability per SwaVTransform; hfssl decides per view size
            local_views = crops((local,), (s["num_local_crops"],), (l_,), 0.5 * (local > 32))
            transform = MultiViewTransform(transform.transforms[:2] + local_views.transforms)
        return student, loss, transform
    raise ValueError(method)


def lightly_worker(args) -> None:
    lib = define_torchvision_op_schemas()  # noqa: F841  (before lightly imports torchvision)
    import numpy as np
    import torch
    from lightly.models.utils import deactivate_requires_grad, update_momentum
    from lightly.utils.scheduler import cosine_schedule
    from PIL import Image
    from transformers import AutoConfig, AutoModel, get_cosine_schedule_with_warmup

    method, shared = args.method, os.path.join(args.output_dir, "shared")
    out = os.path.join(args.output_dir, method, "lightly")
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    images = np.load(os.path.join(shared, "train_images.npy"))
    config = AutoConfig.from_pretrained(os.path.join(shared, "backbone_config"))
    backbone = AutoModel.from_config(config)  # the same transformers ResNet as hfssl's
    feature_dim = int(config.hidden_sizes[-1])
    # len(loader) below (drop_last), known here for SwAV's frozen prototype steps
    heads_, criterion, transform = build_lightly_method(
        method, feature_dim, args.image_size, len(images) // args.batch_size
    )
    student = torch.nn.ModuleDict({"backbone": backbone, **heads_})
    momentum_methods = {"byol", "moco_v2", "moco_v3", "dino"}
    teacher = None
    if method in momentum_methods:  # a copy of the student, as the papers do (lightly's benchmarks build it afresh)
        # the heads are rebuilt and loaded with the student's weights: DINOProjectionHead's weight_norm refuses deepcopy
        teacher_heads = build_lightly_method(method, feature_dim, args.image_size)[0]
        teacher = torch.nn.ModuleDict(
            {"backbone": copy.deepcopy(backbone), **{k: v for k, v in teacher_heads.items() if k != "prediction"}}
        )
        teacher.load_state_dict({k: v for k, v in student.state_dict().items() if not k.startswith("prediction.")})
        deactivate_requires_grad(teacher)

    class Views(torch.utils.data.Dataset):
        def __len__(self):
            return len(images)

        def __getitem__(self, index):
            return transform(Image.fromarray(images[index], mode="L"))

    loader = torch.utils.data.DataLoader(
        Views(), batch_size=args.batch_size, shuffle=True, drop_last=True, num_workers=args.lightly_num_workers,
        persistent_workers=args.lightly_num_workers > 0,
    )  # fmt: skip
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise SystemExit(f"{len(images)} images make no full batch of {args.batch_size}.")

    def features(net, x):
        return net["backbone"](pixel_values=x).pooler_output.flatten(1)

    def loss_of(views, step, total):
        if method == "simclr":
            z = [student["projection"](features(student, v)) for v in views]
            return criterion(z[0], z[1])
        if method == "simsiam":
            z = [student["projection"](features(student, v)) for v in views]
            p = [student["prediction"](zi) for zi in z]
            return 0.5 * (criterion(p[0], z[1].detach()) + criterion(p[1], z[0].detach()))
        if method in ("byol", "moco_v3"):
            x = torch.cat(views)
            p = student["prediction"](student["projection"](features(student, x))).chunk(2)
            with torch.no_grad():
                k = teacher["projection"](features(teacher, x)).chunk(2)
            if method == "byol":  # 2 - 2 cos per pair, hfssl's loss value; AdamW makes the scale moot anyway
                return 4 + 2 * (criterion(p[0], k[1]) + criterion(p[1], k[0]))
            return 2 * SETTINGS["moco_v3"]["tau"] * (criterion(p[0], k[1]) + criterion(p[1], k[0]))
        if method == "moco_v2":
            q = student["projection"](features(student, torch.cat(views))).chunk(2)
            with torch.no_grad():
                k = teacher["projection"](features(teacher, torch.cat(views))).chunk(2)
            return 0.5 * (criterion(q[0], k[1]) + criterion(q[1], k[0]))
        if method == "dino":
            global_views = torch.cat(views[:2])
            with torch.no_grad():
                t = teacher["projection"](features(teacher, global_views)).chunk(2)
            s_out = list(student["projection"](features(student, global_views)).chunk(2))
            if len(views) > 2:
                s_out += list(student["projection"](features(student, torch.cat(views[2:]))).chunk(len(views) - 2))
            return criterion(list(t), s_out, epoch=step // steps_per_epoch)
        if method in ("barlow_twins", "vicreg"):  # both views through one backbone and projector pass, as hfssl
            z = student["projection"](features(student, torch.cat(views))).chunk(2)
            return criterion(z[0], z[1])
        if method == "swav":  # one backbone pass per crop size, one head pass over all crops (as hfssl and SwAV)
            runs = [views[:2], views[2:]] if len(views) > 2 else [views]
            h = torch.cat([features(student, torch.cat(run)) for run in runs])
            z = torch.nn.functional.normalize(student["projection"](h), dim=1)
            scores = student["prototypes"](z, step).chunk(len(views))  # step: frozen during the first epoch
            return criterion(list(scores[:2]), list(scores[2:]))
        raise ValueError(method)

    def momentum_at(step, total):
        s = SETTINGS[method]
        if method == "moco_v2":
            return s["momentum"]
        return cosine_schedule(step, total, s["base_momentum"], 1.0)

    def make_optimizer(total):
        decay = [p for n, p in student.named_parameters() if p.ndim > 1]
        no_decay = [p for n, p in student.named_parameters() if p.ndim <= 1]  # biases and norms, as Trainer
        groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        optimizer = torch.optim.AdamW(groups, lr=args.learning_rate)
        scheduler = get_cosine_schedule_with_warmup(optimizer, math.ceil(args.warmup_ratio * total), total)
        return optimizer, scheduler

    def train(total, budget_s, record):
        optimizer, scheduler = make_optimizer(total)
        student.train()
        if teacher is not None:
            teacher.train()
        step, step_times, start = 0, [], time.perf_counter()
        last = start
        while step < total:
            for views in loader:
                if method == "dino":
                    optimizer.param_groups[0]["weight_decay"] = cosine_schedule(
                        step, total, DINO_DEFAULTS["base_weight_decay"], DINO_DEFAULTS["final_weight_decay"]
                    )
                if method == "swav":  # prototypes on the unit sphere before each step, as lightly's example
                    student["prototypes"].normalize()
                loss = loss_of(views, step, total)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if method == "dino":
                    student["projection"].cancel_last_layer_gradients(step // steps_per_epoch)
                torch.nn.utils.clip_grad_norm_(student.parameters(), args.max_grad_norm)
                optimizer.step()
                scheduler.step()
                if teacher is not None:
                    m = momentum_at(step, total)
                    for name in teacher:
                        update_momentum(student[name], teacher[name], m)
                step += 1
                now = time.perf_counter()
                step_times.append(now - last)
                last = now
                if record and step % 50 == 0:
                    print(f"lightly {method} step {step}/{total} loss {loss.item():.4f}", flush=True)
                if step >= total or (budget_s and now - start > 1.1 * budget_s):
                    return step_times, loss.item()
            if budget_s and time.perf_counter() - start > 1.1 * budget_s:
                return step_times, loss.item()
        return step_times, loss.item()

    budget_s = 60 * args.budget_minutes
    steps, calibration = args.max_steps, None
    if steps is None:  # time a few steps, then put the weights (and the memory bank / center) back
        initial = copy.deepcopy(
            (student.state_dict(), teacher.state_dict() if teacher else None, criterion.state_dict())
        )
        times, _ = train(args.calibration_steps, 0, False)
        calibration = median_step_time(times)
        steps = max(1, int(budget_s / calibration))
        student.load_state_dict(initial[0])
        if teacher is not None:
            teacher.load_state_dict(initial[1])
        criterion.load_state_dict(initial[2])
        torch.manual_seed(args.seed)
    step_times, final_loss = train(steps, 0 if args.max_steps else budget_s, True)
    seconds = sum(step_times)
    student["backbone"].save_pretrained(os.path.join(out, "backbone"))
    results = {
        "backbone_dir": os.path.join(out, "backbone"),
        "planned_steps": steps,
        "steps": len(step_times),
        "calibrated_step_seconds": calibration,
        "train_seconds": seconds,
        "images_per_second": len(step_times) * args.batch_size / seconds,
        "final_loss": final_loss,
        "lightly_version": __import__("lightly").__version__,
        "dataloader_workers": args.lightly_num_workers,
    }
    with open(os.path.join(out, "train_results.json"), "w") as handle:
        json.dump(results, handle, indent=2)
    print(json.dumps(results), flush=True)


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return lightly_worker(args)
    return orchestrate(args)


if __name__ == "__main__":
    main()
