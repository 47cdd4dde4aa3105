#!/usr/bin/env python
"""Evaluate a pretrained vision backbone on a labelled dataset.

    python recipes/evaluate_vision.py --model_name_or_path runs/simclr --protocol knn,linear \
        --idx_dir ../shared/data/fashion-mnist --output_dir runs/simclr-eval

``--model_name_or_path`` is an hfssl checkpoint or any transformers vision backbone (e.g. the
``backbone/`` folder that pretraining exports). Protocols: ``knn`` (weighted kNN, k=200,
T=0.1), ``linear`` (logistic-regression probe on frozen features), ``finetune`` (backbone and
linear head trained end to end with ``Trainer``). ``--random_init`` evaluates the same
architecture with fresh weights: the baseline a pretrained model must beat. Results go to
``all_results.json`` in ``--output_dir``, with ``skipped_images`` (see ``--skip_bad_images``).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import ClassVar, Optional

import torch
from accelerate import Accelerator
from transformers import AutoConfig, AutoModel, set_seed

import hfssl  # noqa: F401  (registers hfssl model types with AutoModel)
from hfssl.augment import ViewGenerator, ViewRecipe
from hfssl.backbones import POOLING_CHOICES, PooledBackbone
from hfssl.data import ImageCollator, VisionDataArguments, load_vision_datasets
from hfssl.evaluation.finetune import finetune_classifier
from hfssl.evaluation.frozen import FROZEN_PROTOCOLS, frozen_feature_metrics
from hfssl.evaluation.model_kind import require_model_kind
from hfssl.models.vision import VisionSSLConfig
from hfssl.preprocessing import eval_transform_from_pretrained
from hfssl.training import SSLTrainingArguments, parse_recipe_arguments
from hfssl.training.argument_checks import require_int_flag, require_real_flag

logger = logging.getLogger(__name__)
PROTOCOLS = (*FROZEN_PROTOCOLS, "finetune")


@dataclass
class EvaluationModelArguments:
    model_name_or_path: str = field(
        metadata={"help": "hfssl checkpoint or transformers vision backbone (directory or Hub id)."}
    )
    protocol: str = field(default="knn", metadata={"help": f"Comma-separated protocols among {PROTOCOLS}."})
    pooling: str = field(
        default="auto",
        metadata={
            "help": f"Pooled-feature rule for plain backbones: {POOLING_CHOICES} (hfssl checkpoints use their own)."
        },
    )
    image_size: Optional[int] = field(
        default=None, metadata={"help": "Input size; default: the saved image processor's."}
    )
    random_init: bool = field(
        default=False, metadata={"help": "Re-initialise the architecture (random-init baseline)."}
    )
    finetune_min_crop_scale: float = field(
        default=0.5, metadata={"help": "Random resized crop scale floor during fine-tuning."}
    )

    def __post_init__(self):
        if self.image_size is not None:
            require_int_flag(self, "image_size", 1, "the input side in pixels")
        require_real_flag(
            self, "finetune_min_crop_scale", 0, 1, low_open=True, hint="the smallest area share of a crop"
        )


def load_feature_extractor(args: EvaluationModelArguments) -> PooledBackbone:
    """The backbone of ``model_name_or_path`` with its pooling rule, pretrained or re-initialised; a text or
    word-vector model is refused, naming the recipe that takes it."""
    config = AutoConfig.from_pretrained(args.model_name_or_path)
    require_model_kind(args.model_name_or_path, "image", "evaluate_vision.py", config)
    model = AutoModel.from_config(config) if args.random_init else AutoModel.from_pretrained(args.model_name_or_path)
    if isinstance(config, VisionSSLConfig):
        return PooledBackbone(model.backbone, config.pooling)
    return PooledBackbone(model, args.pooling)


@dataclass
class VisionEvaluationArguments(SSLTrainingArguments):
    """``SSLTrainingArguments`` for evaluation: it writes results into --output_dir, not a run, so
    rerunning it there (or into a run's folder) is fine."""

    guards_output_dir: ClassVar[bool] = False


def main(argv=None):
    model_args, data_args, training_args = parse_recipe_arguments(
        (EvaluationModelArguments, VisionDataArguments, VisionEvaluationArguments), argv
    )
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    protocols = [p.strip() for p in model_args.protocol.split(",") if p.strip()]
    if not protocols or set(protocols) - set(PROTOCOLS):
        raise ValueError(f"--protocol must list some of {PROTOCOLS}, got {model_args.protocol!r}.")
    set_seed(training_args.seed)

    with training_args.main_process_first(desc="resolving the dataset"):  # the image check runs once, then is cached
        data = load_vision_datasets(data_args)
    if data.eval is None or "label" not in data.train.column_names or "label" not in data.eval.column_names:
        raise ValueError(
            "Evaluation needs labelled train and eval splits: pass --label_column_name, or a dataset with labels."
        )
    feature_extractor = load_feature_extractor(model_args)
    num_channels = getattr(feature_extractor.backbone.config, "num_channels", 3)
    eval_transform = eval_transform_from_pretrained(model_args.model_name_or_path, num_channels, model_args.image_size)
    collator = ImageCollator(
        image_size=eval_transform.image_size, num_channels=data.num_channels, resize_mixed_only=True
    )

    metrics: dict[str, float] = {}
    frozen = [p for p in protocols if p in FROZEN_PROTOCOLS]
    if frozen:
        accelerator = Accelerator(cpu=training_args.use_cpu)
        feature_extractor = feature_extractor.to(accelerator.device)
        loader = lambda dataset: torch.utils.data.DataLoader(  # noqa: E731
            dataset,
            batch_size=training_args.per_device_eval_batch_size,
            collate_fn=collator,
            num_workers=training_args.dataloader_num_workers,
        )
        train_loader, eval_loader = accelerator.prepare(loader(data.train), loader(data.eval))
        metrics.update(
            frozen_feature_metrics(
                feature_extractor,
                train_loader,
                eval_loader,
                eval_transform.to(accelerator.device),
                accelerator,
                frozen,
                training_args.knn_k,
                training_args.knn_temperature,
            )
        )
    if "finetune" in protocols:
        augment = ViewGenerator(
            [
                ViewRecipe(
                    crop_scale=(model_args.finetune_min_crop_scale, 1.0),
                    color_jitter_probability=0.0,
                    grayscale_probability=0.0,
                    blur_probability=0.0,
                )
            ],
            eval_transform.image_size,
            num_channels,
            eval_transform.normalize.mean.flatten().tolist(),
            eval_transform.normalize.std.flatten().tolist(),
        )
        num_labels = len(data.label_names) if data.label_names else int(max(data.train["label"])) + 1
        metrics.update(
            finetune_classifier(
                feature_extractor,
                feature_extractor.feature_dim,
                num_labels,
                data.train,
                data.eval,
                collator,
                lambda images: augment(images)[0],
                eval_transform,
                training_args,
            )
        )

    if training_args.process_index == 0:
        os.makedirs(training_args.output_dir, exist_ok=True)
        results = {
            **metrics,
            "model_name_or_path": model_args.model_name_or_path,
            "random_init": model_args.random_init,
            "data": data.description,
            "skipped_images": data.skipped_images,
        }
        with open(os.path.join(training_args.output_dir, "all_results.json"), "w") as handle:
            json.dump(results, handle, indent=2)
        logger.info("Results: %s", json.dumps(metrics))
    return metrics


if __name__ == "__main__":
    main()
