"""Model cards for hfssl checkpoints: method, data, backbone, metrics and how to use them."""

from __future__ import annotations

import json
import os

CARD_TEMPLATE = """---
library_name: transformers
tags:
- hfssl
- self-supervised-learning
- {method}
---

# {name}

A {backbone_type} backbone pretrained with **{method_title}** using hfssl.

- **Method:** {method_title} (`hfssl.METHODS["{method}"]`)
- **Data:** {data}
- **Backbone:** `{backbone_type}`, {num_parameters:,} parameters, pooled features of width {feature_dim} (pooling `{pooling}`)
- **Training:** {training}

## Results

{metrics_table}

## Use

```python
import hfssl  # registers the hfssl model types
from transformers import AutoModel, AutoImageProcessor

model = AutoModel.from_pretrained("{name}")           # {model_class}
processor = AutoImageProcessor.from_pretrained("{name}")
features = model.get_image_features(**processor(images, return_tensors="pt"))  # (B, {feature_dim})
```

The `backbone/` folder is a plain transformers `{backbone_class}` that loads without hfssl:
`AutoModel.from_pretrained("{name}", subfolder="backbone")`.
"""


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


def metrics_table(metrics: dict) -> str:
    rows = [
        f"| {key} | {value:.4f} |" if isinstance(value, float) else f"| {key} | {value} |"
        for key, value in sorted(metrics.items())
    ]
    return "\n".join(["| metric | value |", "|---|---|", *rows]) if rows else "No evaluation was run."


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
    """Return the card text and (with ``write``) save it as ``README.md`` in ``output_dir``.

    Usage snippets name ``repo_id`` (the Hub repository) when given, else the folder.
    """
    config = model.config
    card = CARD_TEMPLATE.format(
        name=repo_id or os.path.basename(os.path.normpath(output_dir)),
        method=method,
        method_title=type(config).__name__.removesuffix("Config"),
        data=data_description,
        backbone_type=config.backbone_config.model_type,
        backbone_class=type(model.backbone).__name__,
        model_class=type(model).__name__,
        num_parameters=sum(p.numel() for p in model.backbone.parameters()),
        feature_dim=model.feature_dim,
        pooling=config.pooling,
        training=training_summary,
        metrics_table=metrics_table(metrics),
    )
    if write:
        save_card(output_dir, card)
    return card


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


WORD2VEC_CARD_TEMPLATE = """---
library_name: transformers
tags:
- hfssl
- word2vec
- word-embeddings
---

# {name}

Word vectors trained with **word2vec {mode}** (negative sampling) using hfssl.

- **Method:** word2vec (`hfssl.METHODS["word2vec"]`), Mikolov et al. 2013
- **Data:** {data}
- **Vocabulary:** {vocab_size:,} words (`min_count={min_count}`), word pattern `{pattern}`, lower-cased: {lowercase}
- **Hyperparameters:** vector_size {vector_size}, window {window}, negative {negative}, ns_exponent {ns_exponent}, sample {sample}
- **Training:** {training}

## Results

{metrics_table}

## Use

```python
import hfssl  # registers the hfssl model types
from transformers import AutoModel

model = AutoModel.from_pretrained("{name}")    # Word2VecModel, with its vocabulary in model.tokenizer
model.most_similar("king", topn=5)
vectors = model.to_keyed_vectors()              # a gensim KeyedVectors
```
"""


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
    pre_tokenizer = tokenizer.backend_tokenizer.pre_tokenizer.__getstate__() if tokenizer is not None else b"{}"
    card = WORD2VEC_CARD_TEMPLATE.format(
        name=repo_id or os.path.basename(os.path.normpath(output_dir)),
        mode="skip-gram" if config.sg else "CBOW",
        data=data_description,
        vocab_size=config.vocab_size - 1,
        min_count=config.min_count,
        pattern=json.loads(pre_tokenizer).get("pattern", {}).get("Regex", "?"),
        lowercase=tokenizer is not None and tokenizer.backend_tokenizer.normalizer is not None,
        vector_size=config.vector_size,
        window=config.window,
        negative=config.negative,
        ns_exponent=config.ns_exponent,
        sample=config.sample,
        training=training_summary,
        metrics_table=metrics_table(metrics),
    )
    if write:
        save_card(output_dir, card)
    return card


LANGUAGE_MODEL_CARD_TEMPLATE = """---
library_name: transformers
tags:
- hfssl
- self-supervised-learning
- {method}
---

# {name}

A {backbone_type} model pretrained with **{objective}** using hfssl.

- **Method:** {method_title} (`hfssl.METHODS["{method}"]`), {paper}
- **Data:** {data}
- **Model:** `{backbone_class}` (`{backbone_type}`), {num_parameters:,} parameters; tokenizer: {tokenizer}
- **Training:** {training}

## Results

{metrics_table}

## Use

The `backbone/` folder is a plain transformers `{backbone_class}` with its tokenizer; it loads without hfssl:

```python
from transformers import {auto_class}, AutoTokenizer

model = {auto_class}.from_pretrained("{name}", subfolder="backbone")
tokenizer = AutoTokenizer.from_pretrained("{name}", subfolder="backbone")
```
"""


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
    """Return the card of a language model (GPT, BERT, BART) and (with ``write``) save it as ``README.md``."""
    backbone = model.backbone
    card = LANGUAGE_MODEL_CARD_TEMPLATE.format(
        name=repo_id or os.path.basename(os.path.normpath(output_dir)),
        method=method,
        method_title=type(model.config).__name__.removesuffix("Config"),
        objective=objective,
        paper=paper,
        data=data_description,
        backbone_type=backbone.config.model_type,
        backbone_class=type(backbone).__name__,
        auto_class=model.config.backbone_auto_class.__name__,
        num_parameters=sum(p.numel() for p in backbone.parameters()),
        tokenizer=f"{type(tokenizer.backend_tokenizer.model).__name__}, {len(tokenizer):,} tokens",
        training=training_summary,
        metrics_table=metrics_table(metrics),
    )
    if write:
        save_card(output_dir, card)
    return card
