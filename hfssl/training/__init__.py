from .arguments import PretrainingArguments, SSLTrainingArguments, parse_recipe_arguments, resumed_checkpoint
from .monitors import effective_rank, embedding_std
from .optim import LARS, decay_parameter_names
from .trainer import SSLTrainer, StepHooks, TransformTrainer
from .word2vec import Word2VecTrainer, Word2VecTrainingArguments

__all__ = [
    "LARS",
    "PretrainingArguments",
    "SSLTrainer",
    "SSLTrainingArguments",
    "StepHooks",
    "TransformTrainer",
    "Word2VecTrainer",
    "Word2VecTrainingArguments",
    "decay_parameter_names",
    "effective_rank",
    "embedding_std",
    "parse_recipe_arguments",
    "resumed_checkpoint",
]
