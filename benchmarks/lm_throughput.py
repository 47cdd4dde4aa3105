#!/usr/bin/env python
"""Training throughput of hfssl's GPT, BERT and BART paths against the stock transformers path at
the same model size, batch and sequence length, measured in the same run, and the validation loss
of both after the same steps from the same initial weights.

    python benchmarks/lm_throughput.py --threads 2                 # CPU, all three methods
    python benchmarks/lm_throughput.py --device cuda --batch_size 64 --steps 50

The paths (each step = collate + forward + backward + AdamW step, alternating between the two paths
on the same examples, so drifts in machine speed hit both):

* GPT: ``GPTModel`` vs ``GPT2LMHeadModel``, both on the same packed blocks of ``--seq_len`` tokens
  (``hfssl.data.packing``) collated by ``DataCollatorForLanguageModeling(mlm=False)``;
* BERT: ``BertPretrainingModel`` (MLM head on masked positions only) with
  ``DataCollatorForBertPretraining`` vs ``BertForPreTraining`` with
  ``DataCollatorForLanguageModeling`` (dense MLM head), both on the same next-sentence pairs
  (``hfssl.data.nsp``), masking 15%;
* BART: ``BartPretrainingModel`` vs ``BartForConditionalGeneration``, both fed by
  ``DataCollatorForBartDenoising`` (transformers has no denoising collator).

tokens/s counts real (non-padding) input tokens. The validation loss is computed after the timed
steps on the same fixed validation batches for both paths (masked/noised once, with a fixed seed).
Data: ``../shared/data/corpus``; tokenizers of ``--vocab_size`` trained on its training text.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import statistics
import time

import datasets
import torch
from transformers import (
    BartForConditionalGeneration,
    BertForPreTraining,
    DataCollatorForLanguageModeling,
    GPT2LMHeadModel,
)

from hfssl import (
    BartPretrainingConfig,
    BartPretrainingModel,
    BertPretrainingConfig,
    BertPretrainingModel,
    GPTConfig,
    GPTModel,
)
from hfssl.data.denoising import DataCollatorForBartDenoising, build_denoising_examples
from hfssl.data.masking import DataCollatorForBertPretraining
from hfssl.data.nsp import build_nsp_examples
from hfssl.data.packing import pack_documents
from hfssl.tokenization import train_subword_tokenizer

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(REPO_ROOT, "..", "shared", "data", "corpus")
SIZES = {  # a small model of each family: 4 layers (BART 2 + 2) of width 256
    "gpt": dict(model_type="gpt2", n_layer=4, n_embd=256, n_head=4),
    "bert": dict(model_type="bert", hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024),
    "bart": dict(model_type="bart", d_model=256, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
                 encoder_ffn_dim=1024, decoder_ffn_dim=1024),
}  # fmt: skip


def read_documents(split: str, limit: int) -> list[str]:
    with gzip.open(os.path.join(CORPUS, f"{split}.jsonl.gz"), "rt") as handle:
        return [json.loads(line)["text"] for _, line in zip(range(limit), handle)]


def build(method: str, args, train_docs, val_docs):
    """(tokenizer, train examples, val examples, hfssl model, stock model, hfssl collator, stock collator, val collator)."""
    kind, specials = {
        "gpt": ("byte_level_bpe", "gpt"),
        "bert": ("wordpiece", "bert"),
        "bart": ("byte_level_bpe", "bart"),
    }[method]
    tokenizer = train_subword_tokenizer(train_docs, kind, specials, vocab_size=args.vocab_size)
    special = {
        name: getattr(tokenizer, name)
        for name in ("pad_token_id", "bos_token_id", "eos_token_id")
        if getattr(tokenizer, name) is not None
    }
    backbone = {**SIZES[method], "vocab_size": len(tokenizer), "max_position_embeddings": args.seq_len, **special}
    if method == "gpt":
        backbone["n_positions"] = backbone.pop("max_position_embeddings")
    train, val = datasets.Dataset.from_dict({"text": train_docs}), datasets.Dataset.from_dict({"text": val_docs})
    torch.manual_seed(0)
    if method == "gpt":
        model = GPTModel(GPTConfig(backbone_config=backbone))
        stock = GPT2LMHeadModel(model.backbone.config)
        examples = [pack_documents(d, tokenizer, args.seq_len) for d in (train, val)]
        collator = DataCollatorForLanguageModeling(tokenizer, mlm=False)
        collators = (collator, collator, collator)
    elif method == "bert":
        model = BertPretrainingModel(BertPretrainingConfig(backbone_config=backbone))
        stock = BertForPreTraining(model.backbone.config)
        examples = [build_nsp_examples(d, tokenizer, max_seq_length=args.seq_len, seed=0) for d in (train, val)]
        stock_collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)
        collators = (
            DataCollatorForBertPretraining(tokenizer),
            _without("starts_word", stock_collator),
            DataCollatorForBertPretraining(tokenizer, seed=0),
        )
    else:
        model = BartPretrainingModel(
            BartPretrainingConfig(backbone_config={**backbone, "decoder_start_token_id": tokenizer.eos_token_id})
        )
        stock = BartForConditionalGeneration(model.backbone.config)
        examples = [build_denoising_examples(d, tokenizer, max_seq_length=args.seq_len) for d in (train, val)]
        collators = (
            DataCollatorForBartDenoising(tokenizer),
            DataCollatorForBartDenoising(tokenizer),
            DataCollatorForBartDenoising(tokenizer, seed=0),
        )
    stock.load_state_dict(model.backbone.state_dict())
    return tokenizer, examples[0], examples[1], model, stock, collators


def _without(column: str, collator):
    return lambda features: collator([{k: v for k, v in feature.items() if k != column} for feature in features])


def synchronize(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run(method: str, args, train_docs, val_docs, device) -> dict:
    tokenizer, train, val, model, stock, (ours_collate, stock_collate, val_collate) = build(
        method, args, train_docs, val_docs
    )
    paths = {"hfssl": (model.to(device).train(), ours_collate), "stock": (stock.to(device).train(), stock_collate)}
    optimizers = {name: torch.optim.AdamW(m.parameters(), lr=args.learning_rate) for name, (m, _) in paths.items()}
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0)).tolist()
    batches = [
        [train[i] for i in order[start : start + args.batch_size]] for start in range(0, len(order), args.batch_size)
    ]
    steps = args.warmup + args.steps
    if len(batches) < steps:
        raise ValueError(f"{method}: {len(batches)} batches of training data, need {steps}; raise --train_documents.")
    seconds, tokens = {name: [] for name in paths}, {name: [] for name in paths}
    for step, examples in enumerate(batches[:steps]):
        for name, (module, collate) in paths.items():
            torch.manual_seed(step)
            synchronize(device)
            start = time.perf_counter()
            batch = {k: v.to(device) for k, v in collate(examples).items()}
            loss = module(**batch).loss
            loss.backward()
            optimizers[name].step()
            optimizers[name].zero_grad(set_to_none=True)
            synchronize(device)
            if step >= args.warmup:
                seconds[name].append(time.perf_counter() - start)
                tokens[name].append(int((batch["input_ids"] != tokenizer.pad_token_id).sum()))
    val_batches = [
        val_collate([val[i] for i in range(start, min(start + args.batch_size, len(val)))])
        for start in range(0, len(val), args.batch_size)
    ]
    result = {}
    for name, (module, _) in paths.items():
        module.eval()
        with torch.no_grad():
            losses = [
                module(**{k: v.to(device) for k, v in b.items()}).loss.item() for b in val_batches[: args.val_batches]
            ]
        median = statistics.median(seconds[name])
        result[name] = {
            "seconds_per_step": median,
            "tokens_per_second": statistics.mean(tokens[name]) / median,
            "validation_loss": statistics.mean(losses),
        }
    result["speedup"] = result["hfssl"]["tokens_per_second"] / result["stock"]["tokens_per_second"]
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default="gpt,bert,bart")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--seq_len", type=int, default=128)
    parser.add_argument("--vocab_size", type=int, default=8000)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per path (after --warmup)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--learning_rate", type=float, default=5e-4)
    parser.add_argument("--train_documents", type=int, default=300)
    parser.add_argument("--val_batches", type=int, default=8)
    parser.add_argument("--output", default=os.path.join(REPO_ROOT, "benchmarks", "results", "lm_throughput.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    train_docs, val_docs = read_documents("train", args.train_documents), read_documents("validation", 30)
    machine = (
        torch.cuda.get_device_name() if device.type == "cuda" else f"{platform.machine()} CPU, {args.threads} threads"
    )
    results = {"machine": machine, "settings": vars(args)}
    for method in args.methods.split(","):
        results[method] = run(method, args, train_docs, val_docs, device)
        print(method, json.dumps(results[method]), flush=True)
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as handle:
        json.dump(results, handle, indent=2)
    print(
        f"\nbatch {args.batch_size} x {args.seq_len} tokens, vocabulary {args.vocab_size}, {args.steps} timed steps, on {machine}\n"
    )
    print(
        "| method | hfssl tokens/s | stock tokens/s | hfssl / stock | validation loss hfssl | validation loss stock |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for method in args.methods.split(","):
        r = results[method]
        print(
            f"| {method} | {r['hfssl']['tokens_per_second']:,.0f} | {r['stock']['tokens_per_second']:,.0f} | {r['speedup']:.2f}x | "
            f"{r['hfssl']['validation_loss']:.3f} | {r['stock']['validation_loss']:.3f} |"
        )


if __name__ == "__main__":
    main()
