"""accelerate_fsdp_config.yaml (FSDP2) at 2 processes, against the DDP file, through recipes/pretrain_vision.py.

What runs where (accelerate 1.15, torch 2.13, transformers 5.24):

* ``test_fsdp_config_wraps_the_vit_layers``: the file's settings; the ViT presets name the layers to wrap.
* ``test_fsdp_launch_with_the_config_file``: the plain ``accelerate launch --config_file
  accelerate_fsdp_config.yaml``. Whether the launched Trainer runs FSDP is asked at runtime (a probe
  launch, ~7 s); with >= 2 GPUs it does, and the recipe is checked against DDP. On a CPU machine
  accelerate gives ``--use_cpu`` processes ``MULTI_CPU`` (DDP over gloo) and drops the FSDP plugin,
  so the test skips with what the probe saw.
* ``test_fsdp2_over_gloo_through_the_recipe``: the same recipe under FSDP2 over gloo on the CPU,
  through a test-only shim that sets accelerate's state to FSDP after its CPU setup (the three
  assignments accelerate itself makes for GPUs). torch's FSDP2 collectives (all-gather,
  reduce-scatter) run on gloo, and the run must equal DDP's, its checkpoint and exported backbone
  included. What this needs of hfssl: ``get_input_embeddings`` on image models (accelerate's FSDP2
  setup asks), the backbone export from the gathered full state dict, and the feature methods
  registered as FSDP forwards (kNN and probes gather the sharded weights). Two recipe launches
  (~35 s on 2 cores); the DDP one is made with the other modules' 2-process runs (conftest.two_process_runs).

Runs use ``--max_grad_norm 0`` and SGD: FSDP2 and DDP then give bitwise equal losses, weights and
kNN accuracy on the CPU (measured over 3-4 steps). With clipping, the clip norm is summed in a
different order under FSDP2 (1e-7 relative at step 1), which SimCLR's ill-conditioned gradients
grow to ~1e-4 in the grad norm by step 3; under AdamW the mathematically zero gradients (key biases,
the norm bias before the BatchNorm head) turn that noise into lr-sized weight differences.
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest
import torch
from conftest import register_two_process_run, run_without_hfssl

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
FSDP_CONFIG = REPO_ROOT / "accelerate_fsdp_config.yaml"
DDP_CONFIG = REPO_ROOT / "accelerate_config.yaml"
ON_GPUS = torch.cuda.device_count() >= 2

TINY_VIT = "hidden_size=32,num_hidden_layers=2,num_attention_heads=2,intermediate_size=64,patch_size=4"
RECIPE_ARGUMENTS = [
    "--method", "simclr", "--backbone", "vit", "--backbone_config_overrides", TINY_VIT,
    "--dataset_name", "builtin:digits", "--image_size", "16", "--max_steps", "4", "--per_device_train_batch_size", "32",
    "--optim", "sgd", "--learning_rate", "0.01", "--max_grad_norm", "0", "--seed", "0",
    "--final_protocols", "knn", "--max_eval_samples", "64", "--save_strategy", "no", "--logging_steps", "1",
    "--report_to", "none", "--disable_tqdm", "true",
]  # fmt: skip

# Launched instead of the recipe: prints how many FSDP2 units accelerate made (the proof that the run
# was sharded) and, with HFSSL_TEST_FORCE_FSDP=1, turns accelerate's CPU state (MULTI_CPU, gloo) into
# FSDP as accelerate does for GPUs (accelerate/state.py, AcceleratorState.__init__).
SHIM = """
import os, runpy, sys
import accelerate.accelerator
import accelerate.state as state
from accelerate.utils import DistributedType

if os.environ.get("HFSSL_TEST_FORCE_FSDP") == "1":
    _init = state.AcceleratorState.__init__

    def _init_as_on_gpus(self, *args, fsdp_plugin=None, **kwargs):
        _init(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            self.distributed_type = DistributedType.FSDP
            self.fsdp_plugin = fsdp_plugin
            state.PartialState._shared_state["distributed_type"] = DistributedType.FSDP

    state.AcceleratorState.__init__ = _init_as_on_gpus

_prepare = accelerate.accelerator.fsdp2_prepare_model


def _counted_prepare(accelerator, model):
    from torch.distributed.fsdp import FSDPModule

    model = _prepare(accelerator, model)
    units = {}
    for module in model.modules():
        if isinstance(module, FSDPModule):
            name = type(module).__name__.removeprefix("FSDP")
            units[name] = units.get(name, 0) + 1
    print(f"FSDP2 units on rank {accelerator.process_index}: {sorted(units.items())}", flush=True)
    return model


accelerate.accelerator.fsdp2_prepare_model = _counted_prepare
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""

# What the Trainer of a recipe launched with the FSDP config sees, without training anything.
PROBE = """
import json, os, sys, torch
from transformers import Trainer
from hfssl.training import SSLTrainingArguments

args = SSLTrainingArguments(output_dir=sys.argv[1], use_cpu=os.environ["PROBE_USE_CPU"] == "1", report_to="none")
trainer = Trainer(model=torch.nn.Linear(2, 2), args=args)
state = trainer.accelerator.state
print("PROBE " + json.dumps({
    "rank": args.process_index, "world_size": args.world_size,
    "distributed_type": str(state.distributed_type).split(".")[-1], "fsdp_enabled": trainer.is_fsdp_enabled,
    "backend": getattr(state, "backend", None),
}), flush=True)
"""


def _environment(**extra) -> dict:
    pythonpath = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": pythonpath, **extra}


def _launch(config, script, arguments, cwd, timeout=300, **env) -> subprocess.CompletedProcess:
    """``accelerate launch --config_file <config> --num_processes 2 <script> <arguments>`` (not asserting)."""
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config), "--num_processes", "2",
        str(script), *arguments,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=_environment(**env), timeout=timeout)


def _loss_history(output: pathlib.Path) -> list[tuple[int, float]]:
    history = json.loads((output / "trainer_state.json").read_text())["log_history"]
    return [(entry["step"], entry["loss"]) for entry in history if "loss" in entry]


def _fsdp_agrees_with_ddp(tmp_path: pathlib.Path, force: bool, ddp_out: pathlib.Path | None = None) -> None:
    """The vision recipe under the FSDP config vs the DDP config, 2 processes, same seed: the
    first losses, the kNN accuracy and the saved weights agree; the checkpoint reloads with
    AutoModel after ``import hfssl``, the exported backbone with plain transformers. ``ddp_out``: the
    output of a DDP run made already (else it is launched here)."""
    device = [] if ON_GPUS else ["--use_cpu"]
    shim = tmp_path / "fsdp_shim.py"
    shim.write_text(SHIM)
    recipe = REPO_ROOT / "recipes" / "pretrain_vision.py"
    fsdp_out = tmp_path / "fsdp"
    env = {"HFSSL_TEST_FORCE_FSDP": "1"} if force else {}

    fsdp = _launch(
        FSDP_CONFIG, shim, [str(recipe), *RECIPE_ARGUMENTS, *device, "--output_dir", str(fsdp_out)], tmp_path, **env
    )
    assert fsdp.returncode == 0, f"FSDP launch failed (exit {fsdp.returncode}):\n{fsdp.stderr[-4000:]}"
    # the root, the embeddings and both layers are FSDP2 units on both processes: sharded, not DDP
    units = "[('SimCLRModel', 1), ('ViTEmbeddings', 1), ('ViTLayer', 2)]"
    for rank in (0, 1):
        assert f"FSDP2 units on rank {rank}: {units}" in fsdp.stdout, fsdp.stdout[-2000:]

    if ddp_out is None:
        ddp_out = tmp_path / "ddp"
        ddp = _launch(DDP_CONFIG, recipe, [*RECIPE_ARGUMENTS, *device, "--output_dir", str(ddp_out)], tmp_path)
        assert ddp.returncode == 0, ddp.stderr[-4000:]

    for output in (fsdp_out, ddp_out):
        assert json.loads((output / "trainer_state.json").read_text())["global_step"] == 4
    fsdp_losses, ddp_losses = _loss_history(fsdp_out), _loss_history(ddp_out)
    assert [step for step, _ in fsdp_losses] == [1, 2, 3, 4]
    tolerance = 1e-4 if ON_GPUS else 1e-6  # bitwise equal on the CPU; GPUs reduce in other orders
    assert [loss for _, loss in fsdp_losses] == pytest.approx([loss for _, loss in ddp_losses], rel=tolerance)
    knn = [json.loads((output / "all_results.json").read_text())["knn_accuracy"] for output in (fsdp_out, ddp_out)]
    assert knn[0] == pytest.approx(knn[1], abs=2 / 64 if ON_GPUS else 0)

    # One full safetensors file each (not a shard): the same tensors as DDP's.
    from safetensors.torch import load_file

    for name in ("model.safetensors", "backbone/model.safetensors"):
        sharded, replicated = load_file(fsdp_out / name), load_file(ddp_out / name)
        assert sharded.keys() == replicated.keys()
        for key, tensor in replicated.items():
            torch.testing.assert_close(sharded[key], tensor, atol=1e-4 if ON_GPUS else 1e-6, rtol=0, msg=key)

    # the exported backbone loads with plain transformers alone, in a process without hfssl ...
    run_without_hfssl(f"""
import sys
from transformers import AutoModel
backbone, info = AutoModel.from_pretrained({str(fsdp_out / "backbone")!r}, output_loading_info=True)
assert type(backbone).__name__ == "ViTModel" and "hfssl" not in sys.modules, type(backbone)
assert not info["unexpected_keys"] and not info["mismatched_keys"], info
assert all(key.startswith("pooler.") for key in info["missing_keys"]), info  # the export has no pooler
""")
    # ... and the checkpoint with AutoModel once hfssl is imported, as here
    from transformers import AutoModel

    import hfssl  # noqa: F401

    model, info = AutoModel.from_pretrained(fsdp_out, output_loading_info=True)
    assert type(model).__name__ == "SimCLRModel", type(model)
    assert not any(info.values()), info


def test_fsdp_config_wraps_the_vit_layers():
    import yaml
    from accelerate.utils.dataclasses import get_module_class_from_name

    import hfssl
    from hfssl.models.builder import build_vision_ssl_model

    config = yaml.safe_load(FSDP_CONFIG.read_text())
    fsdp = config["fsdp_config"]
    assert config["distributed_type"] == "FSDP" and config["mixed_precision"] == "no"
    assert fsdp["fsdp_version"] == 2 and fsdp["fsdp_reshard_after_forward"] is True
    assert fsdp["fsdp_state_dict_type"] == "FULL_STATE_DICT"
    assert fsdp["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    # the same launch keys as the DDP file, so the README's overrides work with both
    ddp = yaml.safe_load(DDP_CONFIG.read_text())
    assert {key: config[key] for key in ddp if key != "distributed_type"} == {
        key: value for key, value in ddp.items() if key != "distributed_type"
    }
    # No class named: accelerate wraps the model's _no_split_modules, which transformers collects
    # from the backbone inside hfssl's model; for the ViT presets, ViTLayer.
    assert "fsdp_transformer_layer_cls_to_wrap" not in fsdp
    for backbone, overrides in (("vit", TINY_VIT), ("vit-tiny", None), ("vit-base", None)):
        model = build_vision_ssl_model(hfssl.METHODS["simclr"], backbone, overrides, None, "auto", 16, 1)
        assert {"ViTLayer", "ViTEmbeddings"} <= set(model._no_split_modules), (backbone, model._no_split_modules)
        assert all(get_module_class_from_name(model, name) is not None for name in model._no_split_modules)


def test_fsdp_launch_with_the_config_file(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    result = _launch(
        FSDP_CONFIG, probe, [str(tmp_path / "probe-out")], tmp_path, timeout=120, PROBE_USE_CPU=str(int(not ON_GPUS))
    )
    assert result.returncode == 0, result.stderr[-4000:]
    seen = [json.loads(line.split(" ", 1)[1]) for line in result.stdout.splitlines() if line.startswith("PROBE ")]
    assert sorted(entry["rank"] for entry in seen) == [0, 1] and all(entry["world_size"] == 2 for entry in seen), seen
    if not all(entry["fsdp_enabled"] and entry["distributed_type"] == "FSDP" for entry in seen):
        import accelerate

        pytest.skip(
            f"accelerate {accelerate.__version__} runs no FSDP here: 2 processes launched with accelerate_fsdp_config.yaml"
            f"{'' if ON_GPUS else ' and --use_cpu'} came up as distributed_type={seen[0]['distributed_type']} "
            f"(backend {seen[0]['backend']}), Trainer.is_fsdp_enabled={seen[0]['fsdp_enabled']}: accelerate enables "
            "FSDP for accelerator devices only, and on the CPU the launch is DDP over gloo. "
            "test_fsdp2_over_gloo_through_the_recipe runs FSDP2 over gloo with accelerate's state forced."
        )
    _fsdp_agrees_with_ddp(tmp_path, force=False)


if not ON_GPUS:  # the DDP side, made in one `accelerate launch` with the other modules' 2-process runs (conftest)
    register_two_process_run(
        "fsdp-ddp",
        "pretrain_vision.py",
        lambda shared_data, output: [*RECIPE_ARGUMENTS, "--use_cpu", "--output_dir", output],
    )


@pytest.mark.skipif(ON_GPUS, reason="on GPUs test_fsdp_launch_with_the_config_file runs the real thing")
def test_fsdp2_over_gloo_through_the_recipe(tmp_path, two_process_runs):
    _fsdp_agrees_with_ddp(tmp_path, force=True, ddp_out=two_process_runs["fsdp-ddp"])
