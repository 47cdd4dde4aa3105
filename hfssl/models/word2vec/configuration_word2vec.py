"""word2vec configuration."""

from __future__ import annotations

from transformers import PreTrainedConfig

LOSS_IMPLEMENTATIONS = ("auto", "sequential", "fused", "autograd")


class Word2VecConfig(PreTrainedConfig):
    """Configuration of :class:`~hfssl.models.word2vec.Word2VecModel`.

    Mikolov et al. 2013, "Efficient Estimation of Word Representations in Vector Space" and
    "Distributed Representations of Words and Phrases and their Compositionality". Names and
    defaults follow gensim's ``Word2Vec`` so that settings carry over.

    Args:
        vocab_size: rows of both embedding matrices, special tokens included (id ``unk_token_id``
            is the unknown word; it is never trained and never drawn as a negative).
        vector_size: width of the word vectors.
        sg: ``True`` for skip-gram, ``False`` for CBOW.
        window: largest distance between the center word and a context word; each center draws
            its own window in ``[1, window]`` ("window shrinking", as word2vec.c).
        negative: negative samples per positive (word2vec's negative sampling; no hierarchical softmax).
        ns_exponent: exponent of the unigram counts in the noise distribution (paper: 0.75).
        sample: frequent-word subsampling threshold ``t`` (0 turns subsampling off).
        cbow_mean: CBOW input is the mean (``True``) or the sum of the context vectors.
        loss_implementation: how a training step computes the loss and its gradients:
            ``"sequential"`` (CPU: a compiled kernel walks the pairs one after the other exactly as
            word2vec.c does, see :mod:`~hfssl.models.word2vec.sequential_sgd`), ``"fused"`` (any
            device: torch ops over chunks of ``chunk_size`` rows, each chunk after the updates of
            the chunks before it, see :mod:`~hfssl.models.word2vec.negative_sampling`),
            ``"autograd"`` (the reference; with sparse embedding gradients when
            ``set_sparse_gradients(True)``) or ``"auto"`` (the default: ``"sequential"`` for CPU
            weights when a C++ compiler is present, ``"fused"`` otherwise). Only ``"sequential"`` and
            ``"fused"`` apply a batch's updates in sequence, which large batches need.
        shared_negatives: skip-gram only: the pairs of one center's window share its ``negative``
            noise words (Ji et al. 2016, "Parallelizing Word2Vec in Shared and Distributed Memory"),
            so a window costs one small matrix product instead of a dot product per pair and noise
            word; each pair's negatives still follow the noise distribution, but they are no longer
            independent across the window (word2vec.c draws them per pair). Default off.
        chunk_size: rows per chunk of the fused loss: the granularity at which a batch's SGD updates
            are applied one after the other (word2vec: 1 pair; 512-4096 gave the same scores).
        min_count, max_vocab_size: the vocabulary rule the model was built with (recorded for the
            model card and for re-building a vocabulary the same way; the vocabulary itself is the
            tokenizer saved beside the weights).
    """

    model_type = "hfssl_word2vec"

    vocab_size: int = 2
    vector_size: int = 100
    sg: bool = True
    window: int = 5
    negative: int = 5
    ns_exponent: float = 0.75
    sample: float = 1e-3
    cbow_mean: bool = True
    min_count: int = 5
    max_vocab_size: int | None = None
    unk_token_id: int = 0
    loss_implementation: str = "auto"
    shared_negatives: bool = False
    chunk_size: int = 4096
    tie_word_embeddings: bool = False  # input and output vectors are distinct matrices

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        checks = {
            "vocab_size": self.vocab_size >= 2,
            "vector_size": self.vector_size >= 1,
            "window": self.window >= 1,
            "negative": self.negative >= 1,
            "sample": self.sample >= 0,
            "min_count": self.min_count >= 0,
            "chunk_size": self.chunk_size >= 1,
        }
        for name, ok in checks.items():
            if not ok:
                hint = (
                    " (hierarchical softmax is not implemented: use negative sampling)" if name == "negative" else ""
                )
                raise ValueError(f"Word2VecConfig.{name}={getattr(self, name)!r} is out of range{hint}.")
        if self.shared_negatives and not self.sg:
            raise ValueError(
                "Word2VecConfig.shared_negatives is a skip-gram option (CBOW already has one set of negatives per window)."
            )
        if self.loss_implementation not in LOSS_IMPLEMENTATIONS:
            raise ValueError(
                f"Word2VecConfig.loss_implementation must be one of {LOSS_IMPLEMENTATIONS}, got {self.loss_implementation!r}."
            )
        if self.shared_negatives and self.loss_implementation == "sequential":
            raise ValueError(
                "Word2VecConfig.shared_negatives runs on the fused or autograd loss, not the sequential kernel."
            )
        if not 0 <= self.unk_token_id < self.vocab_size:
            raise ValueError(
                f"Word2VecConfig.unk_token_id={self.unk_token_id} must be an id below vocab_size={self.vocab_size}."
            )
