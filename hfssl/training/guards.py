"""Guards that make every pretraining run either learn or stop and say why, for every method.

* :class:`RunGuardArguments` (``--nan_policy``, ``--overwrite_output_dir``), mixed into every
  recipe's training arguments; :func:`refuse_to_replace_run` runs when they are parsed, before any
  data is read: a new run never starts over a finished run's files, nor mixes its checkpoints with
  another run's.
* :func:`check_run_can_learn`, before the first step: a positive learning rate, at least one full
  global batch of training data, and the global batch the method needs (SimCLR's negatives).
* :class:`NonFiniteGuard`, at every optimizer step: the first non-finite loss or gradient stops the
  run (``--nan_policy stop``, the default) before the optimizer applies it, naming the step, the
  likely causes and the fixes, or skips the update (``--nan_policy skip``, each skip logged).
* :func:`require_finite_weights`, before any weights are written (checkpoints, the final model, the
  exported backbone): NaN weights are never saved as if trained.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint

logger = logging.getLogger(__name__)

NAN_POLICIES = ("stop", "skip")
# With --nan_policy skip, this many non-finite steps in a row mean the run diverged rather than met an odd batch.
MAX_CONSECUTIVE_SKIPS = 10
# Files a finished run leaves at the top of its --output_dir (Trainer.save_state, save_model).
FINISHED_RUN_FILES = ("trainer_state.json", "model.safetensors", "model.safetensors.index.json")
# What --overwrite_output_dir deletes of the previous run before the new one's first step (the rest is replaced).
PREVIOUS_RUN_OUTPUTS = (
    *FINISHED_RUN_FILES,
    "all_results.json",
    "train_results.json",
    "eval_results.json",
    "data_results.json",
    "backbone",
    "dual_encoder",
)


class NonFiniteTrainingError(FloatingPointError):
    """A non-finite loss or gradient stopped training (``--nan_policy stop``)."""


@dataclass
class RunGuardArguments:
    """Training-argument fields of the guards; every recipe's ``TrainingArguments`` inherits them."""

    nan_policy: str = field(
        default="stop",
        metadata={
            "help": "On the first non-finite loss or gradient: 'stop' (name the step and the likely cause, keep the last "
            f"good checkpoint, write no final model) or 'skip' (drop that update, log it; {MAX_CONSECUTIVE_SKIPS} in a "
            "row still stop the run)."
        },
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Start a new run in an --output_dir that holds a finished run or checkpoints: its checkpoint-* "
            "folders are deleted (so runs never mix) and its files replaced. Without it such a run is refused."
        },
    )

    # Evaluation recipes that reuse training arguments set this False: they write results, not runs.
    guards_output_dir: ClassVar[bool] = True

    def check_run_guards(self) -> None:
        """Validate the guard fields and protect ``output_dir``; call from ``__post_init__``."""
        if self.nan_policy not in NAN_POLICIES:
            raise ValueError(f"--nan_policy must be one of {', '.join(NAN_POLICIES)}, got {self.nan_policy!r}.")
        if self.guards_output_dir:
            refuse_to_replace_run(self)


# ---- the output directory ---------------------------------------------------------------------
def _is_resuming(args) -> bool:
    checkpoint = getattr(args, "resume_from_checkpoint", None)
    return checkpoint is not None and str(checkpoint).lower() not in ("false", "")


def _checkpoint_folders(output_dir: str) -> list[str]:
    prefix = PREFIX_CHECKPOINT_DIR + "-"
    names = [name for name in os.listdir(output_dir) if name.startswith(prefix)]
    return sorted(
        (name for name in names if os.path.isdir(os.path.join(output_dir, name))),
        key=lambda name: int(name[len(prefix) :]) if name[len(prefix) :].isdigit() else -1,
    )


def _previous_run(args) -> tuple[list[str], list[str]]:
    """(checkpoint folders, finished-run files) of a previous run in ``args.output_dir`` that this run would replace."""
    output_dir = getattr(args, "output_dir", None)
    if not output_dir or not os.path.isdir(output_dir) or _is_resuming(args):
        return [], []
    finished = [name for name in FINISHED_RUN_FILES if os.path.isfile(os.path.join(output_dir, name))]
    return _checkpoint_folders(output_dir), finished


def refuse_to_replace_run(args) -> None:
    """Raise when ``args.output_dir`` holds a finished run or another run's checkpoints and this run
    neither resumes (``--resume_from_checkpoint``) nor asks to replace it (``--overwrite_output_dir``:
    then :func:`remove_previous_run` clears it once the new run is known to be able to start)."""
    checkpoints, finished = _previous_run(args)
    if (not checkpoints and not finished) or getattr(args, "overwrite_output_dir", False):
        return
    output_dir = args.output_dir
    what = "a finished run" if finished else "an unfinished run"
    held = ", ".join(finished + checkpoints[-3:]) + (" ..." if len(checkpoints) > 3 else "")
    last = get_last_checkpoint(output_dir)
    resume = f"--resume_from_checkpoint true (continues from {last}), " if last else ""
    raise ValueError(
        f"--output_dir {output_dir} holds {what} ({held}); starting a new run there would replace its model and card "
        f"and mix its checkpoints with the new run's. Pass {resume}a new --output_dir, or --overwrite_output_dir "
        "to replace it (its checkpoints, weights and results are deleted before the new run's first step)."
    )


def remove_previous_run(trainer) -> None:
    """With ``--overwrite_output_dir``, delete the previous run's checkpoints, weights, results and
    ``backbone/`` (main process; the others wait), so that nothing of it can pass for the new run's."""
    args = trainer.args
    if not getattr(args, "overwrite_output_dir", False) or not getattr(args, "guards_output_dir", False):
        return
    checkpoints, finished = _previous_run(args)
    if (checkpoints or finished) and trainer.is_world_process_zero():
        removed = []
        for name in [*checkpoints, *PREVIOUS_RUN_OUTPUTS]:
            path = os.path.join(args.output_dir, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.isfile(path):
                os.remove(path)
            else:
                continue
            removed.append(name)
        logger.warning(
            "--overwrite_output_dir: deleted the previous run's %s in %s.", ", ".join(removed), args.output_dir
        )
    trainer.accelerator.wait_for_everyone()


# ---- before training --------------------------------------------------------------------------
def check_run_can_learn(trainer, model: nn.Module) -> None:
    """Refuse a run that cannot learn, before its first step: a zero (or negative) learning rate, a
    training set smaller than one global batch (no step would run), no step to run at all, or a
    global batch below ``model.min_global_batch_size`` (e.g. SimCLR at 1: no negatives, loss 0). A model
    may check the training set's size itself: ``model.check_training_set(rows, global_batch, drop_last)``
    (MoCo v2 warns when its queue outlasts an epoch)."""
    args = trainer.args
    if args.learning_rate <= 0:
        raise ValueError(
            f"--learning_rate {args.learning_rate}: the optimizer would change no weight and the run would save its "
            "initial model as if trained. Pass a positive learning rate."
        )
    if args.max_steps <= 0 and args.num_train_epochs <= 0:
        raise ValueError(
            f"--num_train_epochs {args.num_train_epochs} with no --max_steps: the run would take no step. "
            "Pass a positive --num_train_epochs or --max_steps."
        )
    per_process = args.per_device_train_batch_size
    global_batch = per_process * args.world_size
    minimum = getattr(model, "min_global_batch_size", 1)
    if global_batch < minimum:
        raise ValueError(
            f"{type(model).__name__} needs a global batch of at least {minimum} "
            f"(--per_device_train_batch_size x processes = {per_process} x {args.world_size} = {global_batch}): "
            f"{getattr(model, 'min_global_batch_reason', '')} Raise --per_device_train_batch_size."
        )
    dataset = trainer.train_dataset
    if dataset is None or not hasattr(dataset, "__len__"):
        return  # a stream: its length is unknown until read; train() refuses a run that took no step
    rows, needed = len(dataset), (global_batch if args.dataloader_drop_last else 1)
    if rows < needed:
        raise ValueError(
            f"The training split has {rows} rows, fewer than one global batch of {global_batch} "
            f"(--per_device_train_batch_size {per_process} x {args.world_size} processes; the last incomplete batch "
            f"is dropped): no step would run. Lower --per_device_train_batch_size to at most "
            f"{max(rows // args.world_size, 1)}, or train on more data."
        )
    check_training_set = getattr(model, "check_training_set", None)
    if check_training_set is not None:
        check_training_set(rows, global_batch, args.dataloader_drop_last)


def refuse_run_without_steps(trainer) -> None:
    """After ``Trainer.train``: raise, before anything is saved, when not one optimizer step was taken."""
    if trainer.state.global_step == 0:
        raise RuntimeError(
            "Training ended without a single optimizer step (the training data ran out before the first full batch; "
            "with a streamed dataset, check that it yields rows and that --max_steps fits it). Nothing was saved."
        )


# ---- at every step ----------------------------------------------------------------------------
def _last_good_checkpoint(output_dir: str) -> str:
    last = get_last_checkpoint(output_dir) if os.path.isdir(output_dir) else None
    if last is None:
        return "No checkpoint had been saved yet."
    return (
        f"The last good checkpoint is {last} (--resume_from_checkpoint {last} repeats this run's learning-rate schedule "
        "and method settings; to change them, start a new run)."
    )


class NonFiniteGuard(TrainerCallback):
    """Checks each optimizer step's loss and gradient norm before the optimizer applies them.

    The trainer feeds it through :meth:`record_loss` (every micro-step, without a host sync) and
    :meth:`record_grad_norm`. Under fp16 loss scaling, non-finite gradients are the scaler's business
    (it skips the step and lowers the scale), so only the loss is checked there. With several
    processes the verdict is all-reduced, so every process stops or skips the same step."""

    def __init__(self, trainer):
        self.trainer = trainer
        self.skipped_steps = 0
        self.consecutive_skips = 0
        self.skipped_this_step = False
        self._loss_finite: torch.Tensor | None = None
        self._grad_norm = None

    def record_loss(self, loss: torch.Tensor) -> None:
        finite = torch.isfinite(loss.detach()).all()
        self._loss_finite = finite if self._loss_finite is None else self._loss_finite & finite

    def record_grad_norm(self, grad_norm) -> None:
        self._grad_norm = grad_norm

    def on_step_begin(self, args, state, control, **kwargs):
        self.skipped_this_step = False

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        loss_finite, grad_norm = self._loss_finite, self._grad_norm
        self._loss_finite, self._grad_norm = None, None
        loss_ok = bool(loss_finite) if loss_finite is not None else True
        grad_ok = True
        if grad_norm is not None and self.trainer.accelerator.scaler is None:
            grad_ok = math.isfinite(float(grad_norm))
        if args.world_size > 1:  # one verdict for all: a process stopping alone would hang the others
            flags = torch.tensor([float(loss_ok), float(grad_ok)], device=args.device)
            torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MIN)
            loss_ok, grad_ok = bool(flags[0]), bool(flags[1])
        if loss_ok and grad_ok:
            self.consecutive_skips = 0
            return
        problem = "loss" if not loss_ok else f"gradient norm ({float(grad_norm)})"
        step = state.global_step + 1
        if getattr(args, "nan_policy", "stop") == "skip" and self.consecutive_skips + 1 < MAX_CONSECUTIVE_SKIPS:
            self._skip(model, step, problem)
            return
        raise NonFiniteTrainingError(self._message(args, step, problem))

    def _skip(self, model, step: int, problem: str) -> None:
        """Drop this step's update: optimizers skip parameters without a gradient (no momentum, no decay)."""
        model.zero_grad(set_to_none=True)
        self.trainer._last_outputs = None  # the skipped batch's embeddings are not finite: no monitors from them
        self.skipped_steps += 1
        self.consecutive_skips += 1
        self.skipped_this_step = True
        logger.warning("--nan_policy skip: step %d has a non-finite %s; its update was skipped.", step, problem)

    def _message(self, args, step: int, problem: str) -> str:
        repeated = (
            f" after {self.consecutive_skips} skipped steps in a row (--nan_policy skip stops at {MAX_CONSECUTIVE_SKIPS})"
            if self.consecutive_skips
            else ""
        )
        precision = " Under --fp16, try --bf16 or full precision." if args.fp16 else ""
        clipping = args.max_grad_norm > 0
        causes = [f"a learning rate too high for this model (--learning_rate {args.learning_rate})"]
        causes += [] if clipping else [f"no gradient clipping (--max_grad_norm {args.max_grad_norm})"]
        causes += ["a method setting that divides by ~0 (a temperature or an epsilon in --config_overrides)"]
        fixes = ["lower --learning_rate"] + ([] if clipping else ["set --max_grad_norm 1.0"])
        fixes += ["--nan_policy skip to drop such steps"]
        return (
            f"Training stopped at step {step}: the {problem} is not finite{repeated}. Likely causes: "
            f"{'; '.join(causes)}.{precision} Fixes: {', '.join(fixes)}. {_last_good_checkpoint(args.output_dir)} "
            "No final model was written."
        )


# ---- before writing weights -------------------------------------------------------------------
def require_finite_weights(model: nn.Module, where: str, accelerator=None) -> None:
    """Raise before ``where`` is written when any floating-point weight or buffer of ``model`` is not finite.

    Sharded weights (FSDP's DTensors) are checked shard by shard; given the ``accelerator`` of a
    multi-process run, the verdict is all-reduced so that all processes refuse together (then every
    process must call it, as they do in the trainer's checkpoint saves and in the backbone export)."""
    tensors = [(name, t) for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_floating_point()]
    finite = [torch.isfinite(_local(t.detach())).all() for _, t in tensors]
    flags = torch.stack(finite).cpu().tolist() if finite else []  # one host sync for all tensors
    bad = [name for (name, _), ok in zip(tensors, flags) if not ok]
    count = len(bad)
    if accelerator is not None and accelerator.num_processes > 1:
        total = torch.tensor([count], device=accelerator.device)
        torch.distributed.all_reduce(total, op=torch.distributed.ReduceOp.MAX)
        count = int(total)
    if count:
        listed = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise NonFiniteTrainingError(
            f"Refusing to write {where}: {count} weight tensors hold NaN or infinite values "
            f"({listed or 'on another process'}). The run diverged: start a new run with a lower --learning_rate "
            "(or --max_grad_norm 1.0) from an earlier checkpoint's weights or from scratch."
        )


def _local(tensor: torch.Tensor) -> torch.Tensor:
    """This process's shard of a DTensor (FSDP2), else the tensor itself."""
    return tensor.to_local() if hasattr(tensor, "to_local") else tensor
