#!/usr/bin/env python
"""MAE on Fashion-MNIST at equal CPU wall-clock: hfssl's recipe against the stock transformers path (``run_mae.py``'s
recipe on ``ViTMAEForPreTraining``), with the denoising autoencoder on the same ViT, each judged by the linear probe
and by fine-tuning with 1%, 10% and all of the training labels, beside random init (the same ViT trained from
scratch on the same labels) and raw pixels.

    python benchmarks/mae_fashion_mnist.py --budget_minutes 10 --output_dir benchmarks/results/mae-fmnist
    # a smoke run: 3 steps on 512 images, 20 fine-tuning steps
    python benchmarks/mae_fashion_mnist.py --max_steps 3 --max_train_samples 512 --max_eval_samples 256 \\
        --finetune_steps 20 --output_dir /tmp/mae-bench

Pretraining (each side back to back, the same ViT and initial weights, batch, AdamW (betas 0.9, 0.95, weight decay
0.05), learning rate, warmup and cosine schedule, mask ratio 0.75, normalised-pixel target and decoder):

* ``hfssl``: ``recipes/pretrain_vision.py --method mae``; views and masks made in the training step.
* ``transformers``: ``run_mae.py``'s recipe: ``Trainer`` on ``ViTMAEForPreTraining``, each image cropped
  (random resized crop, scale 0.2-1, bicubic) and flipped with PIL in the dataset's transform, the mask drawn
  inside the model. Its encoder is then saved as a plain ``ViTModel`` (the same keys) for evaluation.
* ``denoising_ae``: ``recipes/pretrain_vision.py --method denoising_ae`` on the same ViT (masking noise, 25%).

Budget: each side times ``--calibration_steps`` steps first and runs ``budget / median step time`` steps, so its
schedule runs to its end; a wall-clock callback also stops it at 1.1x the budget (``--max_steps`` skips this).
DataLoader workers: none on either side (2 cores).

Evaluation (the same code for every backbone): the linear probe on frozen features of the full training split
(``hfssl.evaluation``: standardised features, logistic regression, C chosen on a held-out 10%), and fine-tuning
(``recipes/evaluate_vision.py --protocol finetune``: the backbone and a linear head, AdamW, ``--finetune_steps``
steps of 128 with light crops, whatever the label count) on the first 600, 6,000 and 60,000 training images
(``--max_train_samples``, shuffled with seed 0), accuracy on the 10,000 test images. Prints a Markdown table and
writes ``benchmark.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO_ROOT, "recipes"))
sys.path.insert(0, os.path.join(REPO_ROOT, "benchmarks"))

# A small ViT for 28 px images on 2 cores: patch 4 (7x7 = 49 patches, 37 masked), width 128, 6 layers.
VIT = "hidden_size=128,num_hidden_layers=6,num_attention_heads=4,intermediate_size=512,patch_size=4,num_channels=1"
DECODER = dict(
    decoder_hidden_size=128, decoder_num_hidden_layers=2, decoder_num_attention_heads=4, decoder_intermediate_size=512
)
LABELS = (600, 6000, None)  # 1%, 10%, all of Fashion-MNIST's 60,000


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--idx_dir", default=os.path.join(REPO_ROOT, "..", "shared", "data", "fashion-mnist"))
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--sides", default="hfssl,transformers,denoising_ae")
    parser.add_argument("--budget_minutes", type=float, default=10.0, help="pretraining wall clock per side")
    parser.add_argument("--max_steps", type=int, default=None, help="fixed pretraining steps (no budget)")
    parser.add_argument("--calibration_steps", type=int, default=12)
    parser.add_argument("--image_size", type=int, default=28)
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--learning_rate", type=float, default=1.5e-3)
    parser.add_argument("--warmup_ratio", type=float, default=0.05)
    parser.add_argument("--finetune_steps", type=int, default=300)
    parser.add_argument("--finetune_learning_rate", type=float, default=1e-3)
    parser.add_argument("--max_train_samples", type=int, default=None)
    parser.add_argument("--max_eval_samples", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def common_flags(args) -> list[str]:
    import torch

    flags = [
        "--report_to",
        "none",
        "--disable_tqdm",
        "true",
        "--dataloader_num_workers",
        "0",
        "--seed",
        str(args.seed),
    ]
    for flag, value in (
        ("--max_train_samples", args.max_train_samples),
        ("--max_eval_samples", args.max_eval_samples),
    ):
        if value is not None:
            flags += [flag, str(value)]
    return flags + ([] if torch.cuda.is_available() else ["--use_cpu"])


def pretraining_flags(args, steps: int) -> list[str]:
    return [
        "--per_device_train_batch_size", str(args.batch_size), "--max_steps", str(steps),
        "--learning_rate", str(args.learning_rate), "--weight_decay", "0.05", "--adam_beta2", "0.95",
        "--warmup_steps", str(args.warmup_ratio), "--lr_scheduler_type", "cosine", "--logging_steps", "50",
        "--save_strategy", "no",
    ]  # fmt: skip


def budgeted(args, train) -> dict:
    """``train(steps, output_dir, budget_s) -> step times``: a calibration run, then the budgeted one."""
    from momentum_methods_vs_lightly import median_step_time

    budget_s, calibration, steps = 60 * args.budget_minutes, None, args.max_steps
    if steps is None:
        calibration = median_step_time(train(args.calibration_steps, "calibration", 0))
        steps = max(1, int(budget_s / calibration))
    times = train(steps, "run", 0 if args.max_steps else budget_s)
    seconds = sum(times)
    return {
        "planned_steps": steps,
        "steps": len(times),
        "calibrated_step_seconds": calibration,
        "train_seconds": seconds,
        "images_per_second": len(times) * args.batch_size / seconds,
    }


def run_hfssl(args, method: str) -> dict:
    """``pretrain_vision.main`` for ``method`` (mae or denoising_ae) with the shared settings."""
    import pretrain_vision
    from momentum_methods_vs_lightly import make_budget_trainer

    from hfssl.training import SSLTrainer

    overrides = ",".join(f"{key}={value}" for key, value in DECODER.items()) if method == "mae" else ""

    def train(steps, name, budget_s):
        step_times: list = []
        pretrain_vision.SSLTrainer = make_budget_trainer(SSLTrainer, budget_s, step_times)
        output_dir = os.path.join(args.output_dir, method, name)
        argv = [
            "--method", method, "--idx_dir", args.idx_dir, "--backbone", "vit", "--backbone_config_overrides", VIT,
            "--image_size", str(args.image_size), "--output_dir", output_dir, "--overwrite_output_dir",
            "--final_protocols", "", "--baselines", "false", *pretraining_flags(args, steps), *common_flags(args),
        ]  # fmt: skip
        if overrides:
            argv += ["--config_overrides", overrides]
        try:
            pretrain_vision.main(argv)
        finally:
            pretrain_vision.SSLTrainer = SSLTrainer
        return step_times

    result = budgeted(args, train)
    result["backbone_dir"] = os.path.join(args.output_dir, method, "run", "backbone")
    return result


class PILMAETransform:
    """``run_mae.py``'s training transform on PIL images: RandomResizedCrop(size, scale=(0.2, 1.0), bicubic),
    RandomHorizontalFlip, ToTensor, Normalize(mean, std); torchvision's crop sampling, written with PIL (torchvision
    does not install here)."""

    def __init__(self, size: int, mean: float, std: float):
        self.size, self.mean, self.std = size, mean, std

    def crop_box(self, width: int, height: int) -> tuple[int, int, int, int]:
        import math

        area = width * height
        for _ in range(10):
            target = area * random.uniform(0.2, 1.0)
            ratio = math.exp(random.uniform(math.log(3 / 4), math.log(4 / 3)))
            w, h = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
            if 0 < w <= width and 0 < h <= height:
                top, left = random.randint(0, height - h), random.randint(0, width - w)
                return left, top, left + w, top + h
        side = min(width, height)
        return (width - side) // 2, (height - side) // 2, (width + side) // 2, (height + side) // 2

    def __call__(self, examples: dict) -> dict:
        import numpy as np
        import torch
        from PIL import Image

        pixels = []
        for image in examples["image"]:  # PIL images, or uint8 arrays (the IDX reader's)
            image = (
                image.convert("L")
                if hasattr(image, "convert")
                else Image.fromarray(np.asarray(image, np.uint8).squeeze())
            )
            image = image.resize((self.size, self.size), Image.BICUBIC, box=self.crop_box(*image.size))
            if random.random() < 0.5:
                image = image.transpose(Image.FLIP_LEFT_RIGHT)
            array = np.asarray(image, dtype=np.float32) / 255.0
            pixels.append(torch.from_numpy((array - self.mean) / self.std).unsqueeze(0))
        return {"pixel_values": pixels}


def run_transformers(args) -> dict:
    """``Trainer`` on ``ViTMAEForPreTraining`` as ``run_mae.py`` runs it, from the hfssl model's initial weights."""
    import torch
    from mae_step_speed import stock_model
    from momentum_methods_vs_lightly import make_budget_trainer
    from transformers import Trainer, TrainingArguments, ViTModel, set_seed

    import hfssl
    from hfssl.data import VisionDataArguments, load_vision_datasets
    from hfssl.models.builder import build_vision_ssl_model
    from hfssl.preprocessing import make_image_processor

    data = load_vision_datasets(
        VisionDataArguments(
            idx_dir=args.idx_dir, max_train_samples=args.max_train_samples, max_eval_samples=args.max_eval_samples
        )
    )
    train_set = data.train.remove_columns([c for c in data.train.column_names if c != "image"])
    train_set.set_transform(PILMAETransform(args.image_size, 0.5, 0.5))
    overrides = ",".join(f"{key}={value}" for key, value in DECODER.items())

    def train(steps, name, budget_s):
        set_seed(args.seed)
        hfssl_model = build_vision_ssl_model(hfssl.METHODS["mae"], "vit", VIT, overrides, image_size=args.image_size)
        model = stock_model(hfssl_model)
        step_times: list = []
        output_dir = os.path.join(args.output_dir, "transformers", name)
        training_args = TrainingArguments(
            output_dir=output_dir, per_device_train_batch_size=args.batch_size, max_steps=steps,
            learning_rate=args.learning_rate, weight_decay=0.05, adam_beta2=0.95, warmup_steps=args.warmup_ratio,
            lr_scheduler_type="cosine", logging_steps=50, save_strategy="no", report_to="none", disable_tqdm=True,
            dataloader_num_workers=0, seed=args.seed, remove_unused_columns=False,
            use_cpu=not torch.cuda.is_available(),
        )  # fmt: skip
        trainer = make_budget_trainer(Trainer, budget_s, step_times)(
            model=model, args=training_args, train_dataset=train_set
        )
        trainer.train()
        backbone_dir = os.path.join(output_dir, "backbone")
        encoder = ViTModel(hfssl_model.config.backbone_config, add_pooling_layer=False)
        encoder.load_state_dict(model.vit.state_dict())  # ViTMAEModel's keys are ViTModel's
        encoder.save_pretrained(backbone_dir)
        make_image_processor(args.image_size, 1).save_pretrained(backbone_dir)
        return step_times

    result = budgeted(args, train)
    result["backbone_dir"] = os.path.join(args.output_dir, "transformers", "run", "backbone")
    return result


def random_init_backbone(args) -> str:
    """The same ViT at random init, saved as a plain backbone."""
    from transformers import set_seed

    import hfssl
    from hfssl.models.builder import build_vision_ssl_model
    from hfssl.preprocessing import make_image_processor

    set_seed(args.seed)
    model = build_vision_ssl_model(hfssl.METHODS["simclr"], "vit", VIT, image_size=args.image_size)
    directory = os.path.join(args.output_dir, "random_init", "backbone")
    model.backbone.save_pretrained(directory)
    make_image_processor(args.image_size, 1).save_pretrained(directory)
    return directory


def linear_probe(args, backbone_dir: str) -> dict:
    import evaluate_vision

    output_dir = os.path.join(os.path.dirname(backbone_dir), "linear")
    evaluate_vision.main([
        "--model_name_or_path", backbone_dir, "--protocol", "linear", "--idx_dir", args.idx_dir,
        "--output_dir", output_dir, "--per_device_eval_batch_size", "512", *common_flags(args),
    ])  # fmt: skip
    return json.load(open(os.path.join(output_dir, "all_results.json")))


def finetune(args, backbone_dir: str, labels: int | None) -> float:
    import evaluate_vision

    output_dir = os.path.join(os.path.dirname(backbone_dir), f"finetune-{labels or 'all'}")
    flags = common_flags(args)
    if labels is not None:
        if "--max_train_samples" in flags:
            index = flags.index("--max_train_samples")
            flags[index + 1] = str(min(labels, int(flags[index + 1])))
        else:
            flags += ["--max_train_samples", str(labels)]
    evaluate_vision.main([
        "--model_name_or_path", backbone_dir, "--protocol", "finetune", "--idx_dir", args.idx_dir,
        "--output_dir", output_dir, "--max_steps", str(args.finetune_steps), "--per_device_train_batch_size", "128",
        "--per_device_eval_batch_size", "512", "--learning_rate", str(args.finetune_learning_rate),
        "--weight_decay", "0.05", "--warmup_steps", "0.1", "--lr_scheduler_type", "cosine", "--save_strategy", "no",
        "--logging_steps", "50", "--split_seed", "0", *flags,
    ])  # fmt: skip
    return json.load(open(os.path.join(output_dir, "all_results.json")))["finetune_accuracy"]


def raw_pixels_linear_probe(args) -> float:
    import numpy as np
    import torch

    from hfssl.data import VisionDataArguments, load_vision_datasets
    from hfssl.evaluation.linear_probe import linear_probe_accuracy

    data = load_vision_datasets(
        VisionDataArguments(
            idx_dir=args.idx_dir, max_train_samples=args.max_train_samples, max_eval_samples=args.max_eval_samples
        )
    )

    def pixels(dataset):
        return torch.from_numpy(np.stack(dataset.with_format("numpy")["image"]).reshape(len(dataset), -1) / 255.0)

    train_y, eval_y = torch.tensor(data.train["label"]), torch.tensor(data.eval["label"])
    return linear_probe_accuracy(pixels(data.train).float(), train_y, pixels(data.eval).float(), eval_y)[
        "linear_probe_accuracy"
    ]


def evaluate_all(args, backbone_dir: str) -> dict:
    result = {"linear_probe_accuracy": linear_probe(args, backbone_dir)["linear_probe_accuracy"]}
    for labels in LABELS:
        result[f"finetune_{labels or 'all'}_accuracy"] = finetune(args, backbone_dir, labels)
    return result


def print_table(results: dict) -> None:
    print(f"\nFashion-MNIST, ViT ({VIT}), {results['machine']}, {results['budget']}\n")
    print("| features | steps | images/s | linear probe | fine-tune 1% | fine-tune 10% | fine-tune 100% |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in results["rows"].items():
        pct = lambda key: f"{100 * r[key]:.2f}%" if key in r else "-"  # noqa: E731
        steps = f"{r['steps']}" if "steps" in r else "-"
        speed = f"{r['images_per_second']:.0f}" if "images_per_second" in r else "-"
        print(
            f"| {name} | {steps} | {speed} | {pct('linear_probe_accuracy')} | {pct('finetune_600_accuracy')} | "
            f"{pct('finetune_6000_accuracy')} | {pct('finetune_all_accuracy')} |"
        )


def main(argv=None):
    import torch

    args = parse_args(argv)
    os.makedirs(args.output_dir, exist_ok=True)
    results = {
        "machine": torch.cuda.get_device_name()
        if torch.cuda.is_available()
        else f"{platform.machine()} CPU, {torch.get_num_threads()} threads",
        "budget": f"{args.max_steps} steps" if args.max_steps else f"{args.budget_minutes:g} min per pretraining",
        "arguments": vars(args),
        "rows": {},
    }

    def save():
        with open(os.path.join(args.output_dir, "benchmark.json"), "w") as handle:
            json.dump(results, handle, indent=2)

    runs = {"hfssl": lambda: run_hfssl(args, "mae"), "transformers": lambda: run_transformers(args)}
    runs["denoising_ae"] = lambda: run_hfssl(args, "denoising_ae")
    trained = {}
    for side in [s.strip() for s in args.sides.split(",") if s.strip()]:  # pretraining back to back
        trained[side] = runs[side]()
        results["rows"][f"MAE ({side})" if side != "denoising_ae" else "denoising AE (hfssl)"] = trained[side]
        save()
    names = {side: (f"MAE ({side})" if side != "denoising_ae" else "denoising AE (hfssl)") for side in trained}
    for side, run in trained.items():
        results["rows"][names[side]].update(evaluate_all(args, run["backbone_dir"]))
        save()
    results["rows"]["random init (from scratch)"] = evaluate_all(args, random_init_backbone(args))
    results["rows"]["raw pixels"] = {"linear_probe_accuracy": raw_pixels_linear_probe(args)}
    save()
    print_table(results)
    return results


if __name__ == "__main__":
    main()
