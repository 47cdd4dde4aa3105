from .arguments import SSLTrainingArguments
from .monitors import effective_rank, embedding_std
from .optim import LARS, decay_parameter_names
from .trainer import SSLTrainer

__all__ = ["LARS", "SSLTrainer", "SSLTrainingArguments", "decay_parameter_names", "effective_rank", "embedding_std"]
