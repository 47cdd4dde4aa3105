#!/usr/bin/env python
"""hfssl's word2vec against gensim's on the same corpus, tokenisation and hyperparameters.

    python benchmarks/word2vec_vs_gensim.py --threads 2            # both modes, 5 epochs each
    python benchmarks/word2vec_vs_gensim.py --device cuda          # hfssl on the GPU, gensim on the CPU

Both train on ``../shared/data/corpus/train.jsonl.gz``: paragraphs as sentences, lower-cased
``[a-z]+(?:'[a-z]+)?`` words (hfssl's default word tokenizer; gensim gets the same word lists),
``vector_size=100, window=5, min_count=5, negative=5, sample=1e-3, alpha 0.025 -> 1e-4``, 5 epochs,
skip-gram and CBOW. words/s is raw words (unknown ones included) times epochs over the training
wall time (vocabulary building excluded for both). Then WordSim-353, SimLex-999 and Google analogy
scores of both, computed by the same code (which equals gensim's evaluation, see the tests).

``--loss_implementations sequential,fused`` trains hfssl once per loss implementation (default
``auto``: the sequential kernel on a CPU, the fused loss on a GPU). ``--shared_negatives`` adds a
skip-gram run whose window pairs share their negatives (Ji et al. 2016). ``--update_speed`` also
times one training step on real batches for each update path (the sequential CPU kernel, the fused
loss with dense gradients, autograd with dense or sparse gradients) with plain SGD, alternating,
same batches. Results go to ``--output_dir/word2vec_vs_gensim.json``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import platform
import re
import statistics
import sys
import time

import torch

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO_ROOT, "recipes"))

import pretrain_word2vec  # noqa: E402

from hfssl import Word2VecConfig, Word2VecModel  # noqa: E402
from hfssl.data.word2vec import SentenceCollator, SentenceDataset, encode_corpus, split_sentences  # noqa: E402
from hfssl.evaluation.word_vectors import word_vector_metrics  # noqa: E402
from hfssl.tokenization import WORD_PATTERN, train_word_level_tokenizer  # noqa: E402

HYPERPARAMETERS = dict(vector_size=100, window=5, min_count=5, negative=5, sample=1e-3, epochs=5)


def read_documents(path: str) -> list[str]:
    with gzip.open(path, "rt") as handle:
        return [json.loads(line)["text"] for line in handle]


def gensim_run(documents: list[str], sg: bool, threads: int, seed: int) -> dict:
    from gensim.models import Word2Vec

    pattern = re.compile(WORD_PATTERN)
    sentences = [
        words for doc in documents for p in split_sentences(doc, "paragraph") if (words := pattern.findall(p.lower()))
    ]
    raw_words = sum(map(len, sentences))
    model = Word2Vec(
        vector_size=HYPERPARAMETERS["vector_size"], window=HYPERPARAMETERS["window"], min_count=HYPERPARAMETERS["min_count"],
        negative=HYPERPARAMETERS["negative"], sample=HYPERPARAMETERS["sample"], sg=int(sg), workers=threads, seed=seed,
        alpha=0.025, min_alpha=1e-4,
    )  # fmt: skip
    model.build_vocab(sentences)
    start = time.perf_counter()
    model.train(sentences, total_examples=len(sentences), epochs=HYPERPARAMETERS["epochs"])
    seconds = time.perf_counter() - start
    return {
        "vocabulary": len(model.wv),
        "train_seconds": seconds,
        "words_per_second": raw_words * HYPERPARAMETERS["epochs"] / seconds,
        **word_vector_metrics(model.wv.index_to_key, torch.from_numpy(model.wv.vectors)),
    }


def hfssl_run(
    train_file: str,
    sg: bool,
    output_dir: str,
    device: str,
    batch_size: int,
    seed: int,
    loss_implementation: str = "auto",
    shared_negatives: bool = False,
) -> dict:
    arguments = [
        "--train_file", train_file, "--output_dir", output_dir, "--sg", str(int(sg)),
        "--vector_size", str(HYPERPARAMETERS["vector_size"]), "--window", str(HYPERPARAMETERS["window"]),
        "--min_count", str(HYPERPARAMETERS["min_count"]), "--negative", str(HYPERPARAMETERS["negative"]),
        "--sample", str(HYPERPARAMETERS["sample"]), "--num_train_epochs", str(HYPERPARAMETERS["epochs"]),
        "--per_device_train_batch_size", str(batch_size), "--learning_rate", "0.025", "--min_alpha", "1e-4",
        "--save_strategy", "no", "--logging_steps", "100", "--report_to", "none", "--disable_tqdm", "true", "--seed", str(seed),
        "--loss_implementation", loss_implementation,
    ]  # fmt: skip
    if device == "cpu":
        arguments.append("--use_cpu")
    if shared_negatives:
        arguments += ["--shared_negatives", "true"]
    metrics = pretrain_word2vec.main(arguments)
    with open(os.path.join(output_dir, "train_results.json")) as handle:
        train = json.load(handle)
    return {
        "vocabulary": Word2VecConfig.from_pretrained(output_dir).vocab_size - 1,
        "train_seconds": train["train_runtime"],
        **metrics,
    }


def update_speed(documents: list[str], sg: bool, device: str, batch_size: int, steps: int = 6) -> dict:
    """Median seconds of one SGD step (rows, loss, backward, step) per update path, on the same batches."""
    tokenizer = train_word_level_tokenizer(documents, min_count=HYPERPARAMETERS["min_count"])
    corpus = encode_corpus(tokenizer, documents)
    dataset, collate = SentenceDataset(corpus), SentenceCollator()
    batches = [
        collate([dataset[i] for i in range(start, start + batch_size)])
        for start in range(0, steps * batch_size, batch_size)
    ]
    paths = {
        "fused (dense gradients)": ("fused", False),
        "autograd, dense gradients": ("autograd", False),
        "autograd, sparse gradients": ("autograd", True),
    }
    if device == "cpu":
        paths = {"sequential CPU kernel (dense gradients)": ("sequential", False), **paths}
    models = {}
    for name, (implementation, sparse) in paths.items():
        model = Word2VecModel(Word2VecConfig(vocab_size=len(tokenizer), sg=sg, loss_implementation=implementation)).to(
            device
        )
        model.set_word_counts(corpus.word_counts(len(tokenizer)))
        model.set_sparse_gradients(sparse)
        models[name] = (model, torch.optim.SGD(model.parameters(), lr=1e-3))
    timings = {name: [] for name in paths}
    rows_per_step = []
    for batch in batches:
        for name, (model, optimizer) in models.items():
            torch.manual_seed(0)
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            rows = model.training_rows(batch["token_ids"].to(device), batch["sentence_ids"].to(device))
            optimizer.zero_grad()
            model(**rows, sgd_step_size=1e-3).loss.backward()
            optimizer.step()
            if device == "cuda":
                torch.cuda.synchronize()
            timings[name].append(time.perf_counter() - start)
        rows_per_step.append(len(rows["center_ids"]))
    rows = statistics.mean(rows_per_step)
    return {
        name: {"seconds_per_step": statistics.median(t[1:]), "rows_per_second": rows / statistics.median(t[1:])}
        for name, t in timings.items()
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--train_file", default=os.path.join(REPO_ROOT, "..", "shared", "data", "corpus", "train.jsonl.gz")
    )
    parser.add_argument("--output_dir", default=os.path.join(REPO_ROOT, "benchmarks", "results", "word2vec"))
    parser.add_argument("--threads", type=int, default=2, help="gensim workers and torch threads")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch_size", type=int, default=1024, help="hfssl: sentences per step")
    parser.add_argument("--modes", default="sg,cbow")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--loss_implementations", default="auto", help="hfssl runs, one per loss implementation (comma-separated)"
    )
    parser.add_argument("--update_speed", action="store_true")
    parser.add_argument(
        "--shared_negatives", action="store_true", help="also run hfssl's skip-gram with window-shared negatives"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger("gensim").setLevel(logging.WARNING)
    documents = read_documents(args.train_file)
    results = {
        "machine": torch.cuda.get_device_name()
        if args.device == "cuda"
        else f"{platform.machine()} CPU, {args.threads} threads",
        "hyperparameters": HYPERPARAMETERS,
    }
    for mode in args.modes.split(","):
        sg = mode == "sg"
        results[mode] = {
            "gensim": gensim_run(documents, sg, args.threads, args.seed),
        }
        for implementation in args.loss_implementations.split(","):
            name = "hfssl" if implementation == "auto" else f"hfssl, {implementation}"
            run_dir = os.path.join(args.output_dir, mode if implementation == "auto" else f"{mode}-{implementation}")
            results[mode][name] = hfssl_run(
                args.train_file, sg, run_dir, args.device, args.batch_size, args.seed, implementation
            )
        if sg and args.shared_negatives:
            results[mode]["hfssl, shared negatives"] = hfssl_run(
                args.train_file,
                sg,
                os.path.join(args.output_dir, "sg-shared"),
                args.device,
                args.batch_size,
                args.seed,
                "fused",
                shared_negatives=True,
            )
        if args.update_speed:
            results[mode]["update_speed"] = update_speed(documents, sg, args.device, args.batch_size)
    os.makedirs(args.output_dir, exist_ok=True)
    with open(os.path.join(args.output_dir, "word2vec_vs_gensim.json"), "w") as handle:
        json.dump(results, handle, indent=2)

    print(
        f"\nword2vec on {os.path.basename(args.train_file)}, {HYPERPARAMETERS}, on {results['machine']} (hfssl on {args.device})\n"
    )
    print("| mode | library | words/s | ratio | WordSim-353 (OOV) | SimLex-999 | analogies (OOV) |")
    print("|---|---|---:|---:|---|---|---|")
    for mode in args.modes.split(","):
        base = results[mode]["gensim"]["words_per_second"]
        for library in [name for name in results[mode] if name != "update_speed"]:
            r = results[mode][library]
            print(
                f"| {mode} | {library} | {r['words_per_second'] / 1e3:.0f}k | {r['words_per_second'] / base:.2f}x | "
                f"{r['wordsim353_spearman']:.3f} ({100 * r['wordsim353_oov_ratio']:.1f}%) | {r['simlex999_spearman']:.3f} | "
                f"{100 * r['analogy_accuracy']:.1f}% ({100 * r['analogy_oov_ratio']:.1f}%) |"
            )
        if args.update_speed:
            for name, r in results[mode]["update_speed"].items():
                print(
                    f"  {mode} update path {name}: {r['rows_per_second'] / 1e3:.0f}k rows/s ({1e3 * r['seconds_per_step']:.0f} ms/step)"
                )


if __name__ == "__main__":
    main()
