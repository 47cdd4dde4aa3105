#!/usr/bin/env python
"""Pretrain a vision backbone with a self-supervised method.

    accelerate launch --config_file accelerate_config.yaml recipes/pretrain_vision.py \
        --method simclr --backbone vit --backbone_config_overrides "hidden_size=64,..." \
        --idx_dir ../shared/data/fashion-mnist --image_size 32 --output_dir runs/simclr

Writes to --output_dir: the checkpoint (``from_pretrained``-able, with its image processor), the
backbone alone under ``backbone/`` (plain transformers), ``all_results.json`` with
``knn_accuracy`` (and ``linear_probe_accuracy``) and ``skipped_images`` (the undecodable images
``--skip_bad_images`` dropped), and a model card; ``--push_to_hub`` pushes it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional

import transformers
from transformers import set_seed

import hfssl
from hfssl.augment import EvalTransform
from hfssl.backbones import BACKBONE_PRESETS, POOLING_CHOICES
from hfssl.data import ImageCollator, VisionDataArguments, load_vision_datasets
from hfssl.evaluation.baselines import frozen_metrics_with_baselines
from hfssl.models.builder import build_vision_ssl_model, check_method_fits_data, resolve_vision_backbone
from hfssl.preprocessing import make_image_processor
from hfssl.training import SSLTrainer, SSLTrainingArguments, parse_recipe_arguments
from hfssl.training.argument_checks import require_int_flag
from hfssl.training.finish import export_backbone, finish_run, train_and_save_state
from hfssl.training.model_card import training_summary, write_model_card

logger = logging.getLogger(__name__)


@dataclass
class ModelArguments:
    method: str = field(default="simclr", metadata={"help": f"SSL method: one of {sorted(hfssl.METHODS)}."})
    backbone: str = field(
        default="auto",
        metadata={
            "help": f"Backbone: auto (a preset and image size picked from the data, logged), a preset ({', '.join(BACKBONE_PRESETS)}), "
            "a transformers model type (resnet = ResNet-50, vit, convnext, ...) or a checkpoint path/Hub id."
        },
    )
    backbone_config_overrides: Optional[str] = field(
        default=None,
        metadata={"help": "Backbone config overrides, e.g. 'hidden_size=64,num_hidden_layers=4,patch_size=4'."},
    )
    config_overrides: Optional[str] = field(
        default=None,
        metadata={
            "help": "Method config overrides: heads, loss and augmentation, e.g. 'projection_dim=64,tau=0.2,min_crop_scale=0.3'."
        },
    )
    pooling: str = field(default="auto", metadata={"help": f"Pooled-feature rule: one of {POOLING_CHOICES}."})
    image_size: Optional[int] = field(
        default=None,
        metadata={
            "help": "Side of the square views (and of the saved image processor); default: picked from the data."
        },
    )

    def __post_init__(self):
        if self.image_size is not None:
            require_int_flag(self, "image_size", 1, "the side of the square views in pixels")


@dataclass
class EvaluationArguments:
    final_protocols: str = field(
        default="knn,linear",
        metadata={"help": "Frozen-feature protocols run after training on the labelled eval split: knn, linear."},
    )
    baselines: bool = field(
        default=True,
        metadata={
            "help": "Also evaluate the same architecture at random init and, for images of at most 32 px, raw pixels "
            "(turn off for large sets: each costs one more feature pass and probe)."
        },
    )
    knn_max_train_samples: Optional[int] = field(
        default=None,
        metadata={"help": "Cap on labelled train images used as kNN memory bank during training evaluations."},
    )

    def __post_init__(self):
        if self.knn_max_train_samples is not None:
            require_int_flag(self, "knn_max_train_samples", 1, "images in the kNN memory bank; leave unset for all")


def main(argv=None):
    model_args, data_args, eval_args, training_args = parse_recipe_arguments(
        (ModelArguments, VisionDataArguments, EvaluationArguments, SSLTrainingArguments), argv
    )
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        level=logging.INFO if training_args.should_log else logging.WARNING,
    )
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())
    if model_args.method not in hfssl.methods_of("image"):
        raise ValueError(
            f"--method {model_args.method!r} is not an image method; choose from {hfssl.methods_of('image')}."
        )
    set_seed(training_args.seed)

    with training_args.main_process_first(desc="resolving the dataset"):
        data = load_vision_datasets(data_args)
    method = hfssl.METHODS[model_args.method]
    check_method_fits_data(method.model_class, data.num_channels, data.description)
    backbone = resolve_vision_backbone(
        model_args.backbone,
        model_args.image_size,
        data.image_size,
        data.num_channels,
        len(data.train),
        vit_only=getattr(method.model_class, "needs_vit_backbone", False),
        backbone_channels=getattr(method.model_class, "backbone_channels", None),
    )
    model = build_vision_ssl_model(
        method,
        backbone.backbone,
        model_args.backbone_config_overrides,
        model_args.config_overrides,
        model_args.pooling,
        backbone.image_size,
        backbone.num_channels,
        num_images=len(data.train) if hasattr(data.train, "__len__") else None,
    )
    num_channels = model.config.num_channels
    image_processor = make_image_processor(model.config.image_size, num_channels)
    eval_transform = EvalTransform(model.config.image_size, num_channels)
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
            image_size=model.config.image_size, num_channels=data.num_channels, resize_mixed_only=True
        ),
        processing_class=image_processor,
        batch_transform=method.batch_transform(model, image_processor),
        feature_transform=eval_transform,
        knn_train_dataset=knn_bank,
    )
    train_and_save_state(trainer, training_args)
    trainer.save_metrics("data", {"skipped_images": data.skipped_images}, combined=True)  # --skip_bad_images
    export_backbone(trainer, model, image_processor)  # before the final evaluation: a failing one cannot cost it
    metrics, eval_features, eval_labels = final_evaluation(trainer, model, data, eval_transform, eval_args)
    card = lambda write: write_model_card(  # noqa: E731
        training_args.output_dir, model, model_args.method, data.description, training_summary(training_args),
        metrics, repo_id=training_args.hub_model_id, write=write,
    )  # fmt: skip
    finish_run(trainer, card, eval_features, eval_labels, class_names(data.train))
    return metrics


def class_names(dataset) -> list[str] | None:
    """The names of a ClassLabel "label" column, else None."""
    feature = dataset.features.get("label") if dataset is not None else None
    return list(feature.names) if hasattr(feature, "names") else None


def final_evaluation(trainer, model, data, eval_transform, eval_args):
    """kNN / linear probe of the trained backbone on the labelled eval split, beside the same
    architecture at random init and raw pixels (``--baselines``); ``({}, None, None)`` without labels.
    Returns the metrics and the eval features (N, D) and labels (N,) for the embedding map."""
    protocols = [p.strip() for p in eval_args.final_protocols.split(",") if p.strip()]
    labelled = all(split is not None and "label" in split.column_names for split in (data.train, data.eval))
    if not protocols:
        return {}, None, None
    if not labelled:
        logger.warning("No labelled train and eval splits: skipping the final %s evaluation.", ", ".join(protocols))
        return {}, None, None
    model.eval()
    metrics, eval_features, eval_labels = frozen_metrics_with_baselines(
        model,
        trainer.feature_dataloader(data.train),
        trainer.feature_dataloader(data.eval),
        eval_transform,
        trainer.accelerator,
        protocols,
        trainer.args.knn_k,
        trainer.args.knn_temperature,
        baselines=eval_args.baselines,
        seed=trainer.args.seed,
    )
    trainer.log_metrics("eval", metrics)
    trainer.save_metrics("eval", metrics, combined=True)
    return metrics, eval_features, eval_labels


if __name__ == "__main__":
    main()
