#!/usr/bin/env python
"""Evaluate an image-text dual encoder: zero-shot classification and retrieval on image-caption pairs.

    python recipes/evaluate_clip.py --model_name_or_path runs/clip/dual_encoder \
        --train_dir ../shared/data/emoji-captions --zero_shot_columns group,subgroup --output_dir runs/clip-eval

``--model_name_or_path`` is an hfssl CLIP checkpoint, or a plain transformers ``CLIPModel`` or
``VisionTextDualEncoderModel`` with its processor (the ``dual_encoder/`` folder pretraining exports, or a Hub model
such as openai/clip-vit-base-patch32). Images are preprocessed on the device as hfssl trains: resized to the saved
image processor's size (bilinear) and normalised with its statistics, which for non-square images differs from
``CLIPImageProcessor``'s shortest-edge resize and centre crop. Captions are cut at ``--max_seq_length`` or the
tokenizer's or text tower's limit, whichever is smaller. The pairs are the eval split the data arguments resolve (the same held-out
share as pretraining with the same ``--split_seed``); with ``--validation_split_percentage 0`` and no eval split,
every pair. Results (zero-shot top-1/top-5 per ``--zero_shot_columns`` column, retrieval recall@1/5/10 both ways)
go to ``eval_results.json`` in ``--output_dir``, with ``retrieval_examples.png``.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import Optional

import torch
from torch.utils.data import DataLoader
from transformers import AutoModel, AutoProcessor, HfArgumentParser, set_seed

import hfssl  # noqa: F401  (registers hfssl model types with AutoModel)
from hfssl.data.image_text import ImageTextCollator, ImageTextDataArguments, load_image_text_datasets
from hfssl.evaluation.zero_shot import RETRIEVAL_EXAMPLES, evaluate_dual_encoder, parse_templates
from hfssl.preprocessing import eval_transform_from_pretrained
from hfssl.training.argument_checks import require_int_flag

logger = logging.getLogger(__name__)


@dataclass
class EvaluationArguments:
    model_name_or_path: str = field(
        metadata={"help": "hfssl CLIP checkpoint, or a transformers CLIPModel / VisionTextDualEncoderModel directory."}
    )
    zero_shot_templates: Optional[str] = field(
        default=None,
        metadata={"help": "Prompt templates with {} for the class name, separated by '|' (default: 4 generic ones)."},
    )
    batch_size: int = field(default=256, metadata={"help": "Pairs per forward pass."})
    output_dir: Optional[str] = field(
        default=None, metadata={"help": "Where eval_results.json and retrieval_examples.png go; default: print only."}
    )
    seed: int = field(default=42, metadata={"help": "Seed (the evaluation itself draws nothing)."})

    def __post_init__(self):
        require_int_flag(self, "batch_size", 1, "pairs per forward pass")


def vision_channels(config) -> int:
    """Channels the image tower takes, for hfssl's and transformers' dual encoders alike."""
    return getattr(getattr(config, "vision_config", config), "num_channels", 3)


def caption_length(config, tokenizer, max_seq_length: int) -> int:
    """``--max_seq_length``, or less where the tokenizer (``model_max_length``) or the text tower's positions say so."""
    positions = getattr(getattr(config, "text_config", None), "max_position_embeddings", None)
    return min(length for length in (max_seq_length, tokenizer.model_max_length, positions) if length)


def main(argv=None) -> dict:
    parser = HfArgumentParser((EvaluationArguments, ImageTextDataArguments))
    args, data_args = parser.parse_args_into_dataclasses(args=argv)
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    templates = parse_templates(args.zero_shot_templates)
    set_seed(args.seed)
    model = AutoModel.from_pretrained(args.model_name_or_path)
    if not (hasattr(model, "get_image_features") and hasattr(model, "get_text_features")):
        raise ValueError(
            f"{args.model_name_or_path} is a {type(model).__name__}, not an image-text dual encoder (it lacks "
            "get_image_features / get_text_features); evaluate image backbones with recipes/evaluate_vision.py."
        )
    processor = AutoProcessor.from_pretrained(args.model_name_or_path)
    tokenizer = processor.tokenizer
    channels = vision_channels(model.config)
    eval_transform = eval_transform_from_pretrained(args.model_name_or_path, channels)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device).eval()
    eval_transform.to(device)

    max_length = caption_length(model.config, tokenizer, data_args.max_seq_length)
    data = load_image_text_datasets(data_args)
    pairs = data.eval if data.eval is not None else data.train
    collator = ImageTextCollator(tokenizer, max_length, eval_transform.image_size, data.num_channels)
    loader = DataLoader(pairs, batch_size=args.batch_size, collate_fn=collator)
    picture = os.path.join(args.output_dir, RETRIEVAL_EXAMPLES) if args.output_dir else None
    metrics = evaluate_dual_encoder(
        model, tokenizer, loader, eval_transform, pairs, data.class_columns, templates, max_length,
        train_dataset=data.train if pairs is not data.train else None, picture_path=picture,
        unit_images=eval_transform.unit_images, collate=collator,
    )  # fmt: skip
    for name, value in sorted(metrics.items()):
        logger.info("%s = %s", name, value)
    if args.output_dir:
        os.makedirs(args.output_dir, exist_ok=True)
        with open(os.path.join(args.output_dir, "eval_results.json"), "w") as handle:
            json.dump(metrics, handle, indent=2)
    return metrics


if __name__ == "__main__":
    main()
