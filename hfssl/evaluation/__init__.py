"""Frozen-feature and fine-tuning evaluation protocols for self-supervised encoders."""

from .features import extract_features
from .finetune import ImageClassifier, finetune_classifier
from .frozen import FROZEN_PROTOCOLS, frozen_feature_metrics
from .knn import knn_accuracy, knn_predict
from .linear_probe import linear_probe_accuracy
from .metric_modules import available_metrics, compute_accuracy, load_metric
from .perplexity import perplexity, strided_perplexity
from .text_classification import compute_macro_f1
from .text_features import extract_text_features
from .text_finetune import finetune_text_classifier
from .text_linear_probe import linear_probe_text_classifier

__all__ = [
    "FROZEN_PROTOCOLS",
    "ImageClassifier",
    "available_metrics",
    "compute_accuracy",
    "compute_macro_f1",
    "extract_features",
    "extract_text_features",
    "finetune_classifier",
    "finetune_text_classifier",
    "frozen_feature_metrics",
    "knn_accuracy",
    "knn_predict",
    "linear_probe_accuracy",
    "linear_probe_text_classifier",
    "load_metric",
    "perplexity",
    "strided_perplexity",
]
