from .configuration_word2vec import Word2VecConfig
from .modeling_word2vec import Word2VecModel, Word2VecOutput, Word2VecTrainingRows, word2vec_batch_transform

__all__ = ["Word2VecConfig", "Word2VecModel", "Word2VecOutput", "Word2VecTrainingRows", "word2vec_batch_transform"]
