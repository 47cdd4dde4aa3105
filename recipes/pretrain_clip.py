#!/usr/bin/env python
"""Pretrain an image tower and a text tower together with CLIP on image-caption pairs.

    accelerate launch --config_file accelerate_config.yaml recipes/pretrain_clip.py \
        --train_dir ../shared/data/emoji-captions --zero_shot_columns group,subgroup --output_dir runs/clip

Writes to --output_dir: the checkpoint (``from_pretrained``-able with hfssl, with its processor), the model as plain
transformers under ``dual_encoder/`` (a ``CLIPModel`` for CLIP's towers, else a ``VisionTextDualEncoderModel``, with
the processor: ``AutoProcessor`` and the zero-shot pipeline load it), ``all_results.json`` with zero-shot top-1/top-5
over each ``--zero_shot_columns`` column and retrieval recall@1/5/10 both ways on the held-out pairs (beside the
same towers at random init), ``retrieval_examples.png`` and a model card; ``--push_to_hub`` pushes it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Optional

import transformers
from transformers import (
    AutoConfig,
    AutoModel,
    AutoTokenizer,
    CLIPProcessor,
    VisionTextDualEncoderProcessor,
    set_seed,
)

from hfssl.augment import EvalTransform
from hfssl.backbones import (
    AUTO_BACKBONE,
    BACKBONE_PRESETS,
    apply_config_overrides,
    build_backbone_config,
    choose_auto_backbone,
    is_checkpoint,
    parse_config_overrides,
)
from hfssl.data.image_text import ImageTextCollator, ImageTextDataArguments, load_image_text_datasets
from hfssl.evaluation.baselines import random_init_copy
from hfssl.evaluation.zero_shot import RETRIEVAL_EXAMPLES, evaluate_dual_encoder, parse_templates
from hfssl.models.clip import CLIPPretrainingConfig, CLIPPretrainingModel, clip_batch_transform, default_clip_towers
from hfssl.models.clip.configuration_clip import check_tokenizer_fits, special_token_ids
from hfssl.preprocessing import make_image_processor
from hfssl.tokenization import train_clip_tokenizer
from hfssl.training import SSLTrainer, SSLTrainingArguments, parse_recipe_arguments
from hfssl.training.argument_checks import require_int_flag
from hfssl.training.arguments import resumed_checkpoint
from hfssl.training.finish import export_backbone, finish_run, train_and_save_state
from hfssl.training.model_card import training_summary, write_clip_model_card

logger = logging.getLogger(__name__)


@dataclass
class ModelArguments:
    vision_backbone: str = field(
        default=AUTO_BACKBONE,
        metadata={
            "help": "Image tower: auto (CLIP's vision transformer sized for the data, logged), a vision preset "
            f"({', '.join(BACKBONE_PRESETS)}), a transformers model type (clip_vision_model, vit, convnext, ...) or a "
            "checkpoint path/Hub id. It needs a (B, D) pooler_output."
        },
    )
    vision_backbone_config_overrides: Optional[str] = field(
        default=None, metadata={"help": "Image tower config overrides, e.g. 'hidden_size=256,num_hidden_layers=6'."}
    )
    text_backbone: str = field(
        default=AUTO_BACKBONE,
        metadata={
            "help": "Text tower: auto (CLIP's text transformer sized like the image tower), a transformers model type "
            "(clip_text_model, bert, roberta, ...) or a checkpoint (its tokenizer too, unless --tokenizer_name)."
        },
    )
    text_backbone_config_overrides: Optional[str] = field(
        default=None, metadata={"help": "Text tower config overrides, e.g. 'hidden_size=256,num_hidden_layers=6'."}
    )
    config_overrides: Optional[str] = field(
        default=None,
        metadata={"help": "CLIP config overrides, e.g. 'projection_dim=256,local_loss=true,min_crop_scale=0.5'."},
    )
    image_size: Optional[int] = field(
        default=None, metadata={"help": "Side of the square training crops; default: picked from the data."}
    )
    tokenizer_name: Optional[str] = field(
        default=None,
        metadata={
            "help": "Tokenizer to use (path or Hub id); default: the text checkpoint's, else a CLIP tokenizer trained "
            "on the training captions (--vocab_size)."
        },
    )
    vocab_size: int = field(default=8192, metadata={"help": "Tokens of the CLIP tokenizer trained on the captions."})

    def __post_init__(self):
        if self.image_size is not None:
            require_int_flag(self, "image_size", 1, "the side of the training crops in pixels")
        require_int_flag(self, "vocab_size", 258, "256 bytes and 2 special tokens at least")


@dataclass
class EvaluationArguments:
    zero_shot_templates: Optional[str] = field(
        default=None,
        metadata={
            "help": "Prompt templates of zero-shot classification, each with {} for the class name, separated by '|' "
            "(default: '{}|a picture of {}.|an image of {}.|a photo of {}.'); their embeddings are averaged per class."
        },
    )
    baselines: bool = field(
        default=True, metadata={"help": "Also evaluate the same towers at random init (one more pass over eval)."}
    )


def main(argv=None):
    model_args, data_args, eval_args, training_args = parse_recipe_arguments(
        (ModelArguments, ImageTextDataArguments, EvaluationArguments, SSLTrainingArguments), argv
    )
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        level=logging.INFO if training_args.should_log else logging.WARNING,
    )
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())
    templates = parse_templates(eval_args.zero_shot_templates)  # a bad template fails before any training
    set_seed(training_args.seed)

    with training_args.main_process_first(desc="resolving the dataset"):
        data = load_image_text_datasets(data_args)
    tokenizer = load_or_train_tokenizer(model_args, training_args, data.train)
    # users of the saved processor get captions cut where training cut them
    tokenizer.model_max_length = min(tokenizer.model_max_length, data_args.max_seq_length)
    model = build_clip_model(model_args, data, tokenizer, data_args.max_seq_length)
    config = model.config
    image_processor = make_image_processor(config.image_size, config.num_channels)
    processor_class = CLIPProcessor if config.has_clip_towers else VisionTextDualEncoderProcessor
    processor = processor_class(image_processor=image_processor, tokenizer=tokenizer)
    collator = ImageTextCollator(tokenizer, data_args.max_seq_length, config.image_size, data.num_channels)
    eval_transform = EvalTransform(config.image_size, config.num_channels)

    trainer = SSLTrainer(
        model=model,
        args=training_args,
        train_dataset=data.train,
        eval_dataset=data.eval,
        data_collator=collator,
        processing_class=processor,
        batch_transform=clip_batch_transform(model, processor),
        feature_transform=eval_transform,
    )
    if trainer.is_fsdp_enabled:
        raise ValueError(
            "CLIP does not run under FSDP yet (its temperature is a 0-d parameter, which FSDP2 cannot shard, and the "
            "export checks embeddings on one process): launch it with accelerate_config.yaml (DDP)."
        )
    train_and_save_state(trainer, training_args)
    trainer.save_metrics("data", {"skipped_images": data.skipped_images}, combined=True)  # --skip_bad_images
    export_backbone(trainer, model, processor)  # dual_encoder/, before the evaluation: a failing one cannot cost it
    metrics = {}
    if data.eval is not None:
        metrics = final_evaluation(trainer, model, tokenizer, data, eval_transform, templates, eval_args, data_args)
    card = lambda write: write_clip_model_card(  # noqa: E731
        training_args.output_dir, model, data.description, training_summary(training_args), metrics,
        repo_id=training_args.hub_model_id, write=write,
    )  # fmt: skip
    finish_run(trainer, card)
    return metrics


def load_or_train_tokenizer(model_args: ModelArguments, training_args, train_dataset):
    """The resumed checkpoint's tokenizer, else ``--tokenizer_name``, else the text checkpoint's, else a CLIP tokenizer
    trained on the captions: by the main process, saved in ``--output_dir`` and loaded there by the others, so every
    process numbers tokens alike (the BPE trainer orders equally frequent merges differently from run to run)."""
    source = (
        resumed_checkpoint(training_args)
        or model_args.tokenizer_name
        or (model_args.text_backbone if is_checkpoint(model_args.text_backbone) else None)
    )
    if source is not None:
        return AutoTokenizer.from_pretrained(source)
    with training_args.main_process_first(desc="training the tokenizer", local=False):
        if training_args.process_index == 0:
            tokenizer = train_clip_tokenizer(train_dataset["caption"], model_args.vocab_size)
            logger.info("Trained a CLIP tokenizer of %d tokens on %d captions.", len(tokenizer), len(train_dataset))
            tokenizer.save_pretrained(training_args.output_dir)
        else:
            tokenizer = AutoTokenizer.from_pretrained(training_args.output_dir)
    return tokenizer


def build_clip_model(model_args: ModelArguments, data, tokenizer, max_seq_length: int) -> CLIPPretrainingModel:
    """The towers named by the arguments (``auto``: CLIP's, sized for the data), CLIP's config with
    ``--config_overrides`` on top, and the checkpoints' weights in their towers."""
    auto = choose_auto_backbone(data.image_size, data.num_channels, len(data.train))
    image_size = model_args.image_size or auto.image_size
    sized = default_clip_towers(image_size, data.num_channels, len(data.train), tokenizer, max_seq_length)
    if AUTO_BACKBONE in (model_args.vision_backbone, model_args.text_backbone):
        logger.info(sized.message)
    if model_args.vision_backbone == AUTO_BACKBONE:
        vision_config = apply_config_overrides(sized.vision_config, model_args.vision_backbone_config_overrides)
    else:
        channels = data.num_channels if model_args.vision_backbone in BACKBONE_PRESETS else None
        vision_config = build_backbone_config(
            model_args.vision_backbone, model_args.vision_backbone_config_overrides, image_size, channels
        )
    text_config = text_tower_config(model_args, sized.text_config, tokenizer, max_seq_length)
    config = CLIPPretrainingConfig(
        vision_config=vision_config,
        text_config=text_config,
        projection_dim=sized.projection_dim,
        image_size=image_size,
    )
    config = apply_config_overrides(config, model_args.config_overrides)
    check_tokenizer_fits(config, tokenizer)
    model = CLIPPretrainingModel(config)
    for tower, name in (("vision_model", model_args.vision_backbone), ("text_model", model_args.text_backbone)):
        if is_checkpoint(name):
            getattr(model, tower).load_state_dict(AutoModel.from_pretrained(name).state_dict())
    return model


def text_tower_config(model_args: ModelArguments, auto_config, tokenizer, max_seq_length: int):
    """``auto``: the sized CLIP text config; a model type: its default config for this tokenizer (vocabulary, special
    ids, positions for ``max_seq_length``); a checkpoint: its own. ``--text_backbone_config_overrides`` on top."""
    name, overrides = model_args.text_backbone, model_args.text_backbone_config_overrides
    if name == AUTO_BACKBONE:
        return apply_config_overrides(auto_config, overrides)
    if is_checkpoint(name):
        config = AutoConfig.from_pretrained(name)
        if config.vocab_size < len(tokenizer):
            raise ValueError(
                f"The text checkpoint {name} has {config.vocab_size} token embeddings, fewer than the {len(tokenizer)} "
                "tokens of the tokenizer; pass --tokenizer_name with the checkpoint's own tokenizer."
            )
        return apply_config_overrides(config, overrides)
    # RoBERTa-style towers number positions from pad_token_id + 1: spare positions cost nothing
    positions = max_seq_length + (tokenizer.pad_token_id or 0) + 1
    sized = {"vocab_size": len(tokenizer), "max_position_embeddings": positions, **special_token_ids(tokenizer)}
    return apply_config_overrides(build_backbone_config(name), {**sized, **parse_config_overrides(overrides)})


def final_evaluation(trainer, model, tokenizer, data, eval_transform, templates, eval_args, data_args) -> dict:
    """Zero-shot classification over each class column and retrieval both ways on the eval split, for the trained
    towers and (``--baselines``) the same towers at random init; ``retrieval_examples.png`` of the trained ones."""
    loader = trainer.feature_dataloader(data.eval)
    evaluate = lambda network, picture: evaluate_dual_encoder(  # noqa: E731
        network, tokenizer, loader, eval_transform, data.eval, data.class_columns, templates,
        data_args.max_seq_length, trainer.accelerator, data.train, picture,
        unit_images=eval_transform.unit_images, collate=trainer.data_collator,
    )  # fmt: skip
    model.eval()
    metrics = evaluate(model, os.path.join(trainer.args.output_dir, RETRIEVAL_EXAMPLES))
    if eval_args.baselines:
        baseline = evaluate(random_init_copy(model, trainer.args.seed), None)
        metrics.update({f"random_init_{name}": value for name, value in baseline.items() if "candidates" not in name})
    trainer.log_metrics("eval", metrics)
    trainer.save_metrics("eval", metrics, combined=True)
    return metrics


if __name__ == "__main__":
    main()
