"""The run guards: a run that cannot learn is refused before its first step, a non-finite loss or
gradient stops it (or is skipped), NaN weights are never written, and a new run never replaces a
finished one. Toy models show the mechanics at exact steps; the recipes show each modality."""

import json
import os
import sys

import datasets
import pytest
import torch
from conftest import REPO_ROOT
from torch import nn
from transformers import PreTrainedConfig, PreTrainedModel, TrainerCallback
from transformers.utils import ModelOutput

from hfssl.training import SSLTrainer, SSLTrainingArguments
from hfssl.training.guards import MAX_CONSECUTIVE_SKIPS, NonFiniteTrainingError, require_finite_weights

sys.path.insert(0, str(REPO_ROOT / "recipes"))
import pretrain_gpt  # noqa: E402
import pretrain_vision  # noqa: E402
import pretrain_word2vec  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models (conftest.one_torch_thread)

COMMON = ["--use_cpu", "--report_to", "none", "--disable_tqdm", "true", "--dataloader_num_workers", "0", "--seed", "0"]


# ---- a toy model that turns non-finite at chosen steps ---------------------------------------
class GuardToyConfig(PreTrainedConfig):
    model_type = "hfssl_test_guard_toy"
    bad_steps: list = ()  # training forwards (1-based) whose loss or gradient is not finite
    bad_kind: str = (
        "loss"  # "loss": NaN loss; "gradient": finite loss, NaN gradient; "detached": NaN loss, finite gradient
    )


class GuardToyModel(PreTrainedModel):
    config_class = GuardToyConfig

    def __init__(self, config):
        super().__init__(config)
        self.linear = nn.Linear(3, 1)
        self.forwards = 0
        self.hooked_steps = []
        self.skipped_hook_steps = []
        self.post_init()

    def forward(self, x, y):
        loss = nn.functional.mse_loss(self.linear(x).squeeze(-1), y)
        if self.training:
            self.forwards += 1
            if self.forwards in self.config.bad_steps:
                if self.config.bad_kind == "loss":
                    loss = loss * float("nan")
                elif self.config.bad_kind == "detached":
                    loss = loss + float("nan") * loss.detach()
                else:  # d sqrt(u) / du at u = 0 is infinite: a finite loss with a NaN gradient
                    loss = loss + 0.0 * torch.sqrt(self.linear.weight.sum() * 0.0)
        return ModelOutput(loss=loss)

    def after_optimizer_step(self, progress):
        self.hooked_steps.append(progress.step)

    def after_skipped_step(self, progress):
        self.skipped_hook_steps.append(progress.step)


class WeightsAtEachStep(TrainerCallback):
    def __init__(self):
        self.weights = {}

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.weights[state.global_step] = model.linear.weight.detach().clone()


def toy_rows(n: int = 64) -> datasets.Dataset:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=generator)
    return datasets.Dataset.from_dict({"x": x.tolist(), "y": (x @ torch.tensor([1.0, -2.0, 0.5])).tolist()})


def toy_trainer(tmp_path, bad_steps=(), bad_kind="loss", rows=None, **arguments):
    defaults = dict(
        output_dir=str(tmp_path / "run"), per_device_train_batch_size=8, max_steps=6, learning_rate=0.05,
        save_strategy="no", logging_steps=1, report_to="none", use_cpu=True, disable_tqdm=True, seed=0,
    )  # fmt: skip
    args = SSLTrainingArguments(**{**defaults, **arguments})
    model = GuardToyModel(GuardToyConfig(bad_steps=list(bad_steps), bad_kind=bad_kind))
    recorder = WeightsAtEachStep()
    trainer = SSLTrainer(model=model, args=args, train_dataset=toy_rows() if rows is None else rows)
    trainer.add_callback(recorder)
    return trainer, recorder


# ---- non-finite steps ------------------------------------------------------------------------
def test_a_nan_loss_stops_the_run_at_its_step_and_keeps_the_last_good_checkpoint(tmp_path):
    trainer, recorder = toy_trainer(tmp_path, bad_steps=[3], save_strategy="steps", save_steps=1)
    with pytest.raises(NonFiniteTrainingError, match=r"stopped at step 3: the loss is not finite") as error:
        trainer.train()
    run = tmp_path / "run"
    assert f"The last good checkpoint is {run / 'checkpoint-2'}" in str(error.value)
    assert "--learning_rate 0.05" in str(error.value) and "No final model was written" in str(error.value)
    assert sorted(path.name for path in run.iterdir()) == ["checkpoint-1", "checkpoint-2"]
    assert torch.isfinite(GuardToyModel.from_pretrained(run / "checkpoint-2").linear.weight).all()
    assert torch.isfinite(trainer.model.linear.weight).all()  # stopped before the optimizer applied it


def test_a_nan_gradient_under_a_finite_loss_stops_the_run(tmp_path):
    trainer, _ = toy_trainer(tmp_path, bad_steps=[2], bad_kind="gradient", max_grad_norm=0.0)
    with pytest.raises(NonFiniteTrainingError, match=r"step 2: the gradient norm \(nan\) is not finite") as error:
        trainer.train()
    assert "set --max_grad_norm 1.0" in str(error.value)  # clipping is off: it is one of the fixes
    assert "No checkpoint had been saved yet" in str(error.value)


def test_nan_policy_skip_drops_exactly_that_update_and_counts_it(tmp_path):
    trainer, recorder = toy_trainer(tmp_path, bad_steps=[3, 5], nan_policy="skip")
    output = trainer.train()
    assert output.metrics["nonfinite_steps_skipped"] == 2
    assert torch.equal(recorder.weights[3], recorder.weights[2]) and torch.equal(
        recorder.weights[5], recorder.weights[4]
    )
    assert not torch.equal(recorder.weights[4], recorder.weights[3])  # the steps around them still learn
    assert trainer.model.hooked_steps == [1, 2, 4, 6]  # step hooks see only the steps that were taken
    assert trainer.model.skipped_hook_steps == [3, 5]  # and the dropped ones get their own hook
    assert torch.isfinite(trainer.model.linear.weight).all()


def test_nan_policy_skip_still_stops_a_diverged_run(tmp_path):
    trainer, _ = toy_trainer(tmp_path, bad_steps=list(range(1, 30)), nan_policy="skip", max_steps=20)
    with pytest.raises(NonFiniteTrainingError, match=rf"after {MAX_CONSECUTIVE_SKIPS - 1} skipped steps in a row"):
        trainer.train()


def test_nan_weights_are_never_written(tmp_path):
    trainer, _ = toy_trainer(tmp_path)
    with torch.no_grad():
        trainer.model.linear.bias.fill_(float("nan"))
    with pytest.raises(
        NonFiniteTrainingError, match=r"Refusing to write the final model: 1 weight tensors .*linear\.bias"
    ):
        trainer.save_model()
    assert not (tmp_path / "run" / "model.safetensors").exists()
    with pytest.raises(NonFiniteTrainingError, match="the backbone"):
        require_finite_weights(trainer.model, "the backbone")


TWO_PROCESS_SCRIPT = """
import os, pathlib, sys
sys.path.insert(0, {tests!r})
from test_guards import toy_trainer
rank = int(os.environ["RANK"])
trainer, _ = toy_trainer(pathlib.Path({output!r}), bad_steps=[3] if rank == 0 else [], bad_kind="detached")
trainer.train()
"""


def test_every_process_stops_at_the_step_one_process_found_non_finite(tmp_path):
    """Process 0's loss turns NaN at step 3 while its gradient, and process 1, stay finite: both must
    stop there (a process stopping alone would leave the other waiting in its next all-reduce)."""
    import subprocess

    script = tmp_path / "toy_run.py"
    script.write_text(TWO_PROCESS_SCRIPT.format(tests=str(REPO_ROOT / "tests"), output=str(tmp_path)))
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(REPO_ROOT / "accelerate_config.yaml"),
        "--num_processes", "2", str(script),
    ]  # fmt: skip
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=environment, timeout=240)
    assert result.returncode != 0
    assert result.stderr.count("NonFiniteTrainingError: Training stopped at step 3: the loss is not finite") == 2


# ---- runs that cannot learn ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("arguments", "rows", "message"),
    [
        ({"learning_rate": 0.0}, 64, r"--learning_rate 0.0: the optimizer would change no weight"),
        ({"per_device_train_batch_size": 32}, 20, r"has 20 rows, fewer than one global batch of 32 .*at most 20"),
        ({"max_steps": -1, "num_train_epochs": 0}, 64, r"--num_train_epochs 0 with no --max_steps"),
    ],
)
def test_a_run_that_cannot_learn_is_refused_before_its_first_step(tmp_path, arguments, rows, message):
    trainer, recorder = toy_trainer(tmp_path, rows=toy_rows(rows), **arguments)
    with pytest.raises(ValueError, match=message):
        trainer.train()
    assert trainer.model.forwards == 0 and not (tmp_path / "run" / "model.safetensors").exists()


def test_a_method_names_the_global_batch_it_needs(tmp_path):
    trainer, _ = toy_trainer(tmp_path, per_device_train_batch_size=1)
    type(trainer.model).min_global_batch_size = 2
    type(trainer.model).min_global_batch_reason = "The toy needs a pair."
    try:
        with pytest.raises(ValueError, match=r"at least 2 \(.* = 1 x 1 = 1\): The toy needs a pair\."):
            trainer.train()
    finally:
        del type(trainer.model).min_global_batch_size, type(trainer.model).min_global_batch_reason


def test_a_stream_that_yields_no_batch_is_an_error_not_a_saved_model(tmp_path):
    class Empty(torch.utils.data.IterableDataset):
        def __iter__(self):
            return iter(())

    empty = Empty()
    trainer, _ = toy_trainer(tmp_path, rows=empty, max_steps=3, accelerator_config={"dispatch_batches": False})
    with pytest.raises(RuntimeError, match="without a single optimizer step"):
        trainer.train()


# ---- the output directory --------------------------------------------------------------------
def test_a_new_run_is_refused_over_a_finished_or_unfinished_run(tmp_path):
    finished = tmp_path / "finished"
    finished.mkdir()
    (finished / "trainer_state.json").write_text("{}")
    (finished / "checkpoint-4").mkdir()
    with pytest.raises(
        ValueError, match=r"holds a finished run \(trainer_state.json, checkpoint-4\).*--resume_from_checkpoint true"
    ):
        SSLTrainingArguments(output_dir=str(finished), use_cpu=True)
    unfinished = tmp_path / "unfinished"
    (unfinished / "checkpoint-2").mkdir(parents=True)
    with pytest.raises(ValueError, match="holds an unfinished run"):
        SSLTrainingArguments(output_dir=str(unfinished), use_cpu=True)
    SSLTrainingArguments(output_dir=str(unfinished), use_cpu=True, resume_from_checkpoint="true")
    SSLTrainingArguments(output_dir=str(tmp_path / "logs-only"), use_cpu=True)
    SSLTrainingArguments(output_dir=str(finished), use_cpu=True, overwrite_output_dir=True)
    assert (finished / "checkpoint-4").exists()  # nothing is deleted until the new run can start
    with pytest.raises(ValueError, match="--nan_policy must be one of stop, skip"):
        SSLTrainingArguments(output_dir=str(tmp_path / "x"), use_cpu=True, nan_policy="ignore")


def test_overwrite_output_dir_clears_the_previous_run_only_once_the_new_one_can_start(tmp_path):
    run = tmp_path / "run"
    for name in ("checkpoint-8", "backbone"):
        (run / name).mkdir(parents=True)
    for name in ("trainer_state.json", "model.safetensors", "all_results.json", "notes.txt"):
        (run / name).write_text("previous run")
    refused, _ = toy_trainer(tmp_path, overwrite_output_dir=True, learning_rate=0.0)
    with pytest.raises(ValueError, match="--learning_rate 0.0"):
        refused.train()
    assert (run / "checkpoint-8").is_dir() and (run / "model.safetensors").read_text() == "previous run"
    trainer, _ = toy_trainer(tmp_path, overwrite_output_dir=True, max_steps=2)
    trainer.train()
    assert not (run / "checkpoint-8").exists() and not (run / "backbone").exists()
    assert not (run / "all_results.json").exists() and (run / "notes.txt").exists()  # only a run's own outputs go


class EmbeddingToyModel(GuardToyModel):
    def forward(self, x, y):
        output = super().forward(x, y)
        output["embeddings"] = self.linear(x).repeat(1, 4) * (output.loss / output.loss.detach())
        return output


def test_a_skipped_step_logs_no_monitors_from_its_non_finite_embeddings(tmp_path):
    args = SSLTrainingArguments(
        output_dir=str(tmp_path / "run"), per_device_train_batch_size=8, max_steps=4, learning_rate=0.05,
        save_strategy="no", logging_steps=1, report_to="none", use_cpu=True, disable_tqdm=True, nan_policy="skip",
    )  # fmt: skip
    model = EmbeddingToyModel(GuardToyConfig(bad_steps=[2]))
    trainer = SSLTrainer(model=model, args=args, train_dataset=toy_rows())
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert "embedding_std" in logged[0] and "embedding_std" not in logged[1] and "embedding_std" in logged[2]


# ---- each modality, through its recipe -------------------------------------------------------
VISION = [
    "--method", "simclr", "--dataset_name", "builtin:digits", "--backbone", "resnet-tiny", "--image_size", "16",
    "--max_steps", "2", "--final_protocols", "", "--baselines", "false", "--save_strategy", "no", *COMMON,
]  # fmt: skip


def test_vision_runs_that_cannot_learn_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"SimCLRModel needs a global batch of at least 2 .*no negative"):
        pretrain_vision.main([*VISION, "--per_device_train_batch_size", "1", "--output_dir", str(tmp_path / "a")])
    with pytest.raises(ValueError, match=r"--learning_rate 0.0"):
        pretrain_vision.main([*VISION, "--learning_rate", "0", "--output_dir", str(tmp_path / "b")])
    with pytest.raises(ValueError, match=r"has 30 rows, fewer than one global batch of 64"):
        pretrain_vision.main([
            *VISION, "--max_train_samples", "30", "--per_device_train_batch_size", "64", "--output_dir", str(tmp_path / "c"),
        ])  # fmt: skip
    for name in "abc":
        assert not (tmp_path / name / "model.safetensors").exists()


def test_a_vision_run_never_replaces_a_finished_run(tmp_path):
    output = tmp_path / "run"
    run = [*VISION, "--per_device_train_batch_size", "32", "--output_dir", str(output)]
    pretrain_vision.main(run)
    weights = (output / "model.safetensors").read_bytes()
    card = (output / "README.md").read_text()
    with pytest.raises(ValueError, match=r"holds a finished run .*--overwrite_output_dir"):
        pretrain_vision.main([*run, "--learning_rate", "0.01"])
    assert (output / "model.safetensors").read_bytes() == weights and (output / "README.md").read_text() == card
    pretrain_vision.main([*run, "--learning_rate", "0.01", "--overwrite_output_dir", "true"])
    assert (output / "model.safetensors").read_bytes() != weights


def gpt_arguments(shared_data, output, *extra):
    return [
        "--train_file", str(shared_data / "corpus" / "validation.jsonl.gz"), "--max_train_samples", "20",
        "--output_dir", str(output), "--backbone_config_overrides", "n_layer=1,n_embd=32,n_head=2,n_positions=64",
        "--block_size", "32", "--vocab_size", "300", "--per_device_train_batch_size", "8", "--logging_steps", "1",
        "--generation_max_new_tokens", "8", *COMMON, *extra,
    ]  # fmt: skip


def test_a_diverging_language_model_stops_with_the_step_and_writes_no_model(tmp_path, shared_data):
    """GPT at learning rate 1e8: finite at step 1, NaN from step 2 (Trainer's logs would show loss 0)."""
    output = tmp_path / "gpt"
    with pytest.raises(
        NonFiniteTrainingError, match=r"stopped at step 2: the loss is not finite.*--learning_rate 100000000.0"
    ) as error:
        pretrain_gpt.main(
            gpt_arguments(shared_data, output, "--learning_rate", "1e8", "--max_steps", "4", "--save_steps", "1")
        )
    assert f"last good checkpoint is {output / 'checkpoint-1'}" in str(error.value)
    assert not (output / "model.safetensors").exists() and not (output / "backbone").exists()
    assert not (output / "README.md").exists()


def test_text_and_word_vector_runs_that_cannot_learn_are_refused(tmp_path, shared_data):
    with pytest.raises(ValueError, match=r"--learning_rate 0.0"):
        pretrain_gpt.main(gpt_arguments(shared_data, tmp_path / "gpt", "--learning_rate", "0", "--max_steps", "2"))
    word2vec = [
        "--train_file", str(shared_data / "corpus" / "validation.jsonl.gz"), "--max_train_samples", "10",
        "--num_train_epochs", "1", "--save_strategy", "no", *COMMON,
    ]  # fmt: skip
    with pytest.raises(ValueError, match=r"--learning_rate 0.0"):
        pretrain_word2vec.main(
            [*word2vec, "--learning_rate", "0", "--min_alpha", "0", "--output_dir", str(tmp_path / "w")]
        )
    finished = tmp_path / "w2v"
    pretrain_word2vec.main([*word2vec, "--output_dir", str(finished)])
    vectors = (finished / "model.safetensors").read_bytes()
    with pytest.raises(ValueError, match="holds a finished run"):
        pretrain_word2vec.main([*word2vec, "--output_dir", str(finished)])
    assert (finished / "model.safetensors").read_bytes() == vectors
    assert json.loads((finished / "all_results.json").read_text())


def test_a_sample_longer_than_the_context_is_cut_to_fit_after_training(tmp_path, shared_data, caplog):
    """The default 40 sample tokens do not fit a 16-position GPT: cut (logged), not an IndexError after the work."""
    output = tmp_path / "gpt"
    arguments = [
        "--train_file", str(shared_data / "corpus" / "validation.jsonl.gz"), "--max_train_samples", "20",
        "--output_dir", str(output), "--backbone_config_overrides", "n_layer=1,n_embd=32,n_head=2,n_positions=16",
        "--block_size", "16", "--vocab_size", "300", "--per_device_train_batch_size", "8", "--max_steps", "1",
        "--save_strategy", "no", *COMMON,
    ]  # fmt: skip
    with caplog.at_level("WARNING"):
        pretrain_gpt.main(arguments)
    assert "--generation_max_new_tokens 40 does not fit the model's context of 16 positions" in caplog.text
    assert (output / "generated.txt").exists() and (output / "backbone" / "model.safetensors").exists()
