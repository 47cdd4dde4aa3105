#!/usr/bin/env python
"""Evaluate word vectors: WordSim-353 and SimLex-999 (Spearman) and the Google analogies (accuracy).

    python recipes/evaluate_word2vec.py --model_name_or_path runs/word2vec --output_dir runs/word2vec-eval
    python recipes/evaluate_word2vec.py --word2vec_file vectors.bin --binary --output_dir runs/vectors-eval
    python recipes/evaluate_word2vec.py --gensim_model word2vec.model --output_dir runs/gensim-eval

The vectors come from exactly one source: an hfssl word2vec checkpoint (directory or Hub id, with
the vocabulary saved beside the weights; no remote code is ever run), a file in the word2vec text
(or ``--binary``) format, or a gensim ``Word2Vec.save`` file. The benchmarks ship with gensim and
are scored with gensim's rules (case-insensitive, the ``--restrict_vocab`` most frequent words;
pairs and questions with an unknown word are left out and counted in ``*_oov_ratio``), so the
figures equal ``KeyedVectors.evaluate_word_pairs``/``evaluate_word_analogies`` on the same vectors
(tested, also on vocabularies holding several spellings of a word).
Writes ``all_results.json`` (``wordsim353_spearman``, ``simlex999_spearman``, ``analogy_accuracy``
and their ``*_oov_ratio``) and ``most_similar.json`` (the ``--topn`` neighbours of
``--most_similar_words``) to ``--output_dir``, and prints a table.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from typing import Optional

from transformers import AutoConfig

from hfssl import Word2VecConfig, Word2VecModel
from hfssl.evaluation.model_kind import require_model_kind
from hfssl.evaluation.word_vectors import RESTRICT_VOCAB, model_word_vector_metrics
from hfssl.training import parse_recipe_arguments

logger = logging.getLogger(__name__)

SOURCE_FLAGS = ("--model_name_or_path", "--word2vec_file", "--gensim_model")


@dataclass
class WordVectorEvaluationArguments:
    output_dir: str = field(metadata={"help": "Where all_results.json and most_similar.json are written."})
    model_name_or_path: Optional[str] = field(
        default=None,
        metadata={
            "help": "An hfssl word2vec checkpoint (directory or Hub id) with its vocabulary beside the weights."
        },
    )
    word2vec_file: Optional[str] = field(
        default=None,
        metadata={
            "help": "Vectors in the word2vec format (word2vec.c, gensim, hfssl's vectors.txt); text unless --binary."
        },
    )
    binary: bool = field(default=False, metadata={"help": "--word2vec_file is in the binary word2vec format."})
    gensim_model: Optional[str] = field(
        default=None,
        metadata={
            "help": "A gensim Word2Vec.save file (a pickle: load only files you trust). Its .npy side files must sit beside it."
        },
    )
    restrict_vocab: int = field(
        default=RESTRICT_VOCAB,
        metadata={"help": "Only this many of the most frequent words are looked up (gensim's default: 300000)."},
    )
    most_similar_words: str = field(
        default="king,woman,france,house,good,day",
        metadata={"help": "Comma-separated words whose nearest neighbours are reported."},
    )
    topn: int = field(default=10, metadata={"help": "Neighbours per word in most_similar.json."})

    def __post_init__(self):
        given = [flag for flag in SOURCE_FLAGS if getattr(self, flag.removeprefix("--"))]
        if len(given) != 1:
            found = "none was given" if not given else f"got {' and '.join(given)}"
            raise ValueError(f"Pass exactly one source of word vectors: {', '.join(SOURCE_FLAGS)} ({found}).")
        if self.binary and not self.word2vec_file:
            raise ValueError("--binary describes a --word2vec_file; it means nothing with " + given[0] + ".")
        if self.restrict_vocab < 1:
            raise ValueError(f"--restrict_vocab must be a positive number of words, got {self.restrict_vocab}.")
        if self.topn < 1:
            raise ValueError(f"--topn must be positive, got {self.topn}.")


def load_checkpoint(path: str) -> Word2VecModel:
    """An hfssl word2vec checkpoint with its vocabulary; anything else is refused (no remote code)."""
    config = AutoConfig.from_pretrained(path, trust_remote_code=False)
    require_model_kind(path, "word vectors", "evaluate_word2vec.py", config)
    if not isinstance(config, Word2VecConfig):
        raise ValueError(
            f"--model_name_or_path {path!r} holds a {config.model_type!r} checkpoint, not an hfssl word2vec one "
            f"({Word2VecConfig.model_type!r}). Pass vectors files with --word2vec_file or --gensim_model."
        )
    model = Word2VecModel.from_pretrained(path, config=config)
    if model.tokenizer is None:
        raise ValueError(
            f"{path!r} has word2vec weights but no vocabulary (tokenizer.json) beside them, so its vectors cannot be "
            "matched to words. Save the model with its tokenizer (model.set_tokenizer(...); model.save_pretrained(dir))."
        )
    return model


def load_gensim_model(path: str) -> Word2VecModel:
    """A gensim ``Word2Vec`` (negative sampling) through ``Word2VecModel.from_gensim``; a hierarchical-softmax
    model or a saved ``KeyedVectors`` keeps only its word vectors, which is all that evaluation needs."""
    from gensim.models import KeyedVectors
    from gensim.utils import SaveLoad

    if not os.path.exists(path):
        raise ValueError(f"--gensim_model {path!r} does not exist.")
    loaded = SaveLoad.load(path)
    if isinstance(loaded, KeyedVectors):
        return Word2VecModel.from_keyed_vectors(loaded)
    if not isinstance(getattr(loaded, "wv", None), KeyedVectors):
        raise ValueError(
            f"--gensim_model {path!r} holds a {type(loaded).__name__}, not a gensim Word2Vec model or KeyedVectors."
        )
    if getattr(loaded, "negative", 0) and hasattr(loaded, "syn1neg"):
        return Word2VecModel.from_gensim(loaded)
    logger.info("%s was trained without negative sampling: importing its word vectors only.", path)
    return Word2VecModel.from_keyed_vectors(loaded.wv)


def load_word_vectors(args: WordVectorEvaluationArguments) -> tuple[Word2VecModel, str]:
    """The model of the one source given, and a description of that source."""
    if args.model_name_or_path:
        return load_checkpoint(args.model_name_or_path), f"hfssl checkpoint {args.model_name_or_path}"
    if args.word2vec_file:
        if not os.path.isfile(args.word2vec_file):
            raise ValueError(f"--word2vec_file {args.word2vec_file!r} does not exist or is not a file.")
        kind = "binary" if args.binary else "text"
        return Word2VecModel.from_word2vec_format(
            args.word2vec_file, binary=args.binary
        ), f"word2vec {kind} file {args.word2vec_file}"
    return load_gensim_model(args.gensim_model), f"gensim model {args.gensim_model}"


def format_table(metrics: dict[str, float]) -> str:
    """Benchmark | score | out-of-vocabulary share, as a small text table."""
    rows = [("benchmark", "score", "oov"), ("-" * 20, "-" * 8, "-" * 6)]
    for name, score in (
        ("WordSim-353 Spearman", "wordsim353_spearman"),
        ("SimLex-999 Spearman", "simlex999_spearman"),
        ("analogy accuracy", "analogy_accuracy"),
    ):
        oov = metrics[score.rsplit("_", 1)[0] + "_oov_ratio"]
        value = metrics[score]
        rows.append((name, "n/a" if math.isnan(value) else f"{value:.4f}", f"{oov:.1%}"))
    return "\n".join(f"{a:<20}  {b:>8}  {c:>6}" for a, b, c in rows)


def main(argv=None):
    (args,) = parse_recipe_arguments((WordVectorEvaluationArguments,), argv)
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)

    model, source = load_word_vectors(args)
    logger.info(
        "Evaluating %d word vectors of size %d from %s.", model.config.vocab_size - 1, model.config.vector_size, source
    )
    metrics = model_word_vector_metrics(model, restrict_vocab=args.restrict_vocab)
    queries = [word.strip() for word in args.most_similar_words.split(",") if word.strip()]
    neighbours = model.most_similar(queries, topn=args.topn) if queries else {}
    unknown = [word for word in queries if word not in neighbours]
    if unknown:
        logger.warning("Not in the vocabulary, so left out of most_similar.json: %s", ", ".join(unknown))

    os.makedirs(args.output_dir, exist_ok=True)
    results = {
        **metrics,
        "source": source,
        "vocab_size": model.config.vocab_size - 1,
        "restrict_vocab": args.restrict_vocab,
    }
    with open(os.path.join(args.output_dir, "all_results.json"), "w") as handle:
        json.dump(results, handle, indent=2)
    with open(os.path.join(args.output_dir, "most_similar.json"), "w") as handle:
        json.dump(neighbours, handle, indent=1)
    print(
        f"\n{source}: {model.config.vocab_size - 1} words, {model.config.vector_size} dimensions\n{format_table(metrics)}"
    )
    for word, near in neighbours.items():
        print(f"most similar to {word!r}: " + ", ".join(f"{w} ({s:.2f})" for w, s in near[:5]))
    return metrics


if __name__ == "__main__":
    main()
