"""End-to-end runs of the recipes on real data."""

import json
import subprocess
import sys

import pytest
import torch
from conftest import REPO_ROOT, register_two_process_run, require_full_data
from transformers import AutoImageProcessor, AutoModel

sys.path.insert(0, str(REPO_ROOT / "recipes"))
import evaluate_vision  # noqa: E402
import pretrain_vision  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models (conftest.one_torch_thread)

TINY_RESNET = "embedding_size=16,hidden_sizes=[32,64],depths=[1,1],layer_type=basic"
COMMON = ["--use_cpu", "--report_to", "none", "--disable_tqdm", "true", "--dataloader_num_workers", "0", "--seed", "0"]


def test_pretrain_on_fashion_mnist_beats_random_init(tmp_path, shared_data):
    require_full_data("fashion-mnist", "it trains on 6,000 images and scores 1,000")
    data = [
        "--idx_dir",
        str(shared_data / "fashion-mnist"),
        "--max_train_samples",
        "6000",
        "--max_eval_samples",
        "1000",
        "--per_device_eval_batch_size",  # the feature passes: at the default 8 they cost more than the training
        "500",
    ]
    output = tmp_path / "simclr"
    metrics = pretrain_vision.main(
        [
            "--method",
            "simclr",
            "--backbone",
            "resnet",
            "--backbone_config_overrides",
            TINY_RESNET + ",num_channels=1",
            "--config_overrides",
            "projection_hidden_dim=128,projection_dim=64,tau=0.2,min_crop_scale=0.3",
            "--image_size",
            "28",
            "--output_dir",
            str(output),
            "--per_device_train_batch_size",
            "256",
            "--num_train_epochs",
            "3",
            "--learning_rate",
            "3e-3",
            "--weight_decay",
            "1e-4",
            "--warmup_steps",
            "0.1",
            "--save_strategy",
            "no",
            "--logging_steps",
            "10",
            "--final_protocols",
            "knn",
            "--baselines",  # the baseline is evaluate_vision.py --random_init below
            "false",
            *data,
            *COMMON,
        ]
    )
    baseline = evaluate_vision.main(
        [
            "--model_name_or_path",
            str(output),
            "--random_init",
            "--protocol",
            "knn",
            "--output_dir",
            str(tmp_path / "random"),
            *data,
            *COMMON,
        ]
    )
    print("pretrained", metrics, "random init", baseline)
    # measured (one torch thread): 0.712 vs 0.656, seed 1: 0.676 vs 0.636; two threads: 0.715 vs 0.656, seed 1:
    # 0.681 vs 0.636. 2 epochs instead of 3 left 0.693 vs 0.656 (seed 0, two threads): too close to keep.
    assert metrics["knn_accuracy"] > baseline["knn_accuracy"] + 0.03

    results = json.loads((output / "all_results.json").read_text())
    assert results["knn_accuracy"] == pytest.approx(metrics["knn_accuracy"])
    card = (output / "README.md").read_text()
    assert (
        "**SimCLR**" in card
        and f"| knn_accuracy | {metrics['knn_accuracy']:.4f} |" in card
        and "fashion-mnist" in card
    )
    # the checkpoint carries its image processor, and the exported backbone is a plain ResNet
    processor = AutoImageProcessor.from_pretrained(output)
    assert processor.size["height"] == 28
    backbone = AutoModel.from_pretrained(output / "backbone")
    assert type(backbone).__name__ == "ResNetModel"


# made in one `accelerate launch` with the other modules' 2-process runs (conftest.two_process_runs)
register_two_process_run(
    "vision",
    "pretrain_vision.py",
    lambda shared_data, output: [
        "--method",
        "simclr",
        "--backbone",
        "resnet",
        "--backbone_config_overrides",
        TINY_RESNET,
        "--config_overrides",
        "projection_hidden_dim=64,projection_dim=32",
        "--image_size",
        "16",
        "--output_dir",
        str(output),
        "--per_device_train_batch_size",
        "32",
        "--max_steps",
        "6",
        "--save_strategy",
        "no",
        "--logging_steps",
        "2",
        "--per_device_eval_batch_size",  # 180 eval images: 3 batches, the last one short (at the default 8: 23)
        "64",
        *COMMON,
    ],
)


def test_two_process_accelerate_launch_of_the_recipe(two_process_runs):
    output = two_process_runs["vision"]
    state = json.loads((output / "trainer_state.json").read_text())
    assert state["global_step"] == 6
    # two connected processes: each step consumed 2 x 32 images, so 6 steps are 6 / (1617 // 64) epochs
    assert state["log_history"][-1]["epoch"] == pytest.approx(6 / (1617 // 64), abs=1e-3)
    results = json.loads((output / "all_results.json").read_text())
    assert 0.1 < results["knn_accuracy"] <= 1 and 0.1 < results["linear_probe_accuracy"] <= 1
    assert results["eval_samples"] == 180  # every digits eval image counted once across the 2 processes


def test_resume_from_checkpoint_true_continues_from_the_last_checkpoint(tmp_path):
    """``--resume_from_checkpoint true`` (the Trainer's own convention) takes the last checkpoint in
    --output_dir; the string "true" reached Trainer.train as a path before."""
    output = tmp_path / "resumable"
    arguments = lambda output: [  # noqa: E731
        "--method", "simclr", "--backbone", "resnet", "--backbone_config_overrides", TINY_RESNET,
        "--config_overrides", "projection_hidden_dim=32,projection_dim=16", "--image_size", "16", "--output_dir", str(output),
        "--per_device_train_batch_size", "32", "--save_strategy", "steps", "--save_steps", "2", "--logging_steps", "1", "--final_protocols", "", *COMMON,
    ]  # fmt: skip
    pretrain_vision.main([*arguments(output), "--max_steps", "2"])
    pretrain_vision.main([*arguments(output), "--max_steps", "4", "--resume_from_checkpoint", "true"])
    state = json.loads((output / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    assert [entry["step"] for entry in state["log_history"] if "loss" in entry] == [
        1,
        2,
        3,
        4,
    ]  # steps 1-2 come from the checkpoint
    with pytest.raises(ValueError, match="holds no checkpoint"):
        pretrain_vision.main([*arguments(tmp_path / "empty"), "--max_steps", "2", "--resume_from_checkpoint", "true"])


def test_launching_two_processes_without_use_cpu_is_an_error(tmp_path):
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(REPO_ROOT / "accelerate_config.yaml"),
        "--num_processes",
        "2",
        str(REPO_ROOT / "recipes" / "pretrain_vision.py"),
        "--output_dir",
        str(tmp_path),
    ]
    if torch.cuda.is_available():
        pytest.skip("with GPUs this launch is valid")
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode != 0 and "--use_cpu" in result.stderr


def test_evaluate_recipe_on_an_exported_backbone_with_all_protocols(tmp_path):
    output = tmp_path / "simclr"
    pretrain_vision.main(
        [
            "--backbone",
            "resnet",
            "--backbone_config_overrides",
            TINY_RESNET,
            "--config_overrides",
            "projection_hidden_dim=32,projection_dim=16",
            "--image_size",
            "16",
            "--output_dir",
            str(output),
            "--per_device_train_batch_size",
            "64",
            "--max_steps",
            "2",
            "--save_strategy",
            "no",
            "--final_protocols",
            "",
            *COMMON,
        ]
    )
    metrics = evaluate_vision.main(
        [
            "--model_name_or_path",
            str(output / "backbone"),
            "--protocol",
            "knn,linear,finetune",
            "--output_dir",
            str(tmp_path / "eval"),
            "--num_train_epochs",
            "2",
            "--per_device_train_batch_size",
            "64",
            "--per_device_eval_batch_size",
            "256",
            "--learning_rate",
            "3e-3",
            *COMMON,
        ]
    )
    assert set(metrics) >= {"knn_accuracy", "linear_probe_accuracy", "finetune_accuracy"}
    assert metrics["linear_probe_accuracy"] > 0.5 and metrics["finetune_accuracy"] > 0.3  # digits, chance is 0.1
    written = json.loads((tmp_path / "eval" / "all_results.json").read_text())
    assert written["knn_accuracy"] == pytest.approx(metrics["knn_accuracy"])
    # export_backbone on a loaded checkpoint (README's snippet) takes the checkpoint's image processor along
    AutoModel.from_pretrained(output).export_backbone(tmp_path / "exported")
    assert (
        AutoImageProcessor.from_pretrained(tmp_path / "exported").to_dict()
        == AutoImageProcessor.from_pretrained(output).to_dict()
    )


def test_the_bare_command_fits_the_data_and_reports_against_baselines(tmp_path, caplog):
    """`pretrain_vision.py --method simclr --dataset_name builtin:digits --max_steps 20`: no backbone
    or size flags. auto picks a 1-channel resnet-tiny at 16 px for the 8 px digits (logged), and the
    results, the card and the pictures put the figures beside random init and raw pixels."""
    output = tmp_path / "bare"
    with caplog.at_level("INFO"):
        metrics = pretrain_vision.main([
            "--method", "simclr", "--dataset_name", "builtin:digits", "--max_steps", "20", "--output_dir", str(output),
            "--use_cpu", "--report_to", "none", "--disable_tqdm", "true",
        ])  # fmt: skip
    assert "--backbone auto picked resnet-tiny" in caplog.text and "--image_size N" in caplog.text
    config = json.loads((output / "config.json").read_text())
    assert (config["image_size"], config["backbone_config"]["model_type"]) == (16, "resnet")
    assert config["backbone_config"]["num_channels"] == 1
    results = json.loads((output / "all_results.json").read_text())
    for prefix in ("", "random_init_", "raw_pixels_"):
        for protocol in ("knn_accuracy", "linear_probe_accuracy"):
            assert 0.1 < results[prefix + protocol] <= 1, prefix + protocol  # digits: chance is 0.1
    assert metrics["random_init_knn_accuracy"] == results["random_init_knn_accuracy"]
    state = json.loads((output / "trainer_state.json").read_text())
    assert len([entry for entry in state["log_history"] if "loss" in entry]) == 20  # logging_steps 0.02 of 20 steps
    card = (output / "README.md").read_text()
    assert (
        "### Against baselines" in card and "| same architecture, random init |" in card and "| raw pixels |" in card
    )
    for picture in ("training_curves.png", "embedding_map.png"):
        assert (output / picture).stat().st_size > 1000 and f"]({picture})" in card
    assert AutoModel.from_pretrained(output / "backbone").config.num_channels == 1


def test_method_flags_live_in_the_config(tmp_path):
    """The augmentation is set with --config_overrides and saved in the checkpoint's config; a value
    out of range fails before training."""
    arguments = [
        "--method", "simclr", "--backbone", "resnet-tiny", "--image_size", "16", "--max_steps", "1",
        "--per_device_train_batch_size", "32", "--final_protocols", "", "--save_strategy", "no", *COMMON,
    ]  # fmt: skip
    pretrain_vision.main(
        [
            *arguments,
            "--config_overrides",
            "min_crop_scale=0.3,color_jitter_strength=0.5",
            "--output_dir",
            str(tmp_path / "a"),
        ]
    )
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert (config["min_crop_scale"], config["color_jitter_strength"]) == (0.3, 0.5)
    with pytest.raises(ValueError, match=r"SimCLRConfig.tau must be > 0"):
        pretrain_vision.main([*arguments, "--config_overrides", "tau=-1", "--output_dir", str(tmp_path / "b")])
    assert not (tmp_path / "b" / "config.json").exists()
    with pytest.raises(ValueError, match="not an image method"):
        pretrain_vision.main([*arguments, "--method", "bert", "--output_dir", str(tmp_path / "c")])
