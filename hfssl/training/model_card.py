"""Model cards for hfssl checkpoints: one template for every method.

:func:`build_card` lays out every card the same way: Hub front matter (library, tags, datasets),
title, what the method is with its paper, data, training settings, results, the pictures found
in the output directory, and how to load the checkpoint. :func:`write_model_card` (vision),
:func:`write_language_model_card` (GPT, BERT, BART) and :func:`write_word2vec_model_card` fill in
the method-specific parts.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from typing import NamedTuple
from urllib.parse import quote

from ..evaluation.baselines import BASELINES


class Paper(NamedTuple):
    """A method's reference: ``citation`` ("Chen et al. 2020"), ``title``, a link when there is one,
    and one clause saying what the method does."""

    citation: str
    title: str
    url: str | None
    summary: str


def _arxiv(identifier: str) -> str:
    return f"https://arxiv.org/abs/{identifier}"


_SIMCLR = Paper(
    "Chen et al. 2020",
    "A Simple Framework for Contrastive Learning of Visual Representations",
    _arxiv("2002.05709"),
    "two augmented views of each image are embedded, and the NT-Xent (InfoNCE) loss pulls the two views "
    "of an image together and pushes them away from the other images of the batch",
)
_MOCO = Paper(
    "Chen et al. 2020",
    "Improved Baselines with Momentum Contrastive Learning",
    _arxiv("2003.04297"),
    "InfoNCE between a query view and a key view from a momentum (EMA) encoder, with negatives from a "
    "queue of past keys",
)
_MOCO_V3 = Paper(
    "Chen, Xie & He 2021",
    "An Empirical Study of Training Self-Supervised Vision Transformers",
    _arxiv("2104.02057"),
    "symmetric InfoNCE between a predictor on the online encoder and a momentum encoder, with the batch as negatives",
)
_DISTILLATION = Paper(
    "Chen et al. 2020",
    "Big Self-Supervised Models are Strong Semi-Supervised Learners",
    _arxiv("2006.10029"),
    "a student learns to match a pretrained teacher's soft labels on unlabelled images",
)
_RELATIVE_POSITION = Paper(
    "Doersch, Gupta & Efros 2015",
    "Unsupervised Visual Representation Learning by Context Prediction",
    _arxiv("1505.05192"),
    "predicts where one patch of an image lies relative to another",
)
_DENOISING = Paper(
    "Vincent et al. 2008",
    "Extracting and Composing Robust Features with Denoising Autoencoders",
    None,
    "reconstructs clean images from corrupted ones",
)

# The references of the methods of hfssl's design, by ``hfssl.METHODS`` name (with common aliases).
# A method missing here gets the citation its config docstring gives, without a summary.
PAPERS: dict[str, Paper] = {
    "simclr": _SIMCLR,
    "moco": _MOCO,
    "mocov2": _MOCO,
    "moco_v2": _MOCO,
    "mocov3": _MOCO_V3,
    "moco_v3": _MOCO_V3,
    "byol": Paper(
        "Grill et al. 2020",
        "Bootstrap Your Own Latent: A New Approach to Self-Supervised Learning",
        _arxiv("2006.07733"),
        "an online network with a predictor regresses the projection of another view made by an EMA "
        "target network; no negatives",
    ),
    "simsiam": Paper(
        "Chen & He 2021",
        "Exploring Simple Siamese Representation Learning",
        _arxiv("2011.10566"),
        "a predictor regresses the stop-gradient projection of the other view; no negatives and no momentum encoder",
    ),
    "barlow_twins": Paper(
        "Zbontar et al. 2021",
        "Barlow Twins: Self-Supervised Learning via Redundancy Reduction",
        _arxiv("2103.03230"),
        "drives the cross-correlation matrix of the two views' embeddings towards the identity",
    ),
    "vicreg": Paper(
        "Bardes, Ponce & LeCun 2022",
        "VICReg: Variance-Invariance-Covariance Regularization for Self-Supervised Learning",
        _arxiv("2105.04906"),
        "invariance between two views, with variance and covariance terms that keep every embedding "
        "dimension informative",
    ),
    "swav": Paper(
        "Caron et al. 2020",
        "Unsupervised Learning of Visual Features by Contrasting Cluster Assignments",
        _arxiv("2006.09882"),
        "predicts the Sinkhorn-balanced prototype assignment of one view from another",
    ),
    "dino": Paper(
        "Caron et al. 2021",
        "Emerging Properties in Self-Supervised Vision Transformers",
        _arxiv("2104.14294"),
        "a student matches the centred, sharpened outputs of an EMA teacher across global and local crops",
    ),
    "mae": Paper(
        "He et al. 2022",
        "Masked Autoencoders Are Scalable Vision Learners",
        _arxiv("2111.06377"),
        "reconstructs the pixels of randomly masked patches from the visible ones",
    ),
    "clip": Paper(
        "Radford et al. 2021",
        "Learning Transferable Visual Models From Natural Language Supervision",
        _arxiv("2103.00020"),
        "an image encoder and a text encoder are trained so that each image's embedding is nearest its own "
        "caption's among all captions of the batch (symmetric InfoNCE), which makes zero-shot classification by "
        "class-name prompts possible",
    ),
    "denoising_ae": _DENOISING,
    "dae": _DENOISING,
    "denoising_autoencoder": _DENOISING,
    "rotation": Paper(
        "Gidaris, Singh & Komodakis 2018",
        "Unsupervised Representation Learning by Predicting Image Rotations",
        _arxiv("1803.07728"),
        "predicts which of four rotations was applied to an image",
    ),
    "relative_position": _RELATIVE_POSITION,
    "context_prediction": _RELATIVE_POSITION,
    "jigsaw": Paper(
        "Noroozi & Favaro 2016",
        "Unsupervised Learning of Visual Representations by Solving Jigsaw Puzzles",
        _arxiv("1603.09246"),
        "predicts the permutation that shuffled an image's tiles",
    ),
    "colorization": Paper(
        "Zhang, Isola & Efros 2016",
        "Colorful Image Colorization",
        _arxiv("1603.08511"),
        "predicts the colours of an image from its lightness",
    ),
    "cpc": Paper(
        "van den Oord, Li & Vinyals 2018",
        "Representation Learning with Contrastive Predictive Coding",
        _arxiv("1807.03748"),
        "predicts future latent representations from a context, scored with InfoNCE",
    ),
    "igpt": Paper(
        "Chen et al. 2020",
        "Generative Pretraining from Pixels",
        None,
        "models images pixel by pixel with a causal transformer",
    ),
    "distillation": _DISTILLATION,
    "simclrv2_distillation": _DISTILLATION,
    "word2vec": Paper(
        "Mikolov et al. 2013",
        "Distributed Representations of Words and Phrases and their Compositionality",
        _arxiv("1310.4546"),
        "word vectors that predict the words around them",
    ),
    "gpt": Paper(
        "Radford et al. 2018/2019",
        "Improving Language Understanding by Generative Pre-Training",
        None,
        "predicts each next token",
    ),
    "bert": Paper(
        "Devlin et al. 2019",
        "BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding",
        _arxiv("1810.04805"),
        "predicts masked tokens and whether two segments follow each other",
    ),
    "bart": Paper(
        "Lewis et al. 2020",
        "BART: Denoising Sequence-to-Sequence Pre-training for Natural Language Generation, Translation, and "
        "Comprehension",
        _arxiv("1910.13461"),
        "reconstructs text from a noised version of it",
    ),
}

# Captions of the pictures hfssl writes; any other PNG in the output directory is captioned from its name.
PICTURE_CAPTIONS: dict[str, str] = {
    "training_curves.png": "Training curves: loss, learning rate, evaluation metrics and collapse monitors "
    "against the optimizer step.",
    "embedding_map.png": "Features of the evaluation images in two dimensions, coloured by label.",
    "retrieval_examples.png": "Held-out captions, each with the five held-out images nearest it, and where its own "
    "image ranks.",
    "colorizations.png": "Held-out images, the lightness the model saw of them, and its colourisation (the annealed "
    "mean of the predicted colour distribution beside the original lightness), at the last step.",
    "reconstructions.png": "Held-out images, what the model saw of them (masked patches, or corrupted pixels) and its "
    "reconstructions, at the last step.",
}

# Metrics that describe the run's cost rather than the model; they get their own table.
_RUN_METRIC_SUFFIXES = ("_runtime", "_per_second", "epoch")


# ----------------------------------------------------------------------------- the template


def build_card(
    *,
    name: str,
    tags: Sequence[str],
    intro: str,
    method: str,
    data: str,
    training: str,
    results: Mapping,
    usage: str,
    details: Sequence[str] = (),
    datasets: Sequence[str] = (),
    output_dir: str | os.PathLike | None = None,
) -> str:
    """The text of an hfssl model card (``README.md``), from its method-specific parts.

    Args:
        name: the title, and the repository the usage snippet loads from.
        tags: Hub tags after ``hfssl`` (duplicates dropped).
        intro: one sentence under the title.
        method: what the method is, with its paper (markdown; see :func:`method_paragraph`).
        data: what it was trained and evaluated on.
        training: the optimisation settings; a JSON object (as :func:`training_summary` writes) becomes a table.
        results: ``{metric: value}`` for one table, or ``{heading: {metric: value}}`` for one table each.
        usage: the "Use" section (markdown).
        details: bullet lines under the method (architecture, vocabulary, hyperparameters).
        datasets: Hub dataset ids for the front matter.
        output_dir: the folder whose PNGs are embedded (see :func:`pictures_section`).
    """
    sections = [
        front_matter(["hfssl", *tags], datasets),
        f"# {name}\n\n{intro}",
        "## Method\n\n" + method + ("\n\n" + "\n".join(f"- {line}" for line in details) if details else ""),
        f"## Data\n\n{data}",
        f"## Training\n\n{training_table(training)}",
        f"## Results\n\n{results_tables(results)}",
        pictures_section(output_dir) if output_dir is not None else "",
        f"## Use\n\n{usage.strip()}",
    ]
    return "\n\n".join(section for section in sections if section) + "\n"


def front_matter(tags: Sequence[str], datasets: Sequence[str] = ()) -> str:
    """The YAML header the Hub reads: ``library_name``, ``tags`` and, when known, ``datasets``."""
    lines = ["---", "library_name: transformers", "tags:", *(f"- {tag}" for tag in dict.fromkeys(tags))]
    if datasets:
        lines += ["datasets:", *(f"- {dataset}" for dataset in dict.fromkeys(datasets))]
    return "\n".join([*lines, "---"])


def method_paragraph(title: str, method: str, summary: str | None, paper: Paper | None) -> str:
    """``**title** (`hfssl.METHODS["method"]`): summary (citation, *linked title*).``; a paper
    without a title is cited by ``citation`` alone."""
    text = f'**{title}** (`hfssl.METHODS["{method}"]`)'
    if summary:
        text += f": {summary}"
    if paper is not None and paper.title:
        title_text = f"[*{paper.title}*]({paper.url})" if paper.url else f"*{paper.title}*"
        text += f" ({paper.citation}, {title_text})"
    elif paper is not None:
        text += f" ({paper.citation})"
    return text + "."


def training_table(summary: str) -> str:
    """``summary`` as a settings table when it is a JSON object, else as it is."""
    try:
        settings = json.loads(summary)
    except (TypeError, ValueError):
        return summary
    if not isinstance(settings, dict) or not settings:
        return summary
    rows = [f"| {_cell(key)} | {_cell(value)} |" for key, value in settings.items()]
    return "\n".join(["| setting | value |", "|---|---|", *rows])


def metrics_table(metrics: Mapping) -> str:
    """A markdown table of ``metrics`` sorted by name, floats to 4 decimals."""
    rows = [
        f"| {_cell(key)} | {value:.4f} |" if isinstance(value, float) else f"| {_cell(key)} | {_cell(value)} |"
        for key, value in sorted(metrics.items())
    ]
    return "\n".join(["| metric | value |", "|---|---|", *rows]) if rows else "No evaluation was run."


def _cell(value) -> str:
    return str(value).replace("|", "\\|")  # a bare pipe would end the table cell


def _number(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else _cell(value)


def baseline_table(metrics: Mapping) -> str:
    """Frozen-feature accuracies beside their baselines (``random_init_*``, ``raw_pixels_*`` keys, see
    :mod:`hfssl.evaluation.baselines`): one row per features, one column per protocol; "" without baselines."""
    protocols = [key for key in ("knn_accuracy", "linear_probe_accuracy") if key in metrics]
    rows = [("pretrained", "")] + [
        (label, f"{name}_")
        for name, label in BASELINES.items()
        if any(f"{name}_{key}" in metrics for key in protocols)
    ]
    if not protocols or len(rows) == 1:
        return ""
    header = "| features | " + " | ".join(protocols) + " |\n|---|" + "---|" * len(protocols)
    lines = [
        f"| {label} | " + " | ".join(_number(metrics.get(prefix + key, "")) for key in protocols) + " |"
        for label, prefix in rows
    ]
    return "\n".join([header, *lines])


def results_tables(results: Mapping) -> str:
    """One table per heading of ``{heading: metrics}``; a flat ``metrics`` dict is split into the
    model's results and, under "Run", the cost of the run (runtimes, throughputs, epochs); frozen-feature
    baselines, when present, come first as their own table (:func:`baseline_table`)."""
    comparison = (
        baseline_table(results) if results and not any(isinstance(v, Mapping) for v in results.values()) else ""
    )
    tables = _results_tables(results)
    return f"### Against baselines\n\n{comparison}\n\n{tables}" if comparison else tables


def _results_tables(results: Mapping) -> str:
    if results and all(isinstance(value, Mapping) for value in results.values()):
        groups = dict(results)
    else:
        is_run = lambda key: key.endswith(_RUN_METRIC_SUFFIXES)
        measured = {key: value for key, value in results.items() if not is_run(key)}
        run = {key: value for key, value in results.items() if is_run(key)}
        if not (measured and run):
            return metrics_table(results)
        groups = {"Evaluation": measured, "Run": run}
    return "\n\n".join(f"### {heading}\n\n{metrics_table(metrics)}" for heading, metrics in groups.items())


def pictures_section(output_dir: str | os.PathLike) -> str:
    """A "Pictures" section embedding every ``*.png`` directly in ``output_dir`` (the curves and the
    embedding map first), each with a one-line caption; "" when there is none.

    Links are relative to the card, so they render on the Hub once the folder is pushed.
    """
    pictures = list_pictures(output_dir)
    if not pictures:
        return ""
    blocks = [f"![{_alt_text(file)}]({quote(file)})\n\n*{_caption(file)}*" for file in pictures]
    return "## Pictures\n\n" + "\n\n".join(blocks)


def list_pictures(output_dir: str | os.PathLike) -> list[str]:
    """File names of the PNGs in ``output_dir``: those of :data:`PICTURE_CAPTIONS` in its order, then the rest sorted."""
    if not os.path.isdir(output_dir):
        return []
    files = [
        file
        for file in os.listdir(output_dir)
        if file.lower().endswith(".png") and os.path.isfile(os.path.join(output_dir, file))
    ]
    known = list(PICTURE_CAPTIONS)
    return sorted(files, key=lambda file: (known.index(file) if file in known else len(known), file))


def _alt_text(file: str) -> str:
    return os.path.splitext(file)[0].replace("_", " ").replace("-", " ").strip()


def _caption(file: str) -> str:
    return PICTURE_CAPTIONS.get(file) or _alt_text(file).capitalize() + "."


def hub_datasets(data_description: str) -> list[str]:
    """The Hub dataset ids named in a data description (hfssl's loaders write "Hub dataset <id> ...")."""
    return re.findall(r"\bHub dataset (\S+)", data_description)


def method_paper(method: str, config_class: type) -> Paper | None:
    """The reference of ``method``: from :data:`PAPERS`, else the first ``Author YEAR, "Title"`` of
    its config's docstring (without a link or summary), else None."""
    if method in PAPERS:
        return PAPERS[method]
    found = re.search(r"^\s*(\S[^\n\"]*? \d{4}(?:/\d{4})?), \"([^\"]+)\"", config_class.__doc__ or "", re.MULTILINE)
    return Paper(found.group(1), found.group(2), None, "") if found else None


def _card_name(output_dir: str, repo_id: str | None) -> str:
    return repo_id or os.path.basename(os.path.normpath(output_dir))


def _finish(output_dir: str, card: str, write: bool) -> str:
    if write:
        save_card(output_dir, card)
    return card


# ----------------------------------------------------------------------------- per modality


def _exported_network_sentence(model) -> str:
    """For methods with an EMA teacher: which of the two networks ``backbone/`` holds."""
    if not hasattr(model, "teacher_backbone"):
        return ""
    if model.exported_network == "teacher":
        return (
            " It is the **teacher** (the momentum-averaged network; `export_teacher=true`); the full model's "
            "`get_image_features` uses the student."
        )
    return " It is the **student** (the network trained by gradient); `export_teacher=true` exports the teacher."


def write_model_card(
    output_dir: str,
    model,
    method: str,
    data_description: str,
    training_summary: str,
    metrics: dict,
    repo_id: str | None = None,
    write: bool = True,
) -> str:
    """Return the card of a vision model and (with ``write``) save it as ``README.md`` in ``output_dir``.

    Usage snippets name ``repo_id`` (the Hub repository) when given, else the folder.
    """
    config = model.config
    name = _card_name(output_dir, repo_id)
    title = type(config).__name__.removesuffix("Config")
    backbone_type = config.backbone_config.model_type
    backbone_class = type(model.backbone).__name__
    paper = method_paper(method, type(config))
    num_parameters = sum(p.numel() for p in model.backbone.parameters())
    usage = f"""
```python
import hfssl  # registers the hfssl model types
from transformers import AutoModel, AutoImageProcessor

model = AutoModel.from_pretrained("{name}")           # {type(model).__name__}
processor = AutoImageProcessor.from_pretrained("{name}")
features = model.get_image_features(**processor(images, return_tensors="pt"))  # (B, {model.feature_dim})
```

The `backbone/` folder is a plain transformers `{backbone_class}` that loads without hfssl:
`AutoModel.from_pretrained("{name}", subfolder="backbone")`.{_exported_network_sentence(model)}
"""
    card = build_card(
        name=name,
        tags=["self-supervised-learning", method, backbone_type],
        intro=f"A {backbone_type} backbone pretrained with **{title}** using hfssl.",
        method=method_paragraph(title, method, paper.summary if paper else None, paper),
        details=[
            f"**Backbone:** `{backbone_type}`, {num_parameters:,} parameters, pooled features of width "
            f"{model.feature_dim} (pooling `{config.pooling}`)"
        ],
        data=data_description,
        training=training_summary,
        results=metrics,
        usage=usage,
        datasets=hub_datasets(data_description),
        output_dir=output_dir,
    )
    return _finish(output_dir, card, write)


def write_clip_model_card(
    output_dir: str,
    model,
    data_description: str,
    training_summary: str,
    metrics: dict,
    repo_id: str | None = None,
    write: bool = True,
) -> str:
    """Return the card of a CLIP model and (with ``write``) save it as ``README.md`` in ``output_dir``."""
    config = model.config
    name = _card_name(output_dir, repo_id)
    towers = f"{config.vision_config.model_type} + {config.text_config.model_type}"
    exported = "CLIPModel" if config.has_clip_towers else "VisionTextDualEncoderModel"
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    pipeline = (
        """
classifier = pipeline(
    "zero-shot-image-classification", model=model,
    tokenizer=processor.tokenizer, image_processor=processor.image_processor,
)
classifier(image, candidate_labels=["a cat", "a dog"])
"""
        if config.has_clip_towers
        else ""
    )
    usage = f"""
```python
from transformers import AutoModel, AutoProcessor, pipeline

model = AutoModel.from_pretrained("{name}", subfolder="{model.export_folder}")  # {exported}, no hfssl needed
processor = AutoProcessor.from_pretrained("{name}", subfolder="{model.export_folder}")
inputs = processor(text=captions, images=images, return_tensors="pt", padding=True)
outputs = model(**inputs)  # outputs.logits_per_image: (images, captions){pipeline}```

With hfssl installed, `AutoModel.from_pretrained("{name}")` restores the training checkpoint
(`{type(model).__name__}`), and `recipes/evaluate_clip.py --model_name_or_path {name}` runs the zero-shot and
retrieval evaluation on other data.
"""
    card = build_card(
        name=name,
        tags=["self-supervised-learning", "clip", "zero-shot-image-classification", *towers.split(" + ")],
        intro=f"A dual encoder ({towers}) pretrained with **CLIP** on image-caption pairs using hfssl.",
        method=method_paragraph("CLIP", "clip", PAPERS["clip"].summary, PAPERS["clip"]),
        details=[
            f"**Image tower:** `{config.vision_config.model_type}`, {count(model.vision_model):,} parameters",
            f"**Text tower:** `{config.text_config.model_type}`, {count(model.text_model):,} parameters, "
            f"{config.text_config.vocab_size:,} tokens",
            f"**Shared embedding:** {config.projection_dim} wide; logit multiplier {model.logit_multiplier().item():.2f} "
            f"(clamped at {config.max_logit_scale:g}); loss over the global batch"
            + (" (local rows against all columns)" if config.local_loss else ""),
        ],
        data=data_description,
        training=training_summary,
        results=_with_baseline_table(metrics, "Held-out pairs", "Same towers at random init"),
        usage=usage,
        datasets=hub_datasets(data_description),
        output_dir=output_dir,
    )
    return _finish(output_dir, card, write)


def _with_baseline_table(metrics: Mapping, heading: str, baseline_heading: str, prefix: str = "random_init_") -> dict:
    """``metrics`` as one table of the model's figures and one of the baseline's (the ``prefix``ed keys)."""
    baseline = {key[len(prefix) :]: value for key, value in metrics.items() if key.startswith(prefix)}
    model = {key: value for key, value in metrics.items() if not key.startswith(prefix)}
    return {heading: model, baseline_heading: baseline} if baseline else dict(model)


def write_language_model_card(
    output_dir: str,
    model,
    method: str,
    objective: str,
    paper: str,
    data_description: str,
    tokenizer,
    training_summary: str,
    metrics: dict,
    repo_id: str | None = None,
    write: bool = True,
) -> str:
    """Return the card of a language model (GPT, BERT, BART) and (with ``write``) save it as ``README.md``.

    ``objective`` says what the model learns to do; ``paper`` is the citation ("Devlin et al. 2019"),
    linked to its title when :data:`PAPERS` knows the method.
    """
    backbone = model.backbone
    name = _card_name(output_dir, repo_id)
    backbone_type = backbone.config.model_type
    backbone_class = type(backbone).__name__
    auto_class = model.config.backbone_auto_class.__name__
    reference = PAPERS[method]._replace(citation=paper) if method in PAPERS else Paper(paper, "", None, "")
    num_parameters = sum(p.numel() for p in backbone.parameters())
    tokenizer_text = f"{type(tokenizer.backend_tokenizer.model).__name__}, {len(tokenizer):,} tokens"
    usage = f"""
The `backbone/` folder is a plain transformers `{backbone_class}` with its tokenizer; it loads without hfssl:

```python
from transformers import {auto_class}, AutoTokenizer

model = {auto_class}.from_pretrained("{name}", subfolder="backbone")
tokenizer = AutoTokenizer.from_pretrained("{name}", subfolder="backbone")
```
"""
    title = type(model.config).__name__.removesuffix("Config")
    card = build_card(
        name=name,
        tags=["self-supervised-learning", method, backbone_type],
        intro=f"A {backbone_type} model pretrained with **{objective}** using hfssl.",
        method=method_paragraph(title, method, objective, reference),
        details=[
            f"**Model:** `{backbone_class}` (`{backbone_type}`), {num_parameters:,} parameters; tokenizer: {tokenizer_text}"
        ],
        data=data_description,
        training=training_summary,
        results=metrics,
        usage=usage,
        datasets=hub_datasets(data_description),
        output_dir=output_dir,
    )
    return _finish(output_dir, card, write)


def write_word2vec_model_card(
    output_dir: str,
    model,
    data_description: str,
    training_summary: str,
    metrics: dict,
    repo_id: str | None = None,
    write: bool = True,
) -> str:
    """Return the card of a word2vec model and (with ``write``) save it as ``README.md``."""
    config, tokenizer = model.config, model.tokenizer
    name = _card_name(output_dir, repo_id)
    mode = "skip-gram" if config.sg else "CBOW"
    pre_tokenizer = tokenizer.backend_tokenizer.pre_tokenizer.__getstate__() if tokenizer is not None else b"{}"
    pattern = json.loads(pre_tokenizer).get("pattern", {}).get("Regex", "?")
    lowercase = tokenizer is not None and tokenizer.backend_tokenizer.normalizer is not None
    summary = (
        "each word's vector predicts the words around it"
        if config.sg
        else f"the {'mean' if config.cbow_mean else 'sum'} of the context words' vectors predicts the word between them"
    ) + ", against negative samples drawn from the unigram distribution raised to `ns_exponent`"
    usage = f"""
```python
import hfssl  # registers the hfssl model types
from transformers import AutoModel

model = AutoModel.from_pretrained("{name}")    # Word2VecModel, with its vocabulary in model.tokenizer
model.most_similar("king", topn=5)
vectors = model.to_keyed_vectors()              # a gensim KeyedVectors
```
"""
    card = build_card(
        name=name,
        tags=["word2vec", "word-embeddings"],
        intro=f"Word vectors trained with **word2vec {mode}** (negative sampling) using hfssl.",
        method=method_paragraph(f"word2vec {mode}", "word2vec", summary, PAPERS["word2vec"]),
        details=[
            f"**Vocabulary:** {config.vocab_size - 1:,} words (`min_count={config.min_count}`), word pattern "
            f"`{pattern}`, lower-cased: {lowercase}",
            f"**Hyperparameters:** vector_size {config.vector_size}, window {config.window}, negative "
            f"{config.negative}, ns_exponent {config.ns_exponent}, sample {config.sample}",
        ],
        data=data_description,
        training=training_summary,
        results=metrics,
        usage=usage,
        datasets=hub_datasets(data_description),
        output_dir=output_dir,
    )
    return _finish(output_dir, card, write)


# ----------------------------------------------------------------------------- saving


class HfsslModelCardMixin:
    """For ``Trainer`` subclasses: write hfssl's card (``model_card_text``, set by the recipe once
    metrics are measured) instead of Trainer's supervised one."""

    model_card_text: str | None = None

    def create_model_card(self, *args, **kwargs) -> None:
        if self.model_card_text is None:
            return super().create_model_card(*args, **kwargs)
        if self.is_world_process_zero():
            save_card(self.args.output_dir, self.model_card_text)


def save_card(output_dir: str, card: str) -> None:
    """Write ``card`` as ``output_dir/README.md`` (the file the Hub shows as the model card)."""
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "README.md"), "w") as handle:
        handle.write(card)


def training_summary(args, optimizer: str | None = None) -> str:
    """One line describing the optimisation, from ``TrainingArguments`` (``optimizer`` names one
    that a trainer creates itself)."""
    if optimizer is None:
        optimizer = (
            "LARS"
            if getattr(args, "use_lars", False)
            else str(args.optim.value if hasattr(args.optim, "value") else args.optim)
        )
    return json.dumps(
        {
            "optimizer": optimizer,
            "learning_rate": args.learning_rate,
            "weight_decay": args.weight_decay,
            "per_device_batch_size": args.per_device_train_batch_size,
            "epochs": args.num_train_epochs,
            "max_steps": args.max_steps,
            "seed": args.seed,
        }
    )
