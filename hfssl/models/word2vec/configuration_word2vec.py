"""word2vec configuration."""

from __future__ import annotations

from ..checks import (
    CheckedConfig,
    is_int,
    require,
    require_bool,
    require_choice,
    require_int,
    require_optional_int,
    require_real,
)

LOSS_IMPLEMENTATIONS = ("auto", "sequential", "fused", "autograd")


class Word2VecConfig(CheckedConfig):
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

    def check_ranges(self) -> None:
        """Sizes and counts are ints in range, ``sample`` >= 0, the flags are flags, the options are known
        ones and fit together (``shared_negatives`` is a skip-gram option of the fused and autograd losses)."""
        super().check_ranges()
        require_int(self, "vocab_size", 2, "the unknown word and at least one word")
        require_int(self, "vector_size", 1, "the width of the word vectors")
        require_int(self, "window", 1, "the largest center-context distance")
        require_int(self, "negative", 1, "hierarchical softmax is not implemented: use negative sampling")
        require_real(self, "ns_exponent", hint="the exponent of the counts in the noise distribution; 0.75 is usual")
        require_real(
            self,
            "sample",
            0,
            1,
            high_open=True,
            hint="the subsampling threshold; 0 turns subsampling off, 1e-3 to 1e-5 are usual",
        )
        require_int(self, "min_count", 0, "the fewest occurrences a word of the vocabulary has")
        require_optional_int(self, "max_vocab_size", 1, "the most words the vocabulary keeps")
        require_int(self, "chunk_size", 1, "rows per chunk of the fused loss")
        for name in ("sg", "cbow_mean", "shared_negatives"):
            require_bool(self, name)
        require(
            self, "tie_word_embeddings", not self.tie_word_embeddings, "False (input and output vectors are distinct)"
        )
        require_choice(self, "loss_implementation", LOSS_IMPLEMENTATIONS)
        require(
            self,
            "unk_token_id",
            is_int(self.unk_token_id) and 0 <= self.unk_token_id < self.vocab_size,
            f"an id in [0, vocab_size - 1 = {self.vocab_size - 1}]",
        )
        require(
            self,
            "shared_negatives",
            not (self.shared_negatives and not self.sg),
            "False with sg=False: it is a skip-gram option (CBOW already has one set of negatives per window)",
        )
        require(
            self,
            "shared_negatives",
            not (self.shared_negatives and self.loss_implementation == "sequential"),
            "False with loss_implementation='sequential': it runs on the fused or autograd loss, not the sequential kernel",
        )
