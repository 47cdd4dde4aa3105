#!/usr/bin/env python
"""CLIP on emoji-captions at equal CPU wall-clock: hfssl's recipe against transformers' own path (``run_clip.py``'s
recipe on ``VisionTextDualEncoderModel``), same towers, initial weights, tokenizer, data, batch and optimizer, judged
on held-out emoji (never seen in training) by zero-shot classification over the 9 groups and ~100 subgroups and by
retrieval recall@1/5/10 both ways, beside the same towers at random init.

    python benchmarks/clip_emoji.py --budget_minutes 10 --output_dir benchmarks/results/clip-emoji
    # a smoke run: 3 steps each
    python benchmarks/clip_emoji.py --max_steps 3 --output_dir /tmp/clip-bench

Pretraining (each side back to back):

* ``hfssl``: ``recipes/pretrain_clip.py``: the loss over the global batch, one random resized crop (scale 0.9-1) per
  image made in the training step, captions padded to the longest of the batch, the logit scale clamped at 100.
* ``transformers``: ``run_clip.py``'s recipe: ``Trainer`` on ``VisionTextDualEncoderModel`` (whose loss sees the local
  batch: the same thing on one process), each image resized (bicubic), centre-cropped and normalised with PIL in the
  dataset's transform (torchvision's ``Resize``/``CenterCrop``/``Normalize``; torchvision does not install here), every
  caption padded to ``--max_seq_length`` (77) as ``run_clip.py`` tokenises, the logit scale unclamped.

Both build the towers with ``pretrain_clip.build_clip_model`` after ``set_seed(--seed)`` (CLIP's vision and text
transformers, tiny: width 128, 4 layers, patch 8 at 64 px), so they start from the same weights; the tokenizer is
the CLIP tokenizer hfssl's run trained on the training captions. AdamW (betas 0.9, 0.98, eps 1e-6, weight decay 0.1: CLIP's),
warm-up and cosine decay. Budget: each side times ``--calibration_steps`` steps, then runs ``budget / median step
time`` steps so its schedule ends; a wall-clock callback also stops it at 1.1x the budget. DataLoader workers: none.
Evaluation: ``recipes/evaluate_clip.py`` on each side's ``dual_encoder/`` export (the same code, the same 366 held-out
pairs of ``--split_seed`` 42). Prints a Markdown table and writes ``benchmark.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO_ROOT, "recipes"))
sys.path.insert(0, os.path.join(REPO_ROOT, "benchmarks"))

DATA_FLAGS = ["--zero_shot_columns", "group,subgroup"]
METRICS = (
    ("zero_shot_group_top_1_accuracy", "groups top-1"),
    ("zero_shot_group_top_5_accuracy", "groups top-5"),
    ("zero_shot_group_balanced_accuracy", "groups balanced"),
    ("zero_shot_subgroup_top_1_accuracy", "subgroups top-1"),
    ("zero_shot_subgroup_top_5_accuracy", "subgroups top-5"),
    ("image_to_text_recall@1", "I→T R@1"),
    ("image_to_text_recall@5", "I→T R@5"),
    ("image_to_text_recall@10", "I→T R@10"),
    ("text_to_image_recall@1", "T→I R@1"),
    ("text_to_image_recall@5", "T→I R@5"),
    ("text_to_image_recall@10", "T→I R@10"),
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train_dir", default=os.path.join(REPO_ROOT, "..", "shared", "data", "emoji-captions"))
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--sides", default="hfssl,transformers")
    parser.add_argument("--budget_minutes", type=float, default=10.0, help="pretraining wall clock per side")
    parser.add_argument("--max_steps", type=int, default=None, help="fixed pretraining steps (no budget)")
    parser.add_argument("--calibration_steps", type=int, default=12)
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--warmup_ratio", type=float, default=0.05)
    parser.add_argument("--max_seq_length", type=int, default=77)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def data_arguments(args):
    from hfssl.data.image_text import ImageTextDataArguments

    return ImageTextDataArguments(
        train_dir=args.train_dir, zero_shot_columns="group,subgroup", max_seq_length=args.max_seq_length
    )


def training_flags(args, steps: int) -> list[str]:
    import torch

    return [
        "--per_device_train_batch_size", str(args.batch_size), "--max_steps", str(steps),
        "--learning_rate", str(args.learning_rate), "--weight_decay", "0.1", "--adam_beta2", "0.98",
        "--adam_epsilon", "1e-6", "--warmup_steps", str(args.warmup_ratio), "--lr_scheduler_type", "cosine",
        "--logging_steps", "50", "--save_strategy", "no", "--eval_strategy", "no", "--report_to", "none",
        "--disable_tqdm", "true", "--dataloader_num_workers", "0", "--seed", str(args.seed),
    ] + ([] if torch.cuda.is_available() else ["--use_cpu"])  # fmt: skip


def run_hfssl(args) -> dict:
    """``pretrain_clip.main`` with the shared settings (its own final evaluation off: evaluate_clip runs later)."""
    import pretrain_clip
    from mae_fashion_mnist import budgeted
    from momentum_methods_vs_lightly import make_budget_trainer

    from hfssl.training import SSLTrainer

    def train(steps, name, budget_s):
        step_times: list = []
        pretrain_clip.SSLTrainer = make_budget_trainer(SSLTrainer, budget_s, step_times)
        output_dir = os.path.join(args.output_dir, "hfssl", name)
        argv = [
            "--train_dir", args.train_dir, *DATA_FLAGS, "--max_seq_length", str(args.max_seq_length),
            "--output_dir", output_dir, "--overwrite_output_dir", "--validation_split_percentage", "10",
            *training_flags(args, steps),
        ]  # fmt: skip
        pretrain_clip.final_evaluation = lambda *a, **k: {}
        try:
            pretrain_clip.main(argv)
        finally:
            pretrain_clip.SSLTrainer = SSLTrainer
        return step_times

    result = budgeted(args, train)
    result["export_dir"] = os.path.join(args.output_dir, "hfssl", "run", "dual_encoder")
    return result


class RunClipTransform:
    """``run_clip.py``'s image transform on PIL images: Resize(size, bicubic), CenterCrop(size), ToTensor, Normalize."""

    def __init__(self, size: int, mean, std):
        self.size, self.mean, self.std = size, mean, std

    def image(self, image):
        import numpy as np
        import torch
        from PIL import Image

        image = image.convert("RGB")
        scale = self.size / min(image.size)
        width, height = max(self.size, round(image.width * scale)), max(self.size, round(image.height * scale))
        image = image.resize((width, height), Image.BICUBIC)
        left, top = (width - self.size) // 2, (height - self.size) // 2
        image = image.crop((left, top, left + self.size, top + self.size))
        array = np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255.0
        mean = np.asarray(self.mean, np.float32)[:, None, None]
        std = np.asarray(self.std, np.float32)[:, None, None]
        return torch.from_numpy((array - mean) / std)


def baseline_setup(args):
    """The data, tokenizer and model (random init, from ``--seed``) both sides start from, as pretrain_clip builds
    them."""
    import pretrain_clip
    from transformers import AutoTokenizer, set_seed

    from hfssl.data.image_text import load_image_text_datasets
    from hfssl.tokenization import train_clip_tokenizer

    data = load_image_text_datasets(data_arguments(args))
    model_args = pretrain_clip.ModelArguments()
    tokenizer_dir = os.path.join(args.output_dir, "hfssl", "run")  # the tokenizer hfssl's run trained and saved
    if os.path.isfile(os.path.join(tokenizer_dir, "tokenizer.json")):
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    else:
        tokenizer = train_clip_tokenizer(data.train["caption"], model_args.vocab_size)
    tokenizer.model_max_length = args.max_seq_length
    set_seed(args.seed)
    model = pretrain_clip.build_clip_model(model_args, data, tokenizer, args.max_seq_length)
    return data, tokenizer, model


def save_stock(model, tokenizer, image_size: int, directory: str) -> None:
    from transformers import VisionTextDualEncoderProcessor

    from hfssl.preprocessing import make_image_processor

    model.save_pretrained(directory)
    processor = VisionTextDualEncoderProcessor(
        image_processor=make_image_processor(image_size, 3), tokenizer=tokenizer
    )
    processor.save_pretrained(directory)


def run_transformers(args) -> dict:
    """``Trainer`` on ``VisionTextDualEncoderModel`` as ``run_clip.py`` runs it, from hfssl's initial weights."""
    import torch
    from mae_fashion_mnist import budgeted
    from momentum_methods_vs_lightly import make_budget_trainer
    from transformers import (
        Trainer,
        TrainingArguments,
        VisionTextDualEncoderConfig,
        VisionTextDualEncoderModel,
        set_seed,
    )

    from hfssl.augment import default_normalization
    from hfssl.data.image_collator import load_image

    data, tokenizer, _ = baseline_setup(args)
    image_size = 64
    transform = RunClipTransform(image_size, *default_normalization(3))

    def preprocess(examples):  # run_clip.py tokenises every caption to max_seq_length and transforms each image
        tokens = tokenizer(examples["caption"], max_length=args.max_seq_length, padding="max_length", truncation=True)
        pixels = [transform.image(load_image(image)) for image in examples["image"]]
        return {"pixel_values": pixels, "input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]}

    train_set = data.train.with_transform(preprocess)

    def collate(examples):  # run_clip.py's collate_fn
        return {
            "pixel_values": torch.stack([example["pixel_values"] for example in examples]),
            "input_ids": torch.tensor([example["input_ids"] for example in examples], dtype=torch.long),
            "attention_mask": torch.tensor([example["attention_mask"] for example in examples], dtype=torch.long),
            "return_loss": True,
        }

    def train(steps, name, budget_s):
        _, _, hfssl_model = baseline_setup(args)
        config = hfssl_model.config
        model = VisionTextDualEncoderModel(
            VisionTextDualEncoderConfig.from_vision_text_configs(
                config.vision_config, config.text_config, projection_dim=config.projection_dim
            )
        )
        model.load_state_dict(hfssl_model.state_dict())  # the same module names and initial weights
        set_seed(args.seed)
        step_times: list = []
        output_dir = os.path.join(args.output_dir, "transformers", name)
        training_args = TrainingArguments(
            output_dir=output_dir, per_device_train_batch_size=args.batch_size, max_steps=steps,
            learning_rate=args.learning_rate, weight_decay=0.1, adam_beta2=0.98, adam_epsilon=1e-6,
            warmup_steps=args.warmup_ratio, lr_scheduler_type="cosine", logging_steps=50, save_strategy="no",
            report_to="none", disable_tqdm=True, dataloader_num_workers=0, seed=args.seed,
            remove_unused_columns=False, dataloader_drop_last=True, use_cpu=not torch.cuda.is_available(),
        )  # fmt: skip
        trainer = make_budget_trainer(Trainer, budget_s, step_times)(
            model=model, args=training_args, train_dataset=train_set, data_collator=collate
        )
        trainer.train()
        save_stock(model, tokenizer, image_size, os.path.join(output_dir, "dual_encoder"))
        return step_times

    result = budgeted(args, train)
    result["export_dir"] = os.path.join(args.output_dir, "transformers", "run", "dual_encoder")
    return result


def random_init_export(args) -> str:
    """The same towers at random init (the weights both sides start from), exported as hfssl exports."""
    from hfssl.models.clip import CLIPPretrainingModel  # noqa: F401

    data, tokenizer, model = baseline_setup(args)
    directory = os.path.join(args.output_dir, "random_init", "dual_encoder")
    from transformers import CLIPProcessor

    from hfssl.preprocessing import make_image_processor

    processor = CLIPProcessor(image_processor=make_image_processor(model.config.image_size, 3), tokenizer=tokenizer)
    model.export_dual_encoder(directory, processor)
    return directory


def evaluate(args, export_dir: str) -> dict:
    import evaluate_clip

    argv = ["--model_name_or_path", export_dir, "--train_dir", args.train_dir, *DATA_FLAGS]
    argv += ["--max_seq_length", str(args.max_seq_length), "--output_dir", os.path.join(export_dir, "..", "eval")]
    return evaluate_clip.main(argv)


def print_table(results: dict) -> None:
    print(f"\nemoji-captions, 366 held-out emoji, {results['machine']}, {results['budget']}\n")
    print("| towers | steps | pairs/s | " + " | ".join(label for _, label in METRICS) + " |")
    print("|---|---:|---:|" + "---:|" * len(METRICS))
    for name, row in results["rows"].items():
        speed = f"{row['images_per_second']:.0f}" if "images_per_second" in row else "-"
        cells = " | ".join(f"{100 * row[key]:.1f}" if key in row else "-" for key, _ in METRICS)
        print(f"| {name} | {row.get('steps', '-')} | {speed} | {cells} |")


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

    runs = {"hfssl": lambda: run_hfssl(args), "transformers": lambda: run_transformers(args)}
    trained = {}
    for side in [s.strip() for s in args.sides.split(",") if s.strip()]:  # pretraining back to back
        trained[side] = runs[side]()
        results["rows"][side] = trained[side]
        save()
    for side, run in trained.items():
        results["rows"][side].update(evaluate(args, run["export_dir"]))
        save()
    results["rows"]["random init"] = evaluate(args, random_init_export(args))
    save()
    print_table(results)
    return results


if __name__ == "__main__":
    main()
