"""Downstream evaluation of text encoders: frozen features with a linear probe, fine-tuning, perplexity.

One module per protocol, as for images (:mod:`.features`, :mod:`.linear_probe`, :mod:`.finetune`):

* :mod:`.text_checkpoints`: loading a transformers text checkpoint and its tokenizer as plain
  transformers does (remote code is never run), refusing checkpoints that cannot be evaluated;
* :mod:`.text_features`: the encoder's last hidden states pooled to one vector per text
  (``cls``, ``mean`` or ``last``; ``auto`` picks by model type);
* :mod:`.text_linear_probe`: hfssl's standardised logistic regression on those frozen features;
* :mod:`.text_finetune`: ``AutoModelForSequenceClassification`` trained end to end with ``Trainer``;
* :mod:`.text_classification`: the class labels, ``accuracy``/``macro_f1`` scores and result type
  both classification protocols share;
* :mod:`.perplexity`: sliding-window perplexity of a causal LM.

This module gathers their public names, which ``recipes/evaluate_text.py`` imports from here.
"""

from .perplexity import (
    DOCUMENT_SEPARATOR,
    check_causal_lm,
    is_causal_lm_config,
    load_causal_lm,
    perplexity,
    strided_perplexity,
    strided_windows,
    token_stream,
)
from .text_checkpoints import (
    check_sequence_length,
    check_text_checkpoint,
    load_text_encoder,
    load_text_tokenizer,
    max_positions,
)
from .text_classification import (
    ClassificationResult,
    ClassLabels,
    classification_metrics,
    compute_macro_f1,
    encode_class_labels,
)
from .text_features import (
    CLS_POOLING_MODEL_TYPES,
    TEXT_POOLING_CHOICES,
    extract_text_features,
    pool_hidden_states,
    resolve_text_pooling,
)
from .text_finetune import finetune_text_classifier
from .text_linear_probe import linear_probe_predictions, linear_probe_text_classifier

__all__ = [
    "CLS_POOLING_MODEL_TYPES",
    "DOCUMENT_SEPARATOR",
    "TEXT_POOLING_CHOICES",
    "ClassLabels",
    "ClassificationResult",
    "check_causal_lm",
    "check_sequence_length",
    "check_text_checkpoint",
    "classification_metrics",
    "compute_macro_f1",
    "encode_class_labels",
    "extract_text_features",
    "finetune_text_classifier",
    "is_causal_lm_config",
    "linear_probe_predictions",
    "linear_probe_text_classifier",
    "load_causal_lm",
    "load_text_encoder",
    "load_text_tokenizer",
    "max_positions",
    "perplexity",
    "pool_hidden_states",
    "resolve_text_pooling",
    "strided_perplexity",
    "strided_windows",
    "token_stream",
]
