"""Checks of a checkpoint before a run resumes from it, so that a damaged or mismatched checkpoint fails
with the file or the config keys at fault and the way out, instead of a raw ``SafetensorError`` naming no
file or a page of size-mismatch lines.

:func:`check_resume_checkpoint` reads no tensor: it parses each safetensors header and compares the file
size with the end of the last tensor's data, opens the zip directory of each ``torch.save`` file, parses
``trainer_state.json``, and compares the saved ``config.json`` with the model's config key by key.
Loading the files is still ``Trainer``'s job (with ``weights_only=True``).
"""

from __future__ import annotations

import glob
import json
import os
import re
import zipfile
from typing import Any

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from transformers.utils import SAFE_WEIGHTS_NAME

SAFE_WEIGHTS = "model.safetensors"
SAFE_WEIGHTS_INDEX = "model.safetensors.index.json"
TORCH_WEIGHTS = "pytorch_model.bin"
TORCH_WEIGHTS_INDEX = "pytorch_model.bin.index.json"
TRAINER_STATE = "trainer_state.json"
CONFIG = "config.json"

# config keys that change neither the architecture nor the run: bookkeeping, output flags, labels
# SSL never reads, and fields a backbone config derives from others (a ResNet's stage_names from depths)
IGNORED_CONFIG_KEYS = frozenset(
    {
        "transformers_version", "architectures", "dtype", "torch_dtype", "auto_map", "id2label", "label2id",
        "problem_type", "output_attentions", "output_hidden_states", "return_dict", "use_return_dict", "use_cache",
        "torchscript", "chunk_size_feed_forward", "tokenizer_class", "prefix", "task_specific_params",
        "finetuning_task", "attn_implementation", "experts_implementation", "stage_names", "out_features",
        "out_indices",
    }
)  # fmt: skip

_MISSING = object()


# ---- the files ---------------------------------------------------------------------------------
def safetensors_problem(path: str) -> str | None:
    """What is wrong with the safetensors file at ``path`` (None: its header parses and the file is as long as
    the header says), read from its header alone."""
    size = os.path.getsize(path)
    if size == 0:
        return "is empty (0 bytes)"
    if size < 8:
        return f"is truncated ({size} bytes, not even the 8-byte header length)"
    with open(path, "rb") as handle:
        header_length = int.from_bytes(handle.read(8), "little")
        if header_length > size - 8:
            return f"is truncated or not a safetensors file (its header claims {header_length} bytes; the file has {size})"
        raw = handle.read(header_length)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        return "has an unreadable header (not a safetensors file, or overwritten)"
    if not isinstance(header, dict):
        return "has an unreadable header (not a safetensors file, or overwritten)"
    data_end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            return f"has a malformed header entry for tensor {name!r}"
        data_end = max(data_end, offsets[1])
    expected = 8 + header_length + data_end
    if size < expected:
        return f"is truncated: {size} bytes where its header needs {expected} ({expected - size} bytes missing)"
    if size > expected:
        return f"has {size - expected} bytes more than its header accounts for (not the file that was saved)"
    return None


def torch_file_problem(path: str) -> str | None:
    """What is wrong with a ``torch.save`` file (None: a zip whose directory reads, or a legacy pickle)."""
    size = os.path.getsize(path)
    if size == 0:
        return "is empty (0 bytes)"
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(path) as archive:
                archive.namelist()
        except (zipfile.BadZipFile, OSError) as error:
            return f"is truncated or damaged (its zip directory cannot be read: {error})"
        return None
    if magic[:1] == b"\x80":  # a legacy (non-zip) torch.save pickle: nothing cheap to check
        return None
    return "is not a file that torch.save wrote (neither a zip nor a pickle header)"


def json_problem(path: str, required_key: str | None = None) -> str | None:
    """What is wrong with a JSON file (None: it parses, as an object holding ``required_key``)."""
    if os.path.getsize(path) == 0:
        return "is empty (0 bytes)"
    try:
        with open(path, encoding="utf-8") as handle:
            content = json.load(handle)
    except (UnicodeDecodeError, ValueError) as error:
        return f"is not valid JSON ({error})"
    if required_key is not None and not (isinstance(content, dict) and required_key in content):
        return f"has no {required_key!r} entry"
    return None


def _sharded_weights_problems(checkpoint_dir: str, index_name: str, check) -> list[tuple[str, str]]:
    """Problems of a sharded checkpoint: its index, then each shard the index names."""
    index = os.path.join(checkpoint_dir, index_name)
    problem = json_problem(index, "weight_map")
    if problem is not None:
        return [(index, problem)]
    with open(index, encoding="utf-8") as handle:
        shards = sorted(set(json.load(handle)["weight_map"].values()))
    problems = []
    for shard in shards:
        path = os.path.join(checkpoint_dir, shard)
        problem = "is missing (the index names it)" if not os.path.isfile(path) else check(path)
        if problem is not None:
            problems.append((path, problem))
    return problems


def _is_sharded_engine_checkpoint(checkpoint_dir: str) -> bool:
    """FSDP or DeepSpeed checkpoints keep weights and optimizer state in their own folders and formats."""
    names = os.listdir(checkpoint_dir)
    return any(name.startswith(("pytorch_model_fsdp", "global_step")) for name in names)


def weight_file_problems(checkpoint_dir: str) -> list[tuple[str, str]]:
    """(file, problem) for the weights ``Trainer`` would load, chosen in its order: ``model.safetensors``,
    ``pytorch_model.bin``, else the sharded index of either."""
    path = lambda name: os.path.join(checkpoint_dir, name)  # noqa: E731
    if os.path.isfile(path(SAFE_WEIGHTS)):
        problem = safetensors_problem(path(SAFE_WEIGHTS))
        return [] if problem is None else [(path(SAFE_WEIGHTS), problem)]
    if os.path.isfile(path(TORCH_WEIGHTS)):
        problem = torch_file_problem(path(TORCH_WEIGHTS))
        return [] if problem is None else [(path(TORCH_WEIGHTS), problem)]
    if os.path.isfile(path(SAFE_WEIGHTS_INDEX)):
        return _sharded_weights_problems(checkpoint_dir, SAFE_WEIGHTS_INDEX, safetensors_problem)
    if os.path.isfile(path(TORCH_WEIGHTS_INDEX)):
        return _sharded_weights_problems(checkpoint_dir, TORCH_WEIGHTS_INDEX, torch_file_problem)
    if _is_sharded_engine_checkpoint(checkpoint_dir):
        return []
    return [(path(SAFE_WEIGHTS), "is missing: the checkpoint holds no model weights")]


# what Trainer restores on resume, by role: the file patterns, and what restarts from scratch without them
STATE_FILES = {
    "optimizer": (("optimizer.pt", "optimizer.bin", "rank*-of-*-optimizer.pt"), "the optimizer"),
    "scheduler": (("scheduler.pt",), "the learning-rate schedule"),
    "rng": (("rng_state.pth", "rng_state_*.pth"), "the random streams"),
    "scaler": (("scaler.pt",), None),  # only mixed-precision runs save one
}


def _state_files(checkpoint_dir: str) -> dict[str, list[str]]:
    """The training-state files of ``checkpoint_dir``, by role of :data:`STATE_FILES` (an empty list: none found)."""
    return {
        role: sorted({path for pattern in patterns for path in glob.glob(os.path.join(checkpoint_dir, pattern))})
        for role, (patterns, _) in STATE_FILES.items()
    }


def state_file_problems(checkpoint_dir: str) -> list[tuple[str, str]]:
    """(file, problem) for ``trainer_state.json`` and the optimizer, scheduler, RNG and scaler states: missing
    ones (Trainer would silently restart the optimizer, its schedule or the random streams) and damaged ones."""
    problems = []
    trainer_state = os.path.join(checkpoint_dir, TRAINER_STATE)
    if not os.path.isfile(trainer_state):
        problems.append((trainer_state, "is missing (it holds the step to resume from)"))
    elif (problem := json_problem(trainer_state, "global_step")) is not None:
        problems.append((trainer_state, problem))
    files = _state_files(checkpoint_dir)
    engine = _is_sharded_engine_checkpoint(checkpoint_dir)  # its optimizer state lives in its own folders
    for role, (patterns, restarts) in STATE_FILES.items():
        if restarts is not None and not files[role] and not (engine and role == "optimizer"):
            problem = (
                f"is missing, so {restarts} would restart from scratch "
                "(a checkpoint saved with --save_only_model cannot be resumed)"
            )
            problems.append((os.path.join(checkpoint_dir, patterns[0]), problem))
    for role in files:
        for path in files[role]:
            if (problem := torch_file_problem(path)) is not None:
                problems.append((path, problem))
    config = os.path.join(checkpoint_dir, CONFIG)
    if os.path.isfile(config) and (problem := json_problem(config, "model_type")) is not None:
        problems.append((config, problem))
    return problems


def checkpoint_file_problems(checkpoint_dir: str) -> list[tuple[str, str]]:
    """Every (file, problem) that would stop or silently spoil a resume from ``checkpoint_dir``."""
    if not os.path.isdir(checkpoint_dir):
        return [(checkpoint_dir, "is not a directory")]
    return weight_file_problems(checkpoint_dir) + state_file_problems(checkpoint_dir)


def _step(checkpoint_dir: str) -> int | None:
    match = re.fullmatch(rf"{PREFIX_CHECKPOINT_DIR}-(\d+)", os.path.basename(os.path.normpath(checkpoint_dir)))
    return int(match.group(1)) if match else None


def previous_good_checkpoint(checkpoint_dir: str) -> str | None:
    """The latest ``checkpoint-N`` beside ``checkpoint_dir`` with a lower N whose files pass the same checks."""
    checkpoint_dir = os.path.normpath(checkpoint_dir)
    output_dir, step = os.path.dirname(checkpoint_dir), _step(checkpoint_dir)
    if not os.path.isdir(output_dir):
        return None
    candidates = [(_step(name), os.path.join(output_dir, name)) for name in os.listdir(output_dir)]
    candidates = [(n, path) for n, path in candidates if n is not None and (step is None or n < step)]
    for _, path in sorted(candidates, reverse=True):
        if os.path.isdir(path) and path != checkpoint_dir and not checkpoint_file_problems(path):
            return path
    return None


def damaged_checkpoint_message(checkpoint_dir: str, problems: list[tuple[str, str]]) -> str:
    """The error for a checkpoint with damaged or missing files, offering the previous good one."""
    listed = "; ".join(f"{path} {problem}" for path, problem in problems)
    previous = previous_good_checkpoint(checkpoint_dir)
    if previous is not None:
        way_out = (
            f"The previous checkpoint, {previous}, is complete: resume from it with --resume_from_checkpoint {previous} "
            f"(or delete {checkpoint_dir}, and --resume_from_checkpoint true picks it)."
        )
    else:
        way_out = (
            f"No earlier checkpoint in {os.path.dirname(os.path.normpath(checkpoint_dir))} is complete: start the run "
            "again, in a new --output_dir or with --overwrite_output_dir."
        )
    return f"Cannot resume from {checkpoint_dir}: {listed}. {way_out}"


# ---- the config ----------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    """``value`` as JSON would give it back (tuples as lists, keys as strings, dtypes as names)."""
    return json.loads(json.dumps(value, default=str, sort_keys=True))


def config_differences(saved: dict, current: dict, prefix: str = "", saved_keys_only: bool = False) -> list:
    """(dotted key, saved value, current value) for each key that differs, ignoring :data:`IGNORED_CONFIG_KEYS`
    and private keys at every level, and special-token ids set on one side only; nested configs are compared
    key by key (a different ``model_type`` is one difference). ``saved_keys_only``: compare the keys ``saved`` holds (a config.json written as a diff)."""
    differences = []
    keys = set(saved) if saved_keys_only else set(saved) | set(current)
    for key in sorted(keys):
        if key in IGNORED_CONFIG_KEYS or key.startswith("_"):
            continue
        old, new = saved.get(key, _MISSING), current.get(key, _MISSING)
        name = f"{prefix}{key}"
        if isinstance(old, dict) and isinstance(new, dict):
            if old.get("model_type") != new.get("model_type"):
                differences.append((f"{name}.model_type", old.get("model_type"), new.get("model_type")))
            else:
                differences.extend(config_differences(old, new, f"{name}.", saved_keys_only))
        elif old != new and not (key.endswith("_token_id") and (old in (None, _MISSING) or new in (None, _MISSING))):
            # Trainer.train fills unset special-token ids from the tokenizer; only two set ids can disagree
            differences.append((name, old, new))
    return differences


def saved_config(checkpoint_dir: str, current_config) -> tuple[dict, bool]:
    """The checkpoint's config as a full dict (rebuilt with the current config's class, so defaults left out
    of the saved diff are filled in), and whether it is only the saved keys (it could not be rebuilt)."""
    with open(os.path.join(checkpoint_dir, CONFIG), encoding="utf-8") as handle:
        raw = json.load(handle)
    if raw.get("model_type") == getattr(current_config, "model_type", None):
        try:
            return _plain(type(current_config).from_dict(dict(raw)).to_dict()), False
        except (ValueError, TypeError, KeyError):  # e.g. a value the current ranges refuse
            pass
    return _plain(raw), True


def _show(value: Any) -> str:
    return "(not set)" if value is _MISSING else json.dumps(value)


def config_mismatch_message(checkpoint_dir: str, differences: list) -> str:
    """The error for a checkpoint whose config differs from the model's, key by key, with the fix."""
    lines = "\n".join(f"  {key}: checkpoint {_show(old)}, this run {_show(new)}" for key, old, new in differences)
    keys = ", ".join(key for key, _, _ in differences)
    return (
        f"Cannot resume from {checkpoint_dir}: this run's model config differs from the checkpoint's in "
        f"{len(differences)} key{'s' if len(differences) > 1 else ''}:\n{lines}\n"
        f"Resume with the flags of the run that wrote it (the ones that set {keys}: e.g. --backbone, "
        "--backbone_config_overrides, --config_overrides or the method's own flags), or start a new run in a new "
        "--output_dir."
    )


# ---- the check -----------------------------------------------------------------------------------
def check_resume_checkpoint(checkpoint_dir: str, model) -> None:
    """Raise a ValueError before ``Trainer.train`` resumes from ``checkpoint_dir`` when

    * a weight file (``model.safetensors``, sharded safetensors with their index, ``pytorch_model.bin``) is
      empty, truncated or has a garbage header, or a state file (``trainer_state.json``, ``optimizer.pt``,
      ``scheduler.pt``, ``rng_state*.pth``) is missing or damaged: the message names each file and what is
      wrong, and offers the previous complete ``checkpoint-N`` of the same output directory;
    * the checkpoint's ``config.json`` differs from ``model.config`` in keys that matter (architecture, method
      settings; not bookkeeping such as ``transformers_version``): the message lists each key, dotted for
      nested configs (``backbone_config.hidden_size``), with both values.

    ``model`` is the unwrapped model about to be trained (a ``PreTrainedModel``; without a ``config`` only the
    files are checked). No tensor is read.
    """
    problems = checkpoint_file_problems(checkpoint_dir)
    if problems:
        raise ValueError(damaged_checkpoint_message(checkpoint_dir, problems))
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "to_dict") or not os.path.isfile(os.path.join(checkpoint_dir, CONFIG)):
        return
    saved, saved_keys_only = saved_config(checkpoint_dir, config)
    differences = config_differences(saved, _plain(config.to_dict()), saved_keys_only=saved_keys_only)
    if differences:
        raise ValueError(config_mismatch_message(checkpoint_dir, differences))


def load_checkpoint_weights(model, checkpoint_dir: str) -> None:
    """Load ``checkpoint_dir``'s ``model.safetensors`` into ``model`` (a ``PreTrainedModel``), every key accounted
    for.

    transformers 5 writes some models' weights under their original names (``save_pretrained``'s
    ``save_original_format``: a ViT's ``layers.0.attention.q_proj`` is saved as
    ``encoder.layer.0.attention.attention.query``), and ``Trainer`` resumes with a plain ``load_state_dict`` that
    does not rename them back: those layers would keep their initial weights, with a logged warning. Here a
    checkpoint whose keys do not match is read as ``from_pretrained`` reads it (renamed), and a key still missing
    or left over is an error naming it."""
    from safetensors.torch import load_file

    state_dict = load_file(os.path.join(checkpoint_dir, SAFE_WEIGHTS_NAME), device="cpu")
    if set(state_dict) == set(model.state_dict()):
        model.load_state_dict(state_dict)
        return
    fix = "Resume with the model the checkpoint was saved from (the same --method, --backbone and overrides)."
    try:
        renamed, info = type(model).from_pretrained(checkpoint_dir, config=model.config, output_loading_info=True)
    except RuntimeError as error:  # weights of other shapes
        raise ValueError(
            f"The weights in {checkpoint_dir} do not fit this run's {type(model).__name__}: {error}. {fix}"
        ) from error
    wrong = {kind: list(info.get(kind) or []) for kind in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if any(wrong.values()):
        raise ValueError(
            f"The weights in {checkpoint_dir} do not fit this run's {type(model).__name__}: "
            + "; ".join(f"{kind.replace('_', ' ')} {keys[:5]}" for kind, keys in wrong.items() if keys)
            + f". {fix}"
        )
    model.load_state_dict(renamed.state_dict())
