#!/usr/bin/env python
"""Train word2vec (skip-gram or CBOW, negative sampling) on text.

    accelerate launch --config_file accelerate_config.yaml recipes/pretrain_word2vec.py \
        --train_file ../shared/data/corpus/train.jsonl.gz --sg 1 --vector_size 100 --window 5 \
        --min_count 5 --negative 5 --sample 1e-3 --num_train_epochs 5 --output_dir runs/word2vec

Builds the vocabulary (a word-level tokenizer) from the training text, or takes one with
--tokenizer_name; trains through ``Word2VecTrainer``; evaluates WordSim-353, SimLex-999 and the
Google analogies. Writes to --output_dir: the model with its vocabulary (``from_pretrained``
restores both), ``vectors.txt`` in the word2vec text format, ``all_results.json``
(``wordsim353_spearman``, ``simlex999_spearman``, ``analogy_accuracy``, their ``*_oov_ratio``,
``words_per_second``), ``most_similar.json`` and a model card; ``--push_to_hub`` pushes it.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import Optional

import transformers
from transformers import PreTrainedTokenizerFast, set_seed

from hfssl import METHODS, Word2VecConfig, Word2VecModel
from hfssl.data import TextDataArguments, load_text_datasets
from hfssl.data.text import iter_texts
from hfssl.data.word2vec import SENTENCE_UNITS, SentenceCollator, SentenceDataset, encode_corpus
from hfssl.tokenization import WORD_PATTERN, train_word_level_tokenizer
from hfssl.training import Word2VecTrainer, Word2VecTrainingArguments, parse_recipe_arguments, resumed_checkpoint
from hfssl.training.finish import finish_run
from hfssl.training.guards import require_finite_weights
from hfssl.training.model_card import training_summary, write_word2vec_model_card

logger = logging.getLogger(__name__)


@dataclass
class Word2VecArguments:
    sg: bool = field(default=True, metadata={"help": "Skip-gram (1) or CBOW (0)."})
    vector_size: int = field(default=100, metadata={"help": "Width of the word vectors."})
    window: int = field(
        default=5, metadata={"help": "Largest center-context distance; each center draws its own in [1, window]."}
    )
    negative: int = field(default=5, metadata={"help": "Negative samples per positive."})
    ns_exponent: float = field(
        default=0.75, metadata={"help": "Exponent of the counts in the negative-sampling distribution."}
    )
    sample: float = field(default=1e-3, metadata={"help": "Subsampling threshold of frequent words (0: off)."})
    cbow_mean: bool = field(default=True, metadata={"help": "CBOW: mean (1) or sum (0) of the context vectors."})
    min_count: int = field(default=5, metadata={"help": "Words seen fewer times are left out of the vocabulary."})
    max_vocab_size: Optional[int] = field(
        default=None, metadata={"help": "Keep at most this many words (the most frequent)."}
    )
    tokenizer_name: Optional[str] = field(
        default=None,
        metadata={"help": "A saved word-level tokenizer (e.g. a previous run's directory) to use as the vocabulary."},
    )
    word_pattern: str = field(
        default=WORD_PATTERN, metadata={"help": "Regular expression of a word; text between matches is dropped."}
    )
    lowercase: bool = field(default=True, metadata={"help": "Lower-case text before matching words."})
    sentence_unit: str = field(
        default="paragraph", metadata={"help": f"What windows never cross: one of {SENTENCE_UNITS}."}
    )
    max_sentence_length: int = field(
        default=10_000, metadata={"help": "Longer sentences are cut into pieces of this many words."}
    )
    shared_negatives: bool = field(
        default=False,
        metadata={"help": "Skip-gram: the pairs of a window share its negatives (faster; Ji et al. 2016)."},
    )
    loss_implementation: str = field(
        default="auto",
        metadata={
            "help": "'auto' (sequential on CPU, fused on GPU), 'sequential' (compiled CPU kernel), 'fused' (torch) or 'autograd' (reference)."
        },
    )
    most_similar_words: str = field(
        default="king,woman,france,house,good,day",
        metadata={"help": "Comma-separated words whose nearest neighbours are reported."},
    )


def build_vocabulary(args: Word2VecArguments, train) -> PreTrainedTokenizerFast:
    if args.tokenizer_name:
        tokenizer = PreTrainedTokenizerFast.from_pretrained(args.tokenizer_name)
        if tokenizer.unk_token_id is None:
            raise ValueError(
                f"The tokenizer at {args.tokenizer_name} has no unknown token; word2vec needs a word-level tokenizer with one."
            )
        return tokenizer
    return train_word_level_tokenizer(
        iter_texts(train), args.min_count, args.max_vocab_size, args.word_pattern, args.lowercase
    )


def resumed_epoch(checkpoint: Optional[str]) -> float:
    """The epoch a checkpoint was saved at (0 without one)."""
    if not checkpoint:
        return 0.0
    with open(os.path.join(checkpoint, "trainer_state.json")) as handle:
        return float(json.load(handle)["epoch"])


def main(argv=None):
    w2v_args, data_args, training_args = parse_recipe_arguments(
        (Word2VecArguments, TextDataArguments, Word2VecTrainingArguments), argv
    )
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        level=logging.INFO if training_args.should_log else logging.WARNING,
    )
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())
    set_seed(training_args.seed)
    if data_args.validation_split_percentage is None:
        # word2vec trains on the whole corpus as gensim does (its benchmarks need no held-out text);
        # --validation_split_percentage N holds out a share for the held-out loss per pair.
        data_args.validation_split_percentage = 0

    with training_args.main_process_first(desc="resolving the dataset"):
        data = load_text_datasets(data_args)
    tokenizer = build_vocabulary(w2v_args, data.train)
    corpus = encode_corpus(tokenizer, iter_texts(data.train), w2v_args.sentence_unit, w2v_args.max_sentence_length)
    counts = corpus.word_counts(len(tokenizer))
    logger.info(
        "Vocabulary of %d words; %d in-vocabulary words of %d in %d sentences (%d documents).",
        len(tokenizer) - 1,
        len(corpus.token_ids),
        corpus.num_raw_words,
        corpus.num_sentences,
        corpus.num_documents,
    )
    config = Word2VecConfig(
        vocab_size=len(tokenizer), vector_size=w2v_args.vector_size, sg=w2v_args.sg, window=w2v_args.window, negative=w2v_args.negative,
        ns_exponent=w2v_args.ns_exponent, sample=w2v_args.sample, cbow_mean=w2v_args.cbow_mean, min_count=w2v_args.min_count,
        max_vocab_size=w2v_args.max_vocab_size, unk_token_id=tokenizer.unk_token_id, loss_implementation=w2v_args.loss_implementation,
        shared_negatives=w2v_args.shared_negatives,
    )  # fmt: skip
    model = Word2VecModel(config)
    model.set_word_counts(counts)
    model.set_tokenizer(tokenizer)
    eval_dataset = None
    if data.eval is not None:
        eval_dataset = SentenceDataset(
            encode_corpus(tokenizer, iter_texts(data.eval), w2v_args.sentence_unit, w2v_args.max_sentence_length)
        )

    trainer = Word2VecTrainer(
        model=model,
        args=training_args,
        train_dataset=SentenceDataset(corpus),
        eval_dataset=eval_dataset,
        data_collator=SentenceCollator(),
        processing_class=tokenizer,
        batch_transform=METHODS["word2vec"].batch_transform(model, tokenizer),
    )
    checkpoint = resumed_checkpoint(training_args)
    start_epoch = resumed_epoch(checkpoint)
    train_result = trainer.train(resume_from_checkpoint=checkpoint)
    train_metrics = dict(train_result.metrics)
    # gensim's words/s: raw words (unknown ones included) of the epochs run, over the wall time
    train_metrics["words_per_second"] = (
        corpus.num_raw_words * (trainer.state.epoch - start_epoch) / train_metrics["train_runtime"]
    )
    trainer.log_metrics("train", train_metrics)
    trainer.save_metrics("train", train_metrics)
    trainer.save_state()

    evaluation = trainer.evaluate()
    metrics = {name.removeprefix("eval_"): value for name, value in evaluation.items() if name != "epoch"}
    if "loss" in metrics:  # held-out negative-sampling loss of the validation text
        metrics["validation_loss_per_pair"] = metrics.pop("loss")
    metrics["words_per_second"] = train_metrics["words_per_second"]
    trainer.log_metrics("eval", metrics)
    trainer.save_metrics("eval", metrics, combined=True)
    require_finite_weights(model, "vectors.txt", trainer.accelerator)
    neighbours = model.most_similar([w.strip() for w in w2v_args.most_similar_words.split(",") if w.strip()], topn=10)
    if trainer.is_world_process_zero():
        with open(os.path.join(training_args.output_dir, "most_similar.json"), "w") as handle:
            json.dump(neighbours, handle, indent=1)
        for word, near in neighbours.items():
            logger.info("most similar to %r: %s", word, ", ".join(f"{w} ({s:.2f})" for w, s in near[:5]))
        model.save_word2vec_format(os.path.join(training_args.output_dir, "vectors.txt"))
    card = lambda write: write_word2vec_model_card(
        training_args.output_dir,
        model,
        data.description,
        training_summary(training_args, optimizer="SGD, linear decay to min_alpha"),
        metrics,
        repo_id=training_args.hub_model_id,
        write=write,
    )  # noqa: E731
    finish_run(trainer, card)
    return metrics


if __name__ == "__main__":
    main()
