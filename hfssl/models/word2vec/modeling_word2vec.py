"""word2vec (skip-gram and CBOW with negative sampling) as a transformers ``PreTrainedModel``.

Mikolov et al. 2013, "Distributed Representations of Words and Phrases and their
Compositionality". The update rule is word2vec.c's (and gensim's), written as a loss:

* skip-gram: each row pairs one context word with its center word; the context word's input
  vector ``v`` predicts the center word's output vector ``u`` (word2vec.c's orientation);
* CBOW: the mean (or sum) ``h`` of the context words' input vectors predicts the center word;

and for either, with ``K`` negatives ``n_k`` drawn from the unigram^0.75 distribution,

    loss = sum over rows of  -log sigmoid(u_center . h) - sum_k log sigmoid(-u_{n_k} . h).

The loss is a **sum** over rows, not a mean, so that plain SGD with learning rate ``alpha`` gives
every pair word2vec's step of size ``alpha``. Given that ``alpha`` (``sgd_step_size``, as
``Word2VecTrainer`` passes it), the training loss evaluates each row (the sequential CPU kernel)
or each chunk of rows (the fused torch loss) after the updates of the rows before it, so one
optimizer step applies a large batch's updates in sequence as word2vec does (summing them at the
same weights diverges). A negative equal to
the center word is skipped (weight 0), as gensim does. With ``cbow_mean``, every context vector
receives the full error, not 1/n of it (word2vec.c and gensim do this; it is not the gradient of
the mean).

The vocabulary is a word-level tokenizer kept beside the weights: ``from_pretrained`` loads it
into ``model.tokenizer`` and ``save_pretrained`` writes it, so words and vectors travel together.
Interop with gensim: :meth:`to_keyed_vectors`, :meth:`from_keyed_vectors`, :meth:`from_gensim`,
:meth:`save_word2vec_format`, :meth:`from_word2vec_format`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerFast
from transformers.utils import ModelOutput

from ...data.word2vec import alias_table, keep_probabilities, noise_distribution, training_rows
from ...tokenization import UNK_TOKEN, UNK_TOKEN_ID, vocabulary_words, word_level_tokenizer
from ...transforms import BatchTransform
from . import sequential_sgd
from .configuration_word2vec import Word2VecConfig
from .negative_sampling import fused_negative_sampling_loss, negative_sampling_loss

logger = logging.getLogger(__name__)

_HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder")


@dataclass
class Word2VecOutput(ModelOutput):
    """
    Args:
        loss: scalar, the negative-sampling loss summed over the rows of the batch.
        num_pairs: number of rows (skip-gram pairs or CBOW windows) the loss sums over.
    """

    loss: torch.FloatTensor | None = None
    num_pairs: torch.LongTensor | None = None


class Word2VecModel(PreTrainedModel):
    """Input and output embedding matrices, (vocab_size, vector_size) each, plus the word counts
    (``word_counts``, (vocab_size,) int64, saved with the weights) that define the noise distribution."""

    config_class = Word2VecConfig
    base_model_prefix = "word2vec"
    main_input_name = "center_ids"
    accepts_loss_kwargs = False

    def __init__(self, config: Word2VecConfig):
        super().__init__(config)
        self.input_embeddings = nn.Embedding(config.vocab_size, config.vector_size)
        self.output_embeddings = nn.Embedding(config.vocab_size, config.vector_size)
        self.register_buffer("word_counts", torch.zeros(config.vocab_size, dtype=torch.long))
        self.tokenizer: PreTrainedTokenizerFast | None = None
        self._noise_cache: tuple | None = None
        self._keep_cache: tuple | None = None
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module):
        """word2vec.c: input vectors uniform in [-0.5, 0.5] / vector_size, output vectors zero.
        The unknown word's input row is zero: it is never trained."""
        if module is self.input_embeddings:
            nn.init.uniform_(module.weight, -0.5 / self.config.vector_size, 0.5 / self.config.vector_size)
            module.weight[self.config.unk_token_id].zero_()
        elif module is self.output_embeddings:
            nn.init.zeros_(module.weight)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.input_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.input_embeddings = value

    def set_sparse_gradients(self, sparse: bool) -> None:
        """Sparse (rows touched only) or dense gradients for both matrices, with
        ``loss_implementation="autograd"`` (the fused loss always gives dense ones); plain SGD takes either."""
        self.input_embeddings.sparse = sparse
        self.output_embeddings.sparse = sparse

    # ---- vocabulary -------------------------------------------------------------------------
    def set_tokenizer(self, tokenizer: PreTrainedTokenizerFast) -> None:
        """Attach the vocabulary; it must number exactly ``config.vocab_size`` words."""
        if len(tokenizer) != self.config.vocab_size:
            raise ValueError(
                f"The tokenizer has {len(tokenizer)} tokens but the model has {self.config.vocab_size} word vectors: "
                "they come from different vocabularies. Load the tokenizer saved with these weights."
            )
        self.tokenizer = tokenizer

    def set_word_counts(self, counts) -> None:
        """Corpus counts per id, (vocab_size,); they define the noise distribution."""
        counts = torch.as_tensor(counts, dtype=torch.long)
        if counts.shape != self.word_counts.shape:
            raise ValueError(f"word counts have shape {tuple(counts.shape)}, expected ({self.config.vocab_size},).")
        self.word_counts.copy_(counts)

    @property
    def words(self) -> list[str]:
        """Words in id order (``[UNK]`` at id 0)."""
        if self.tokenizer is None:
            raise ValueError(
                "This model has no vocabulary attached: load it with from_pretrained(dir) or call set_tokenizer()."
            )
        return vocabulary_words(self.tokenizer)

    # ---- training ---------------------------------------------------------------------------
    def noise_table(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The noise distribution (counts ** ns_exponent, normalised) as an alias table on the
        model's device: ``(threshold, alias)``, (vocab_size,) float32 and int64 (see
        :func:`hfssl.data.word2vec.alias_table`)."""
        key = self._counts_key()
        if self._noise_cache is None or self._noise_cache[0] != key:
            if not bool((self.word_counts > 0).any()):
                raise ValueError(
                    "The model has no word counts, so it cannot draw negatives. Build it with hfssl's word2vec recipe, "
                    "or call model.set_word_counts(counts) with the corpus frequency of every id."
                )
            threshold, alias = alias_table(noise_distribution(self.word_counts.cpu().numpy(), self.config.ns_exponent))
            device = self.word_counts.device
            table = (
                torch.as_tensor(threshold, dtype=torch.float32, device=device),
                torch.as_tensor(alias, device=device),
            )
            self._noise_cache = (key, table)
        return self._noise_cache[1]

    def _counts_key(self) -> tuple:
        """Changes whenever ``word_counts`` is replaced, moved or written in place (loading, ``set_word_counts``)."""
        return (self.word_counts.device, self.word_counts.data_ptr(), self.word_counts._version)

    def keep_probability(self) -> torch.Tensor:
        """Subsampling keep probability per id, (vocab_size,) float32 (Mikolov's formula with ``config.sample``)."""
        key = self._counts_key()
        if self._keep_cache is None or self._keep_cache[0] != key:
            keep = keep_probabilities(self.word_counts.cpu().numpy(), self.config.sample)
            self._keep_cache = (key, torch.as_tensor(keep, dtype=torch.float32, device=self.word_counts.device))
        return self._keep_cache[1]

    def training_rows(self, token_ids: torch.LongTensor, sentence_ids: torch.LongTensor) -> dict[str, torch.Tensor]:
        """This step's (center, context) rows from packed sentences: subsampling and shrunk windows
        with the config's ``sample``, ``window`` and ``sg`` (see :func:`hfssl.data.word2vec.training_rows`)."""
        windows = not self.config.sg or self.config.shared_negatives
        return training_rows(token_ids, sentence_ids, self.keep_probability(), self.config.window, sg=not windows)

    def sample_negatives(self, shape: tuple[int, ...]) -> torch.Tensor:
        """Ids drawn from the unigram ** ns_exponent distribution, ``shape``, on the model's device
        (alias method: a uniform column, then the column's id or its alias)."""
        threshold, alias = self.noise_table()
        columns = torch.randint(threshold.numel(), shape, device=threshold.device)
        keep = torch.rand(shape, device=threshold.device) < threshold[columns]
        return torch.where(keep, columns, alias[columns])

    def forward(
        self,
        center_ids: torch.LongTensor,
        context_ids: torch.LongTensor,
        context_mask: torch.BoolTensor | None = None,
        negative_ids: torch.LongTensor | None = None,
        sgd_step_size: float = 0.0,
        return_loss: bool = True,
    ) -> Word2VecOutput:
        """
        Args:
            center_ids: (N,) center words, the words being predicted.
            context_ids: skip-gram (N,), one context word per row; CBOW (N, C), the context words
                of each center, padded.
            context_mask: CBOW only, (N, C) bool, True at real context words.
            negative_ids: (N, negative) noise words; drawn here when not given.
            sgd_step_size: the learning rate of the SGD step that follows (sequential and fused
                losses). When > 0, each row (sequential) or chunk of ``config.chunk_size`` rows
                (fused) sees the updates of those before it, so one optimizer step applies them one
                after the other as word2vec does; the loss is then that of the rows at those
                weights. 0: the plain gradient.
        """
        self._check_inputs(center_ids, context_ids, context_mask)
        num_pairs = torch.tensor(center_ids.shape[0], device=center_ids.device)
        if not return_loss:
            return Word2VecOutput(num_pairs=num_pairs)
        if negative_ids is None:
            negative_ids = self.sample_negatives((center_ids.shape[0], self.config.negative))
        weights = (self.input_embeddings.weight, self.output_embeddings.weight)
        shared = self.config.shared_negatives
        mask = None if self.config.sg and not shared else context_mask
        implementation = self.training_loss_implementation() if torch.is_grad_enabled() else "autograd"
        if implementation == "sequential":
            threads = 1 if torch.are_deterministic_algorithms_enabled() else torch.get_num_threads()
            loss = sequential_sgd.SequentialSGDLoss.apply(
                *weights, center_ids, context_ids, mask, negative_ids, self.config.cbow_mean, sgd_step_size, threads
            )
        elif implementation == "fused":
            loss = fused_negative_sampling_loss(
                *weights,
                center_ids,
                context_ids,
                mask,
                negative_ids,
                self.config.cbow_mean,
                self.config.chunk_size,
                sgd_step_size,
                shared,
            )
        else:
            loss = negative_sampling_loss(
                *weights,
                center_ids,
                context_ids,
                mask,
                negative_ids,
                self.config.cbow_mean,
                self.input_embeddings.sparse,
                shared,
            )
        return Word2VecOutput(loss=loss, num_pairs=num_pairs)

    def training_loss_implementation(self) -> str:
        """The loss a training step runs: ``config.loss_implementation`` with ``"auto"`` resolved (the
        sequential kernel for CPU weights when it builds, unless negatives are shared; fused otherwise).
        The sequential kernel uses ``torch.get_num_threads()`` threads, one when
        ``torch.use_deterministic_algorithms`` is on (``--full_determinism``)."""
        choice = self.config.loss_implementation
        on_cpu = self.input_embeddings.weight.device.type == "cpu"
        if choice == "auto":
            use_kernel = on_cpu and not self.config.shared_negatives and sequential_sgd.is_available()
            return "sequential" if use_kernel else "fused"
        if choice == "sequential" and not on_cpu:
            raise ValueError(
                "loss_implementation='sequential' is the CPU kernel; on an accelerator use 'fused' (or 'auto')."
            )
        return choice

    def _check_inputs(self, center_ids, context_ids, context_mask) -> None:
        if center_ids.dim() != 1:
            raise ValueError(f"center_ids must be (N,), got shape {tuple(center_ids.shape)}.")
        windows = not self.config.sg or self.config.shared_negatives
        if not windows and context_ids.shape != center_ids.shape:
            raise ValueError(
                f"Skip-gram takes one context word per row: context_ids (N,) = {tuple(center_ids.shape)}, got {tuple(context_ids.shape)}."
            )
        if windows and (context_ids.dim() != 2 or context_mask is None or context_mask.shape != context_ids.shape):
            raise ValueError(
                "CBOW and skip-gram with shared negatives take context_ids (N, C) with a context_mask of the same shape."
            )

    # ---- word vectors -----------------------------------------------------------------------
    def word_vectors(self) -> torch.Tensor:
        """The word vectors (the input embeddings), (vocab_size, vector_size), detached."""
        return self.input_embeddings.weight.detach()

    def to_keyed_vectors(self):
        """A gensim ``KeyedVectors`` with every word of the vocabulary (not ``[UNK]``), its vector and count."""
        from gensim.models import KeyedVectors

        words = self.words
        keep = [index for index, word in enumerate(words) if index != self.config.unk_token_id]
        vectors = self.word_vectors()[keep].float().cpu().numpy()
        counts = self.word_counts[keep].cpu().numpy()
        keyed = KeyedVectors(vector_size=self.config.vector_size)
        keyed.add_vectors([words[index] for index in keep], vectors)
        keyed.expandos["count"] = counts.astype(np.int64)
        return keyed

    def save_word2vec_format(self, path: str | os.PathLike, binary: bool = False) -> None:
        """Write the vectors in the word2vec text (or ``binary``) format, in id order (the
        vocabulary's order: most frequent first when hfssl built it)."""
        keyed = self.to_keyed_vectors()
        keyed.expandos["id_order"] = np.arange(len(keyed), 0, -1)  # gensim writes in descending order of an attribute
        keyed.save_word2vec_format(os.fspath(path), binary=binary, write_header=True, sort_attr="id_order")

    @torch.no_grad()
    def most_similar(self, words: str | list[str], topn: int = 10) -> dict[str, list[tuple[str, float]]]:
        """The ``topn`` nearest words by cosine similarity, for each word of ``words`` in the
        vocabulary (unknown words are left out of the result)."""
        words = [words] if isinstance(words, str) else list(words)
        vocabulary = self.words
        index = {word: i for i, word in enumerate(vocabulary)}
        known = [word for word in words if word in index and index[word] != self.config.unk_token_id]
        if not known:
            return {}
        unit = F.normalize(self.word_vectors().float(), dim=1)
        scores = unit[[index[w] for w in known]] @ unit.T  # (Q, V)
        scores[:, self.config.unk_token_id] = -float("inf")
        scores[torch.arange(len(known)), [index[w] for w in known]] = -float("inf")
        top = scores.topk(min(topn, scores.shape[1] - 2), dim=1)
        return {
            word: [(vocabulary[i], float(s)) for s, i in zip(values.tolist(), ids.tolist())]
            for word, values, ids in zip(known, top.values, top.indices)
        }

    # ---- persistence ------------------------------------------------------------------------
    def save_pretrained(self, save_directory, *args, **kwargs):
        """Weights and config as transformers saves them, plus the vocabulary (tokenizer) beside them."""
        super().save_pretrained(save_directory, *args, **kwargs)
        if self.tokenizer is not None and kwargs.get("is_main_process", True):
            self.tokenizer.save_pretrained(save_directory)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """Weights, config and vocabulary from one directory or Hub repository."""
        model = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        hub_kwargs = {key: kwargs[key] for key in _HUB_KWARGS if key in kwargs}
        try:
            tokenizer = PreTrainedTokenizerFast.from_pretrained(pretrained_model_name_or_path, **hub_kwargs)
        except (OSError, ValueError) as error:
            logger.warning(
                "No vocabulary (tokenizer.json) beside the weights in %s, so model.words is unavailable; attach the one "
                "the model was trained with: model.set_tokenizer(PreTrainedTokenizerFast.from_pretrained(path)).",
                pretrained_model_name_or_path,
            )
            logger.debug("Loading the tokenizer failed with: %s", error)
        else:
            model.set_tokenizer(tokenizer)
        return model

    @classmethod
    def from_keyed_vectors(
        cls, keyed_vectors, output_vectors=None, use_counts: bool = True, **config_kwargs
    ) -> Word2VecModel:
        """A model whose vocabulary and input vectors are those of a gensim ``KeyedVectors``.

        Words keep their order (ids 1..N after ``[UNK]``); with ``use_counts``, counts come from
        the ``count`` attribute when the vectors carry one. ``output_vectors`` ((N, D), gensim's ``syn1neg``)
        lets training continue exactly; without them the output vectors start at zero.
        """
        words = list(keyed_vectors.index_to_key)
        if not words:
            raise ValueError("The KeyedVectors hold no words.")
        lowercase = all(word == word.lower() for word in words)
        pattern = config_kwargs.pop("word_pattern", r"\S+")  # the words as they are, unless told otherwise
        tokenizer = word_level_tokenizer([str(word) for word in words], word_pattern=pattern, lowercase=lowercase)
        config = Word2VecConfig(
            vocab_size=len(words) + 1,
            vector_size=keyed_vectors.vector_size,
            unk_token_id=UNK_TOKEN_ID,
            **config_kwargs,
        )
        model = cls(config)
        with torch.no_grad():
            model.input_embeddings.weight[1:] = torch.as_tensor(np.asarray(keyed_vectors.vectors), dtype=torch.float32)
            if output_vectors is not None:
                model.output_embeddings.weight[1:] = torch.as_tensor(np.asarray(output_vectors), dtype=torch.float32)
        if use_counts and "count" in keyed_vectors.expandos:
            counts = np.concatenate([[0], np.asarray(keyed_vectors.expandos["count"], dtype=np.int64)])
            model.set_word_counts(counts)
        model.set_tokenizer(tokenizer)
        return model

    @classmethod
    def from_word2vec_format(cls, path: str | os.PathLike, binary: bool = False, **config_kwargs) -> Word2VecModel:
        """Load vectors saved in the word2vec text or binary format (by word2vec.c, gensim or hfssl).

        The format stores no counts (gensim invents rank-based ones on loading; they are not used),
        so ``word_counts`` stay zero: call ``set_word_counts`` before training the model further.
        """
        from gensim.models import KeyedVectors

        keyed = KeyedVectors.load_word2vec_format(os.fspath(path), binary=binary)
        return cls.from_keyed_vectors(keyed, use_counts=False, **config_kwargs)

    @classmethod
    def from_gensim(cls, gensim_model) -> Word2VecModel:
        """Import a trained gensim ``Word2Vec``: vectors, output vectors, counts and hyperparameters."""
        if not getattr(gensim_model, "negative", 0) or not hasattr(gensim_model, "syn1neg"):
            raise ValueError(
                "Only gensim models trained with negative sampling (negative > 0) can be imported; hs=1 models cannot."
            )
        return cls.from_keyed_vectors(
            gensim_model.wv,
            output_vectors=gensim_model.syn1neg,
            sg=bool(gensim_model.sg),
            window=gensim_model.window,
            negative=gensim_model.negative,
            ns_exponent=gensim_model.ns_exponent,
            sample=gensim_model.sample,
            cbow_mean=bool(gensim_model.cbow_mean),
            min_count=gensim_model.min_count,
        )


__all__ = ["UNK_TOKEN", "Word2VecModel", "Word2VecOutput"]


class Word2VecTrainingRows(BatchTransform):
    """word2vec's batch transform: packed sentences ``{"token_ids": (N,), "sentence_ids": (N,)}`` ->
    this step's training rows (frequent-word subsampling and shrunk windows, drawn on the device),
    by :meth:`Word2VecModel.training_rows` with the model's word counts and config."""

    def __init__(self, model: Word2VecModel):
        self.model = model

    def __call__(self, batch) -> dict[str, torch.Tensor]:
        return self.model.training_rows(batch["token_ids"], batch["sentence_ids"])


def word2vec_batch_transform(model: Word2VecModel, tokenizer=None) -> Word2VecTrainingRows:
    """``hfssl.METHODS["word2vec"].batch_transform``: :class:`Word2VecTrainingRows` of ``model``."""
    return Word2VecTrainingRows(model)
