"""Zero-shot classification and image-text retrieval of a dual encoder (CLIP), through ``evaluate`` metric modules.

Works on any model with ``get_image_features(pixel_values=...)`` and ``get_text_features(input_ids=...,
attention_mask=...)``: hfssl's :class:`~hfssl.models.clip.CLIPPretrainingModel` and the plain transformers exports
(``CLIPModel``, ``VisionTextDualEncoderModel``, whose methods return the projected embedding as ``pooler_output``).

* Zero-shot classification (Radford et al. 2021, sec. 3.1.4; open_clip's protocol): each class name is written into
  every prompt template, the caption embeddings of a class are L2-normalised, averaged and normalised again; an
  image's class is the nearest class embedding. Top-1 and top-5 accuracy (``top_k_accuracy`` module).
* Retrieval: every eval image against every eval caption, both ways; recall@1/5/10 (``retrieval_recall``
  module). A caption's relevant images are those whose own caption is the same text, and vice versa, so
  duplicate captions (the built-in digits have ten) count as the same answer.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..models.clip.modeling_clip import projected_embedding
from .metric_modules import load_metric

DEFAULT_TEMPLATES = ("{}", "a picture of {}.", "an image of {}.", "a photo of {}.")
RETRIEVAL_KS = (1, 5, 10)
ZERO_SHOT_KS = (1, 5)
RETRIEVAL_EXAMPLES = "retrieval_examples.png"
PICTURE_CAPTIONS = 6  # captions shown in retrieval_examples.png, each with its top-5 images
PICTURE_TOP_K = 5
CAPTION_LINE_CHARS = 18  # what fits the picture's left margin at its font size


def parse_templates(templates: str | Sequence[str] | None) -> tuple[str, ...]:
    """Prompt templates from ``"t1|t2|..."`` (or a list); each must hold one ``{}`` for the class name."""
    if templates is None:
        return DEFAULT_TEMPLATES
    parsed = tuple(t for t in (templates.split("|") if isinstance(templates, str) else templates) if t.strip())
    bad = [template for template in parsed if template.count("{}") != 1]
    if not parsed or bad:
        raise ValueError(
            f"Zero-shot templates must each hold one '{{}}' for the class name, separated by '|' (e.g. "
            f"'a photo of {{}}.|an emoji of {{}}'); got {bad or templates!r}."
        )
    return parsed


@torch.no_grad()
def encode_pairs(
    model, loader, preprocess: Callable[[torch.Tensor], torch.Tensor], accelerator=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """L2-normalised image and caption embeddings (N, E) each, on the CPU, of every batch of ``loader`` (dicts with
    uint8 "pixel_values", "input_ids", "attention_mask"), in loader order; with an ``accelerator`` (whose prepared
    loader shards the rows) gathered from every process."""
    device = accelerator.device if accelerator is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    images, texts = [], []
    try:
        for batch in loader:
            pixels = preprocess(batch["pixel_values"].to(device))
            image = projected_embedding(model.get_image_features(pixel_values=pixels))
            text = projected_embedding(
                model.get_text_features(
                    input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device)
                )
            )
            image, text = F.normalize(image.float(), dim=1), F.normalize(text.float(), dim=1)
            if accelerator is not None:
                image, text = accelerator.gather_for_metrics((image, text))
            images.append(image.cpu())
            texts.append(text.cpu())
    finally:
        model.train(was_training)
    if not images:
        raise ValueError("encode_pairs got an empty loader")
    return torch.cat(images), torch.cat(texts)


@torch.no_grad()
def encode_texts(model, tokenizer, texts: Sequence[str], max_length: int = 77, batch_size: int = 256) -> torch.Tensor:
    """L2-normalised caption embeddings (T, E) of ``texts``, on the CPU."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    chunks = []
    try:
        for start in range(0, len(texts), batch_size):
            tokens = tokenizer(
                list(texts[start : start + batch_size]), padding=True, truncation=True, max_length=max_length,
                return_tensors="pt",
            ).to(device)  # fmt: skip
            output = model.get_text_features(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
            chunks.append(F.normalize(projected_embedding(output).float(), dim=1).cpu())
    finally:
        model.train(was_training)
    return torch.cat(chunks)


def zero_shot_classifier(
    model, tokenizer, class_names: Sequence[str], templates: Sequence[str], max_length: int = 77
) -> torch.Tensor:
    """(C, E) class embeddings: per class, the normalised mean of its normalised prompt embeddings."""
    prompts = [template.format(name) for name in class_names for template in templates]
    embeddings = encode_texts(model, tokenizer, prompts, max_length).view(len(class_names), len(templates), -1)
    return F.normalize(embeddings.mean(dim=1), dim=1)


def zero_shot_accuracy(image_embeds: torch.Tensor, classifier: torch.Tensor, labels: Sequence[int]) -> dict:
    """Top-1 and top-5 accuracy (top-k for k up to the number of classes) of the nearest class embedding, and the
    balanced accuracy (top-1 recall averaged over the classes present: 1 / C by chance however unbalanced they are).

    Args:
        image_embeds: (N, E) normalised image embeddings; classifier: (C, E) class embeddings; labels: (N,) ids."""
    ks = [k for k in ZERO_SHOT_KS if k <= classifier.shape[0]]
    ranked = (image_embeds @ classifier.T).argsort(dim=1, descending=True)[:, : max(ks)]
    labels = np.asarray(labels)
    result = load_metric("top_k_accuracy").compute(predictions=ranked.numpy(), references=labels, k=ks)
    hits = ranked[:, 0].numpy() == labels
    result["balanced_accuracy"] = float(np.mean([hits[labels == label].mean() for label in np.unique(labels)]))
    return result


def relevant_sets(captions: Sequence[str]) -> list[list[int]]:
    """For each row, the rows with the same caption text (itself included)."""
    rows_of: dict[str, list[int]] = {}
    for row, caption in enumerate(captions):
        rows_of.setdefault(caption, []).append(row)
    return [rows_of[caption] for caption in captions]


def retrieval_recall(image_embeds: torch.Tensor, text_embeds: torch.Tensor, captions: Sequence[str]) -> dict:
    """Image-to-text and text-to-image recall@1/5/10 (k up to N) of N paired, normalised embeddings (N, E).

    Returns ``image_to_text_recall@k`` and ``text_to_image_recall@k``."""
    ks = [k for k in RETRIEVAL_KS if k <= len(captions)]
    relevant = relevant_sets(captions)
    similarity = image_embeds @ text_embeds.T  # (N images, N captions)
    metric = load_metric("retrieval_recall")
    results = {}
    for direction, scores in (("image_to_text", similarity), ("text_to_image", similarity.T)):
        ranked = scores.argsort(dim=1, descending=True)[:, : max(ks)].numpy()
        recalls = metric.compute(predictions=ranked, references=relevant, k=ks)
        results.update({f"{direction}_{name}": value for name, value in recalls.items()})
    return results


def class_labels(dataset, column: str, train_dataset=None) -> tuple[list[str], list[int]]:
    """The class names of ``column`` (a ``ClassLabel``'s names, else the sorted distinct values of ``dataset`` and
    ``train_dataset``) and the class id of each row of ``dataset``."""
    feature = dataset.features[column]
    if hasattr(feature, "names"):
        return list(feature.names), list(dataset[column])
    values = [str(value) for value in dataset[column]]
    known = set(values) | (
        {str(value) for value in train_dataset.unique(column)} if train_dataset is not None else set()
    )
    names = sorted(known)
    index = {name: position for position, name in enumerate(names)}
    return names, [index[value] for value in values]


def image_text_metrics(
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    captions: Sequence[str],
    zero_shot: dict[str, tuple[torch.Tensor, list[int]]],
) -> dict:
    """Retrieval recall both ways and, per class column, zero-shot top-1/top-5 with the chance level.

    Args:
        image_embeds, text_embeds: (N, E) normalised embeddings of the N eval pairs; captions: their N captions.
        zero_shot: column -> (its (C, E) class embeddings, the (N,) class ids of the eval images).
    Returns: ``image_to_text_recall@k``, ``text_to_image_recall@k``, ``retrieval_candidates`` (N: recall@k by
    chance is k / N), and per column ``zero_shot_<column>_top_1_accuracy``, ``..._top_5_accuracy`` and
    ``zero_shot_<column>_classes`` (C) and ``zero_shot_<column>_majority_share`` (the share of the most frequent
    class: the top-1 of always answering it, the bar for unbalanced classes)."""
    metrics = retrieval_recall(image_embeds, text_embeds, captions)
    metrics["retrieval_candidates"] = len(captions)
    for column, (classifier, labels) in zero_shot.items():
        accuracy = zero_shot_accuracy(image_embeds, classifier, labels)
        metrics.update({f"zero_shot_{column}_{name}": value for name, value in accuracy.items()})
        metrics[f"zero_shot_{column}_classes"] = classifier.shape[0]
        metrics[f"zero_shot_{column}_majority_share"] = float(np.bincount(labels).max() / len(labels))
    return metrics


def plot_retrieval_examples(
    images_at: Callable[[list[int]], torch.Tensor],
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    captions: Sequence[str],
    path,
) -> str:
    """``retrieval_examples.png``: :data:`PICTURE_CAPTIONS` eval captions, evenly spread over the split, each with its
    top-5 images; the row's label says where the caption's own image ranks.

    Args:
        images_at: eval rows -> their images (k, C, H, W) in [0, 1] (only the images shown are loaded);
        image_embeds, text_embeds, captions: as for :func:`retrieval_recall`.
    """
    from ..training.plots import plot_image_panels

    rows = np.unique(np.linspace(0, len(captions) - 1, min(PICTURE_CAPTIONS, len(captions))).round().astype(int))
    relevant = relevant_sets(captions)
    ranked = (text_embeds[rows] @ image_embeds.T).argsort(dim=1, descending=True)
    top = min(PICTURE_TOP_K, len(captions))
    panels = {}
    for row, order in zip(rows.tolist(), ranked):
        rank = next(position for position, image in enumerate(order.tolist()) if image in relevant[row]) + 1
        lines = textwrap.wrap(captions[row], CAPTION_LINE_CHARS) or [""]
        caption = "\n".join(lines[:2]) + ("…" if len(lines) > 2 else "")
        panels[f"{caption}\n(its image: rank {rank})"] = images_at(order[:top].tolist())
    os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
    return plot_image_panels(panels, path, title=f"top-{top} of {len(captions)} held-out images per caption")


def evaluate_dual_encoder(
    model,
    tokenizer,
    loader,
    preprocess: Callable[[torch.Tensor], torch.Tensor],
    eval_dataset,
    class_columns: Sequence[str] = (),
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    max_length: int = 77,
    accelerator=None,
    train_dataset=None,
    picture_path: str | os.PathLike | None = None,
    unit_images: Callable[[torch.Tensor], torch.Tensor] | None = None,
    collate: Callable | None = None,
) -> dict:
    """Zero-shot classification over each of ``class_columns`` and retrieval both ways on ``eval_dataset`` (see
    :func:`image_text_metrics`), and ``retrieval_examples.png`` at ``picture_path`` when given (on the main process).

    Args:
        loader: the eval split's batches in order (``ImageTextCollator``; prepared by ``accelerator`` when given);
        preprocess: uint8 images -> the model's normalised input (:class:`hfssl.augment.EvalTransform`);
        train_dataset: its class values join the eval split's in the class names of string columns;
        unit_images, collate: for the picture, uint8 images -> [0, 1] floats and rows -> batch.
    """
    image_embeds, text_embeds = encode_pairs(model, loader, preprocess, accelerator)
    captions = list(eval_dataset["caption"])
    if len(captions) != image_embeds.shape[0]:
        raise ValueError(f"The loader gave {image_embeds.shape[0]} pairs for an eval split of {len(captions)}.")
    zero_shot = {}
    for column in class_columns:
        names, labels = class_labels(eval_dataset, column, train_dataset)
        zero_shot[column] = (zero_shot_classifier(model, tokenizer, names, templates, max_length), labels)
    metrics = image_text_metrics(image_embeds, text_embeds, captions, zero_shot)
    main_process = accelerator is None or accelerator.is_main_process
    if picture_path is not None and main_process and unit_images is not None and collate is not None:

        def images_at(rows: list[int]) -> torch.Tensor:
            return unit_images(collate([eval_dataset[row] for row in rows])["pixel_values"]).cpu()

        plot_retrieval_examples(images_at, image_embeds, text_embeds, captions, picture_path)
    return metrics
