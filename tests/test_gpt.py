"""GPT: packing on real text, the loss against stock transformers on the same weights, persistence
and export, generation, and short pretraining runs of the recipe on the shared corpus."""

import json
import math
import sys

import pytest
import torch
from conftest import REPO_ROOT, register_two_process_run, run_without_hfssl
from transformers import AutoModel, DataCollatorForLanguageModeling, GPT2LMHeadModel

import hfssl
from hfssl import GPTConfig, GPTModel
from hfssl.data.packing import pack_documents
from hfssl.tokenization import train_subword_tokenizer

sys.path.insert(0, str(REPO_ROOT / "recipes"))
import pretrain_gpt  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models (conftest.one_torch_thread)

TINY_GPT2 = dict(model_type="gpt2", n_layer=2, n_embd=32, n_head=2, n_positions=64)
COMMON = ["--use_cpu", "--report_to", "none", "--disable_tqdm", "true", "--seed", "0"]


@pytest.fixture(scope="module")
def tokenizer(corpus_documents):
    return train_subword_tokenizer(corpus_documents[:200], "byte_level_bpe", "gpt", vocab_size=1000)


@pytest.fixture(scope="module")
def documents(corpus_documents):
    return corpus_documents[:40]


def _dataset(texts):
    import datasets

    return datasets.Dataset.from_dict({"text": texts})


def _tiny_model(tokenizer, seed=0):
    torch.manual_seed(seed)
    config = GPTConfig(backbone_config={**TINY_GPT2, "vocab_size": len(tokenizer), "eos_token_id": tokenizer.eos_token_id,
                                        "bos_token_id": tokenizer.bos_token_id, "pad_token_id": tokenizer.pad_token_id})  # fmt: skip
    return GPTModel(config).eval()


def test_packing_keeps_every_token_and_separates_documents(tokenizer, documents):
    texts = documents[:25] + ["", "   "] + documents[25:]
    blocks = pack_documents(_dataset(texts), tokenizer, block_size=64, documents_per_batch=10)["input_ids"]
    stream = [
        token
        for text in documents
        for token in tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    ]
    assert [token for block in blocks for token in block] == stream  # nothing lost, one separator after each document
    assert stream.count(tokenizer.eos_token_id) == len(documents)  # the blank documents add nothing
    assert all(len(block) <= 64 for block in blocks)
    assert sum(len(block) < 64 for block in blocks) <= 5  # at most one short tail per batch of 10 documents


def test_packing_refuses_a_pad_token_equal_to_the_separator(tokenizer, documents):
    from transformers import PreTrainedTokenizerFast

    same = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer.backend_tokenizer, eos_token="<|endoftext|>", pad_token="<|endoftext|>"
    )
    with pytest.raises(ValueError, match="distinct pad token"):
        pack_documents(_dataset(documents[:2]), same, block_size=32)


def test_loss_equals_stock_gpt2_and_counts_real_tokens_only(tokenizer, documents):
    model = _tiny_model(tokenizer)
    blocks = pack_documents(_dataset(documents[:6]), tokenizer, block_size=64)
    batch = DataCollatorForLanguageModeling(tokenizer, mlm=False)(
        [blocks[i] for i in range(len(blocks) - 3, len(blocks))]
    )
    assert (batch["labels"] == -100).any()  # the short tail block is padded
    stock = GPT2LMHeadModel(model.backbone.config).eval()
    stock.load_state_dict(model.backbone.state_dict())
    ours = model(**batch)
    torch.testing.assert_close(ours.loss, stock(**batch).loss)
    logits, labels = ours.logits[:, :-1], batch["labels"][:, 1:]
    real = labels != -100
    expected = torch.nn.functional.cross_entropy(logits[real], labels[real])
    torch.testing.assert_close(ours.loss, expected)
    ours.loss.backward()
    assert model.backbone.transformer.wte.weight.grad.abs().sum() > 0


def test_save_load_export_and_generate(tmp_path, tokenizer):
    model = _tiny_model(tokenizer)
    model.save_pretrained(tmp_path / "model")
    restored = AutoModel.from_pretrained(tmp_path / "model")
    assert isinstance(restored, GPTModel) and hfssl.METHODS["gpt"].model_class is GPTModel
    for name, value in model.state_dict().items():
        assert torch.equal(value, restored.state_dict()[name]), name
    assert (
        restored.backbone.lm_head.weight is restored.backbone.transformer.wte.weight
    )  # tying survives the round trip
    prompt = tokenizer("It is a truth", return_tensors="pt")
    ours = model.generate(**prompt, max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert ours.shape == (1, prompt["input_ids"].shape[1] + 6)
    model.export_backbone(tmp_path / "backbone", tokenizer)
    script = (
        "import sys, json, torch\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        f"model = AutoModelForCausalLM.from_pretrained({str(tmp_path / 'backbone')!r}).eval()\n"
        f"tokenizer = AutoTokenizer.from_pretrained({str(tmp_path / 'backbone')!r})\n"
        "out = model.generate(**tokenizer('It is a truth', return_tensors='pt'), max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.pad_token_id)\n"
        "print(json.dumps(out[0].tolist()), 'hfssl' in sys.modules)\n"
    )
    tokens, imported = run_without_hfssl(script).strip().rsplit(" ", 1)
    assert json.loads(tokens) == ours[0].tolist() and imported == "False"


def _recipe_arguments(shared_data, output, *extra):
    return [
        "--train_file", str(shared_data / "corpus" / "train.jsonl.gz"), "--validation_file", str(shared_data / "corpus" / "validation.jsonl.gz"),
        "--output_dir", str(output), "--backbone_config_overrides", "n_layer=2,n_embd=64,n_head=2,n_positions=64", "--block_size", "64",
        "--vocab_size", "1000", "--per_device_train_batch_size", "16", "--learning_rate", "2e-3", "--logging_steps", "10", *COMMON, *extra,
    ]  # fmt: skip


def test_pretraining_on_the_corpus_lowers_validation_loss(tmp_path, shared_data):
    output = tmp_path / "gpt"
    metrics = pretrain_gpt.main(_recipe_arguments(
        shared_data, output, "--max_train_samples", "300", "--max_eval_samples", "30", "--max_steps", "60", "--eval_on_start", "true",
        "--save_strategy", "no",
    ))  # fmt: skip
    history = json.loads((output / "trainer_state.json").read_text())["log_history"]
    first_eval = next(entry["eval_loss"] for entry in history if "eval_loss" in entry)
    print("validation loss", first_eval, "->", metrics["eval_loss"])
    assert metrics["eval_loss"] < first_eval - 0.5  # measured: 6.81 -> 5.90 (one torch thread: 6.91 -> 5.98)
    results = json.loads((output / "all_results.json").read_text())
    assert results["perplexity"] == pytest.approx(math.exp(results["eval_nll_per_token"]), rel=1e-9)
    assert (output / "generated.txt").read_text().startswith("The")
    assert "causal language modelling" in (output / "README.md").read_text()
    assert (output / "backbone" / "tokenizer.json").exists()
    # the reported loss is the mean over predicted tokens (a causal LM predicts labels[:, 1:]; counting
    # every label instead would understate it by (T - 1) / T)
    from transformers import AutoTokenizer

    from hfssl.data.text import TextDataArguments, load_text_datasets

    tokenizer = AutoTokenizer.from_pretrained(output)
    GPTModel.from_pretrained(output).export_backbone(
        tmp_path / "exported"
    )  # a loaded checkpoint exports its tokenizer too
    assert AutoTokenizer.from_pretrained(tmp_path / "exported").get_vocab() == tokenizer.get_vocab()
    validation = load_text_datasets(
        TextDataArguments(
            validation_file=str(shared_data / "corpus" / "validation.jsonl.gz"),
            train_file=str(shared_data / "corpus" / "train.jsonl.gz"),
            max_eval_samples=30,
        )
    ).eval
    blocks = pack_documents(validation, tokenizer, block_size=64)
    model = GPTModel.from_pretrained(output).eval()
    collate = DataCollatorForLanguageModeling(tokenizer, mlm=False)
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(blocks), 8):
            batch = collate([blocks[i] for i in range(start, min(start + 8, len(blocks)))])
            targets = int((batch["labels"][:, 1:] != -100).sum())
            total, count = total + model(**batch).loss.item() * targets, count + targets
    # eval_nll_per_token is that mean exactly; the Trainer's eval_loss weights each batch by its block
    # count, so short last blocks make it close, not equal
    assert metrics["eval_nll_per_token"] == pytest.approx(total / count, rel=1e-5)
    assert metrics["eval_loss"] == pytest.approx(total / count, rel=2e-3)


def test_perplexity_falls_back_to_eval_loss_without_per_token_sums(tmp_path, shared_data):
    metrics = pretrain_gpt.main(_recipe_arguments(
        shared_data, tmp_path / "gpt", "--max_train_samples", "20", "--max_eval_samples", "5", "--max_steps", "1",
        "--save_strategy", "no", "--prediction_loss_only", "true",
    ))  # fmt: skip
    assert "eval_nll_per_token" not in metrics and metrics["perplexity"] == pytest.approx(
        math.exp(metrics["eval_loss"]), rel=1e-9
    )


def test_resume_reproduces_the_uninterrupted_run(tmp_path, shared_data):
    arguments = ["--max_train_samples", "60", "--max_eval_samples", "5", "--max_steps", "6"]
    straight, interrupted, resumed = tmp_path / "straight", tmp_path / "interrupted", tmp_path / "resumed"
    pretrain_gpt.main(_recipe_arguments(shared_data, straight, *arguments, "--save_strategy", "no"))
    pretrain_gpt.main(
        _recipe_arguments(shared_data, interrupted, *arguments, "--save_strategy", "steps", "--save_steps", "3")
    )
    pretrain_gpt.main(_recipe_arguments(
        shared_data, resumed, *arguments, "--save_strategy", "no", "--resume_from_checkpoint", str(interrupted / "checkpoint-3")
    ))  # fmt: skip
    expected, actual = GPTModel.from_pretrained(straight).state_dict(), GPTModel.from_pretrained(resumed).state_dict()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name


# made in one `accelerate launch` with the other modules' 2-process runs (conftest.two_process_runs)
register_two_process_run(
    "gpt",
    "pretrain_gpt.py",
    lambda shared_data, output: _recipe_arguments(
        shared_data,
        output,
        "--max_train_samples",
        "60",
        "--max_eval_samples",
        "5",
        "--max_steps",
        "3",
        "--save_strategy",
        "no",
    ),
)


def test_two_process_accelerate_launch_of_the_recipe(two_process_runs):
    output = two_process_runs["gpt"]
    state = json.loads((output / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    assert "perplexity" in json.loads((output / "all_results.json").read_text())
    assert GPTModel.from_pretrained(output).backbone.config.vocab_size == 1000
