"""The masked-language-model collator for BERT pretraining (Devlin et al. 2019, section 3.1, "Task #1"),
for the examples :func:`hfssl.data.nsp.build_nsp_examples` makes (or any examples with
``input_ids`` and optionally ``token_type_ids``, ``special_tokens_mask``, ``starts_word``,
``next_sentence_label``).

A batch of B examples becomes (L = the longest example, rounded up to ``pad_to_multiple_of``):

* ``input_ids`` (B, L) long: padded with the pad id, then masked;
* ``attention_mask`` (B, L) long: 1 on tokens, 0 on padding;
* ``token_type_ids`` (B, L) long: padded with 0 (when the examples have them);
* ``labels`` (B, L) long: the original id where a token was selected for prediction, -100 elsewhere;
* ``next_sentence_label`` (B,) long: passed through (when the examples have it).

Masks are drawn when the batch is made (dynamic masking, Liu et al. 2019), never on special
tokens or padding. A selected token becomes ``[MASK]`` 80% of the time, a uniformly random token
of the vocabulary 10%, and stays unchanged 10% (``mask_replace_prob``, ``random_replace_prob``).

What ``transformers.DataCollatorForLanguageModeling`` (5.23) does here, and what it cannot:

* Padding: ``tokenizer.pad`` pads ``input_ids``, ``attention_mask``, ``token_type_ids`` (with the
  tokenizer's pad type id, 0) and ``special_tokens_mask`` (with 1, so padding is never selected).
  Used as is.
* Token masking (``whole_word_mask=False``): its ``torch_mask_tokens`` draws each non-special
  token independently with probability ``mlm_probability`` and applies 80/10/10. Used as is
  (Google instead masks exactly ``round(n * p)`` tokens; the Bernoulli draw is what RoBERTa and
  the transformers examples do, and has the same rate).
* Whole-word masking: not usable for these examples. It rebuilds words from ``offset_mapping``
  (character offsets into one text), which a pair made of truncated sentences from two documents
  does not have; it masks each word independently with probability p rather than filling a
  budget; and it turns off the 10% random / 10% unchanged replacements (every selected token
  becomes ``[MASK]``). Google's ``create_masked_lm_predictions`` with ``do_whole_word_mask``
  keeps 80/10/10 per token and fills a budget: :func:`select_whole_words` does that, from the
  examples' ``starts_word``, and the replacement is then the transformers collator's again.

Randomness: with ``seed`` set, a private ``torch.Generator`` seeded with ``seed`` drives every draw,
so a run's batches repeat exactly; inside DataLoader workers the seed is mixed with the worker's
own seed (drawn by torch from the main process's seeded RNG), so workers and epochs get different
masks and a seeded run still repeats. With ``seed=None`` the global torch RNG is used, which
``Trainer`` seeds from ``--seed`` (and torch seeds per worker).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import DataCollatorForLanguageModeling, PreTrainedTokenizerBase
from transformers.data.data_collator import pad_without_fast_tokenizer_warning

IGNORE_INDEX = -100
PADDED_COLUMNS = ("input_ids", "token_type_ids", "special_tokens_mask")
STARTS_WORD = "starts_word"
NEXT_SENTENCE_LABEL = "next_sentence_label"


@dataclass
class DataCollatorForBertPretraining:
    """Pad a list of examples and mask them for BERT's masked LM; ``next_sentence_label`` rides along.

    Args:
        tokenizer: supplies the pad, ``[MASK]`` and special-token ids and the vocabulary size.
        mlm_probability: share of the non-special tokens selected for prediction (BERT: 0.15).
        whole_word_mask: select whole words (a token and its continuation pieces, from the
            ``starts_word`` column) until ``round(n * mlm_probability)`` of the ``n`` maskable
            tokens are covered, as Google's ``create_masked_lm_predictions`` does.
        mask_replace_prob: share of the selected tokens replaced by ``[MASK]`` (BERT: 0.8).
        random_replace_prob: share replaced by a random token (BERT: 0.1); the rest stay unchanged.
        pad_to_multiple_of: pad the length up to a multiple of this (e.g. 8 for tensor cores).
        seed: seeds a private ``torch.Generator`` (mixed with the DataLoader worker's seed inside a
            worker); None uses the global torch RNG (seeded by ``Trainer``).
        worker_seed_from_id: inside a DataLoader worker, mix in the worker's id instead of its seed
            (which torch draws anew each time workers start), so that a fresh copy of the collator
            draws the same masks on every pass, with any number of workers: for evaluation.
    """

    tokenizer: PreTrainedTokenizerBase
    mlm_probability: float = 0.15
    whole_word_mask: bool = False
    mask_replace_prob: float = 0.8
    random_replace_prob: float = 0.1
    pad_to_multiple_of: int | None = None
    seed: int | None = None
    worker_seed_from_id: bool = False
    _token_masker: DataCollatorForLanguageModeling = field(init=False, repr=False)
    _replacer: DataCollatorForLanguageModeling = field(init=False, repr=False)
    _generator_worker: int | None = field(init=False, repr=False, default=None)

    def __post_init__(self):
        for role in ("pad_token", "mask_token"):
            if getattr(self.tokenizer, role) is None:
                raise ValueError(
                    f"The tokenizer has no {role}; masked-LM batches need one (a BERT tokenizer has [PAD] and [MASK])."
                )
        replacement = dict(mask_replace_prob=self.mask_replace_prob, random_replace_prob=self.random_replace_prob)
        # The transformers collator validates the probabilities; whole_word_mask stays False in both.
        self._token_masker = DataCollatorForLanguageModeling(
            self.tokenizer, mlm_probability=self.mlm_probability, **replacement
        )
        # At probability 1 it selects every position not excluded: excluding all but a chosen set makes
        # it apply its 80/10/10 replacement to exactly that set (the whole words chosen here).
        self._replacer = DataCollatorForLanguageModeling(self.tokenizer, mlm_probability=1.0, **replacement)

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        if not features:
            raise ValueError("Cannot collate an empty list of examples.")
        batch = self._pad(features)
        never_mask = batch.pop("special_tokens_mask").bool() | (batch["attention_mask"] == 0)
        self._use_generator(self._generator())
        if self.whole_word_mask:
            starts_word = self._padded_starts_word(features, batch["input_ids"].shape[1])
            selected = select_whole_words(starts_word, ~never_mask, self.mlm_probability, self._replacer.generator)
            batch["input_ids"], batch["labels"] = self._replacer.torch_mask_tokens(
                batch["input_ids"], special_tokens_mask=~selected
            )
        else:
            batch["input_ids"], batch["labels"] = self._token_masker.torch_mask_tokens(
                batch["input_ids"], special_tokens_mask=never_mask
            )
        if all(NEXT_SENTENCE_LABEL in feature for feature in features):
            batch[NEXT_SENTENCE_LABEL] = torch.tensor(
                [int(feature[NEXT_SENTENCE_LABEL]) for feature in features], dtype=torch.long
            )
        return batch

    def _pad(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        """Pad the token columns with ``tokenizer.pad``; a missing ``special_tokens_mask`` is computed from the ids."""
        to_pad = [
            {name: _as_list(feature[name]) for name in PADDED_COLUMNS if name in feature} for feature in features
        ]
        for example in to_pad:
            if "special_tokens_mask" not in example:
                ids = example["input_ids"]
                example["special_tokens_mask"] = self.tokenizer.get_special_tokens_mask(
                    ids, already_has_special_tokens=True
                )
        padded = pad_without_fast_tokenizer_warning(
            self.tokenizer, to_pad, padding=True, pad_to_multiple_of=self.pad_to_multiple_of,
            return_attention_mask=True, return_tensors="pt",
        )  # fmt: skip
        return {name: tensor.long() for name, tensor in padded.items()}

    def _padded_starts_word(self, features: Sequence[Mapping[str, Any]], length: int) -> torch.Tensor:
        """``starts_word`` (B, L) padded with 0 on the tokenizer's padding side."""
        if not all(STARTS_WORD in feature for feature in features):
            raise ValueError(
                f"whole_word_mask=True needs a {STARTS_WORD!r} column (1 where a token begins a word), which "
                "hfssl.data.nsp.build_nsp_examples writes; these examples have only "
                f"{sorted(features[0])}. Pass whole_word_mask=False or build the examples with build_nsp_examples."
            )
        padded = torch.zeros(len(features), length, dtype=torch.long)
        for row, feature in enumerate(features):
            starts = torch.as_tensor(_as_list(feature[STARTS_WORD]), dtype=torch.long)
            if self.tokenizer.padding_side == "left":
                padded[row, length - len(starts) :] = starts
            else:
                padded[row, : len(starts)] = starts
        return padded

    def _generator(self) -> torch.Generator | None:
        """The private generator, made once per process. Inside a DataLoader worker its seed mixes in
        the worker's seed, which torch draws for every worker from the main process's RNG each time
        workers start: workers differ, and so do epochs (workers restart every epoch unless
        ``persistent_workers``), where ``seed`` alone would repeat the same masks every epoch."""
        if self.seed is None:
            return None
        worker_seed = dataloader_worker_seed(self.worker_seed_from_id)
        if self._replacer.generator is None or self._generator_worker != worker_seed:
            self._generator_worker = worker_seed
            seed = self.seed if worker_seed is None else hash((self.seed, worker_seed)) % 2**63
            return torch.Generator().manual_seed(seed)
        return self._replacer.generator

    def _use_generator(self, generator: torch.Generator | None) -> None:
        self._token_masker.generator = generator
        self._replacer.generator = generator


def select_whole_words(
    starts_word: torch.Tensor, maskable: torch.Tensor, mlm_probability: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Google's whole-word selection (``create_masked_lm_predictions`` with ``do_whole_word_mask``).

    Args:
        starts_word: (B, L) 1 where a token begins a word; a maskable token after a non-maskable
            one begins a word whatever it says.
        maskable: (B, L) bool, False at special tokens and padding.
        mlm_probability: the budget per row is ``round(n * mlm_probability)`` tokens (at least 1
            when the probability is positive) of its ``n`` maskable tokens. Google counts the
            three special tokens in ``n`` as well; the difference is under one token.
        generator: drives the word order.

    Returns (B, L) bool, True at the selected tokens. Words are visited in a random order; a word
    is taken whole if it fits in what is left of the budget and skipped otherwise, until the budget
    is spent, so a row never exceeds its budget and every word is selected entirely or not at all.
    """
    maskable = maskable.bool()
    previous_maskable = torch.nn.functional.pad(maskable[:, :-1], (1, 0), value=False)
    begins_word = maskable & (starts_word.bool() | ~previous_maskable)
    word_ids = torch.where(maskable, torch.cumsum(begins_word.long(), dim=1) - 1, -1)  # -1 off words
    selected = torch.zeros_like(maskable)
    for row in range(maskable.shape[0]):
        num_maskable = int(maskable[row].sum())
        budget = round(num_maskable * mlm_probability)
        if mlm_probability > 0:
            budget = max(1, budget)
        if num_maskable == 0 or budget == 0:
            continue
        word_lengths = torch.bincount(word_ids[row][maskable[row]]).tolist()
        chosen = _fill_budget(word_lengths, budget, torch.randperm(len(word_lengths), generator=generator).tolist())
        selected[row] = torch.isin(word_ids[row], torch.tensor(chosen, dtype=torch.long)) & maskable[row]
    return selected


def _fill_budget(word_lengths: list[int], budget: int, order: list[int]) -> list[int]:
    """Words taken in ``order`` while they fit in ``budget`` tokens (a word that does not fit is skipped)."""
    chosen, covered = [], 0
    for word in order:
        if covered >= budget:
            break
        if covered + word_lengths[word] > budget:
            continue
        chosen.append(word)
        covered += word_lengths[word]
    return chosen


def _as_list(value: Any) -> list[int]:
    return value.tolist() if hasattr(value, "tolist") else list(value)


def dataloader_worker_seed(from_id: bool) -> int | None:
    """What a seeded collator mixes into its seed inside a DataLoader worker (None outside one): the
    worker's seed, which torch draws anew each time workers start, or (``from_id``) its id, which
    repeats from pass to pass."""
    worker = torch.utils.data.get_worker_info()
    if worker is None:
        return None
    return worker.id if from_id else worker.seed
