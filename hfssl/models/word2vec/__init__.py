from .configuration_word2vec import Word2VecConfig
from .modeling_word2vec import Word2VecModel, Word2VecOutput

__all__ = ["Word2VecConfig", "Word2VecModel", "Word2VecOutput"]
