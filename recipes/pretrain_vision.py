#!/usr/bin/env python
"""Pretrain a vision backbone with a self-supervised method.

    accelerate launch --config_file accelerate_config.yaml recipes/pretrain_vision.py \
        --method simclr --backbone vit --backbone_config_overrides "hidden_size=64,..." \
        --idx_dir ../shared/data/fashion-mnist --image_size 32 --output_dir runs/simclr

Writes to --output_dir: the checkpoint (``from_pretrained``-able, with its image processor), the
backbone alone under ``backbone/`` (plain transformers), ``all_results.json`` with
``knn_accuracy`` (and ``linear_probe_accuracy``), and a model card; ``--push_to_hub`` pushes it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Optional

import transformers
from transformers import set_seed

import hfssl
from hfssl.augment import EvalTransform
from hfssl.backbones import POOLING_CHOICES
from hfssl.data import ImageCollator, VisionDataArguments, load_vision_datasets
from hfssl.evaluation.frozen import frozen_feature_metrics
from hfssl.models.builder import build_vision_ssl_model
from hfssl.preprocessing import make_image_processor
from hfssl.training import SSLTrainer, SSLTrainingArguments, parse_recipe_arguments, resumed_checkpoint
from hfssl.training.model_card import training_summary, write_model_card

logger = logging.getLogger(__name__)


@dataclass
class ModelArguments:
    method: str = field(default="simclr", metadata={"help": f"SSL method: one of {sorted(hfssl.METHODS)}."})
    backbone: str = field(
        default="resnet",
        metadata={
            "help": "Backbone: a transformers model type (resnet = ResNet-50 as in SimCLR, vit, convnext, ...) or a checkpoint path/Hub id."
        },
    )
    backbone_config_overrides: Optional[str] = field(
        default=None,
        metadata={"help": "Backbone config overrides, e.g. 'hidden_size=64,num_hidden_layers=4,patch_size=4'."},
    )
    config_overrides: Optional[str] = field(
        default=None, metadata={"help": "Method config overrides, e.g. 'projection_dim=64,tau=0.2'."}
    )
    pooling: str = field(default="auto", metadata={"help": f"Pooled-feature rule: one of {POOLING_CHOICES}."})
    image_size: int = field(
        default=224, metadata={"help": "Side of the square views (and of the saved image processor)."}
    )
    min_crop_scale: float = field(default=0.08, metadata={"help": "Smallest area share of the random resized crop."})
    color_jitter_strength: float = field(
        default=1.0, metadata={"help": "Colour jitter strength s of SimCLR (0.8s, 0.8s, 0.8s, 0.2s)."}
    )


@dataclass
class EvaluationArguments:
    final_protocols: str = field(
        default="knn,linear",
        metadata={"help": "Frozen-feature protocols run after training on the labelled eval split: knn, linear."},
    )
    knn_max_train_samples: Optional[int] = field(
        default=None,
        metadata={"help": "Cap on labelled train images used as kNN memory bank during training evaluations."},
    )


def main(argv=None):
    model_args, data_args, eval_args, training_args = parse_recipe_arguments(
        (ModelArguments, VisionDataArguments, EvaluationArguments, SSLTrainingArguments), argv
    )
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        level=logging.INFO if training_args.should_log else logging.WARNING,
    )
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())
    if model_args.method not in hfssl.METHODS or hfssl.METHODS[model_args.method].make_views is None:
        raise ValueError(
            f"--method {model_args.method!r} is not a vision method; choose from {sorted(k for k, m in hfssl.METHODS.items() if m.make_views)}."
        )
    set_seed(training_args.seed)

    with training_args.main_process_first(desc="resolving the dataset"):
        data = load_vision_datasets(data_args)
    method = hfssl.METHODS[model_args.method]
    model = build_vision_ssl_model(
        method,
        model_args.backbone,
        model_args.backbone_config_overrides,
        model_args.config_overrides,
        model_args.pooling,
        model_args.image_size,
    )
    num_channels = getattr(model.config.backbone_config, "num_channels", 3)
    views = method.make_views(
        model_args.image_size,
        num_channels,
        crop_scale=(model_args.min_crop_scale, 1.0),
        color_jitter_strength=model_args.color_jitter_strength,
    )
    eval_transform = EvalTransform(model_args.image_size, num_channels)
    labelled = lambda dataset: dataset is not None and "label" in dataset.column_names  # noqa: E731
    knn_bank = data.train if labelled(data.train) else None
    if knn_bank is not None and eval_args.knn_max_train_samples:
        knn_bank = knn_bank.shuffle(seed=data_args.split_seed).select(
            range(min(eval_args.knn_max_train_samples, len(knn_bank)))
        )

    trainer = SSLTrainer(
        model=model,
        args=training_args,
        train_dataset=data.train,
        eval_dataset=data.eval,
        data_collator=ImageCollator(
            image_size=model_args.image_size, num_channels=data.num_channels, resize_mixed_only=True
        ),
        processing_class=make_image_processor(model_args.image_size, num_channels),
        view_generator=views,
        eval_transform=eval_transform,
        knn_train_dataset=knn_bank,
    )
    train_result = trainer.train(resume_from_checkpoint=resumed_checkpoint(training_args))
    trainer.log_metrics("train", train_result.metrics)
    trainer.save_metrics("train", train_result.metrics)
    trainer.save_state()

    if trainer.is_world_process_zero():  # before the final evaluation, so that a failing one cannot cost the backbone
        model.export_backbone(os.path.join(training_args.output_dir, "backbone"), trainer.processing_class)
    metrics = final_evaluation(trainer, model, data, eval_transform, eval_args)
    trainer.model_card_text = write_model_card(
        training_args.output_dir,
        model,
        model_args.method,
        data.description,
        training_summary(training_args),
        metrics,
        repo_id=training_args.hub_model_id,
        write=trainer.is_world_process_zero(),
    )
    # Last, so that a --push_to_hub upload (which save_model triggers) carries the metrics, the
    # backbone/ folder and hfssl's card.
    trainer.save_model()
    return metrics


def final_evaluation(trainer, model, data, eval_transform, eval_args) -> dict:
    """kNN / linear probe of the trained backbone on the labelled eval split (empty without labels)."""
    protocols = [p.strip() for p in eval_args.final_protocols.split(",") if p.strip()]
    labelled = all(split is not None and "label" in split.column_names for split in (data.train, data.eval))
    if not protocols:
        return {}
    if not labelled:
        logger.warning("No labelled train and eval splits: skipping the final %s evaluation.", ", ".join(protocols))
        return {}
    model.eval()
    metrics = frozen_feature_metrics(
        model.get_image_features,
        trainer.feature_dataloader(data.train),
        trainer.feature_dataloader(data.eval),
        eval_transform,
        trainer.accelerator,
        protocols,
        trainer.args.knn_k,
        trainer.args.knn_temperature,
    )
    trainer.log_metrics("eval", metrics)
    trainer.save_metrics("eval", metrics, combined=True)
    return metrics


if __name__ == "__main__":
    main()
