"""Intrinsic evaluation of word vectors: word similarity (Spearman) and analogies (accuracy).

The benchmark files ship in gensim's wheel (``gensim/test/test_data``), so this runs offline:
WordSim-353 (Finkelstein et al. 2002), SimLex-999 (Hill et al. 2015) and the Google analogy set
(Mikolov et al. 2013, 19,544 questions). The rules are gensim's ``KeyedVectors.evaluate_word_pairs``
and ``evaluate_word_analogies`` (case-insensitive, the 300,000 most frequent words, a pair or
question with an unknown word is left out and counted in ``oov_ratio``), so figures compare with
gensim's; the analogies are answered in batches of matrix products instead of one ``most_similar``
call each. Scores go through the packaged ``evaluate`` metric modules.

Every function takes ``words`` (the vocabulary in id order, most frequent first) and ``vectors``
((len(words), D)); special tokens such as ``[UNK]`` should be left out by the caller.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .metric_modules import compute_accuracy, compute_spearmanr

SIMILARITY_FILES = {"wordsim353": "wordsim353.tsv", "simlex999": "simlex999.txt"}
ANALOGY_FILE = "questions-words.txt"
RESTRICT_VOCAB = 300_000


def gensim_test_file(name: str) -> str:
    """Path of a file in gensim's test data (what ``gensim.test.utils.datapath`` returns, without
    importing that module, which builds test corpora on import)."""
    import gensim

    path = os.path.join(os.path.dirname(gensim.__file__), "test", "test_data", name)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{name} is not in gensim's test data at {path}; reinstall gensim (>= 4.3) from its wheel."
        )
    return path


def read_word_pairs(path: str) -> list[tuple[str, str, float]]:
    """``word1<TAB>word2<TAB>score`` lines (``#`` lines are comments), as gensim reads them."""
    pairs = []
    with open(path, encoding="utf8") as handle:
        for line in handle:
            if line.startswith("#") or not line.strip():
                continue
            first, second, score = line.rstrip("\n").split("\t")[:3]
            pairs.append((first, second, float(score)))
    return pairs


def read_analogies(path: str) -> list[tuple[str, list[tuple[str, str, str, str]]]]:
    """Sections (``: name`` lines) of ``a b c expected`` questions."""
    sections: list[tuple[str, list]] = []
    with open(path, encoding="utf8") as handle:
        for line in handle:
            if line.startswith(": "):
                sections.append((line[2:].strip(), []))
            elif line.strip():
                if not sections:
                    raise ValueError(f"{path}: a question comes before the first ': section' line.")
                sections[-1][1].append(tuple(line.split()[:4]))
    return sections


def _case_insensitive_index(words: Sequence[str], restrict_vocab: int) -> dict[str, int]:
    """Upper-cased word -> id among the ``restrict_vocab`` first words; the most frequent spelling wins."""
    index: dict[str, int] = {}
    for position, word in enumerate(words[:restrict_vocab]):
        index.setdefault(word.upper(), position)
    return index


def word_similarity(
    words: Sequence[str],
    vectors: torch.Tensor,
    pairs: Sequence[tuple[str, str, float]],
    restrict_vocab: int = RESTRICT_VOCAB,
) -> dict:
    """Spearman correlation between cosine similarities and human scores over the pairs whose two
    words are known; ``oov_ratio`` is the share of pairs left out."""
    index = _case_insensitive_index(words, restrict_vocab)
    known = [
        (index[a.upper()], index[b.upper()], score)
        for a, b, score in pairs
        if a.upper() in index and b.upper() in index
    ]
    oov_ratio = 1 - len(known) / len(pairs) if pairs else 1.0
    if len(known) < 2:
        return {"spearman": float("nan"), "oov_ratio": oov_ratio, "pairs": len(known)}
    unit = F.normalize(torch.as_tensor(vectors).float(), dim=1)
    first, second, scores = zip(*known)
    similarity = (unit[list(first)] * unit[list(second)]).sum(1)
    return {"spearman": compute_spearmanr(similarity, np.asarray(scores)), "oov_ratio": oov_ratio, "pairs": len(known)}


@torch.no_grad()
def analogy_accuracy(
    words: Sequence[str], vectors: torch.Tensor, sections, restrict_vocab: int = RESTRICT_VOCAB, batch_size: int = 1024
) -> dict:
    """3CosAdd analogies ``a : b :: c : ?`` answered by the nearest word to ``b - a + c`` (unit
    vectors, ``a``, ``b``, ``c`` excluded), as gensim's ``evaluate_word_analogies``.

    Returns ``accuracy`` over the questions whose four words are known, ``oov_ratio`` (share of
    questions left out), ``questions`` (answered) and ``sections`` (name -> accuracy).
    """
    index = _case_insensitive_index(words, restrict_vocab)
    unit = F.normalize(torch.as_tensor(vectors).float()[: min(restrict_vocab, len(words))], dim=1)
    questions, section_of, total = [], [], 0
    for section, (_name, items) in enumerate(sections):
        total += len(items)
        for item in items:
            ids = [index.get(word.upper()) for word in item]
            if None not in ids:
                questions.append(ids)
                section_of.append(section)
    if not questions:
        return {"accuracy": float("nan"), "oov_ratio": 1.0, "questions": 0, "sections": {}}
    questions = torch.tensor(questions)  # (Q, 4): a, b, c, expected, as ids of their most frequent spelling
    # Every id's most frequent spelling, so that "Queen" and "queen" are one answer (gensim compares
    # upper-cased words and never answers with a spelling of a, b or c).
    spelling = torch.tensor([index[word.upper()] for word in words[: len(unit)]])
    predictions = torch.empty(len(questions), dtype=torch.long)
    for start in range(0, len(questions), batch_size):
        batch = questions[start : start + batch_size]
        query = unit[batch[:, 1]] - unit[batch[:, 0]] + unit[batch[:, 2]]  # (q, D)
        scores = query @ unit.T  # (q, V)
        asked = (spelling[None, :, None] == batch[:, None, :3]).any(-1)  # (q, V): a spelling of a, b or c
        scores.masked_fill_(asked, float("-inf"))
        predictions[start : start + batch_size] = spelling[scores.argmax(1)]
    section_of = torch.tensor(section_of)
    per_section = {
        sections[s][0]: compute_accuracy(predictions[section_of == s], questions[section_of == s, 3])
        for s in section_of.unique().tolist()
    }
    return {
        "accuracy": compute_accuracy(predictions, questions[:, 3]),
        "oov_ratio": 1 - len(questions) / total,
        "questions": len(questions),
        "sections": per_section,
    }


def word_vector_metrics(
    words: Sequence[str], vectors: torch.Tensor, restrict_vocab: int = RESTRICT_VOCAB
) -> dict[str, float]:
    """Every benchmark, flat: ``wordsim353_spearman``, ``wordsim353_oov_ratio``, ``simlex999_spearman``,
    ``simlex999_oov_ratio``, ``analogy_accuracy``, ``analogy_oov_ratio``; only the ``restrict_vocab``
    first words (the most frequent) are looked up, as gensim does."""
    if restrict_vocab < 1:
        raise ValueError(f"restrict_vocab must be a positive number of words, got {restrict_vocab}.")
    if len(words) != len(vectors):
        raise ValueError(f"{len(words)} words but {len(vectors)} vectors: they must match row for row.")
    metrics: dict[str, float] = {}
    for name, filename in SIMILARITY_FILES.items():
        result = word_similarity(words, vectors, read_word_pairs(gensim_test_file(filename)), restrict_vocab)
        metrics[f"{name}_spearman"] = result["spearman"]
        metrics[f"{name}_oov_ratio"] = result["oov_ratio"]
    analogies = analogy_accuracy(words, vectors, read_analogies(gensim_test_file(ANALOGY_FILE)), restrict_vocab)
    metrics["analogy_accuracy"] = analogies["accuracy"]
    metrics["analogy_oov_ratio"] = analogies["oov_ratio"]
    return metrics


def model_word_vector_metrics(model, restrict_vocab: int = RESTRICT_VOCAB) -> dict[str, float]:
    """:func:`word_vector_metrics` of a :class:`~hfssl.Word2VecModel` (its vocabulary without ``[UNK]``)."""
    words = model.words
    keep = [i for i in range(len(words)) if i != model.config.unk_token_id]
    return word_vector_metrics([words[i] for i in keep], model.word_vectors()[keep].cpu(), restrict_vocab)
