"""Schedules of the optimizer step and the momentum (EMA) update of a teacher, as plain functions.

Methods with a teacher or a schedule (BYOL, MoCo, DINO: momentum 0.996 -> 1; DINO: teacher
temperature and weight decay) implement the optional step hooks that
:class:`hfssl.training.StepHooks` calls with a :class:`TrainingProgress`:

* ``on_train_start(progress)``: once when training starts or resumes, so a resumed run starts with
  the value the uninterrupted run had at that step;
* ``before_optimizer_step(progress)``: after the gradients of a step are complete (and clipped),
  before the optimizer uses them: e.g. drop the gradients of a layer frozen for the first epoch;
* ``after_optimizer_step(progress)``: after each optimizer step: EMA teacher updates, queues,
  centres, and schedules set for the next step;
* ``after_skipped_step(progress)``: instead of it, after a step whose update was dropped (a non-finite
  loss under ``--nan_policy skip``, or the mixed-precision scaler): discard what its forwards accumulated;
* ``weight_decay_at(progress) -> float``: the weight decay of the step about to be taken (DINO's
  cosine 0.04 -> 0.4); StepHooks writes it into the optimizer's groups of decayed parameters (not
  biases, norms, tokens) before each optimizer step, in place of ``--weight_decay``.

Only optimizer steps trigger them: with gradient accumulation, a step is one update, not a micro-batch.
The values are functions of the step alone, so resuming and accumulation reproduce the run.
"""

from __future__ import annotations

import copy
import math
from typing import NamedTuple

import torch
from torch import nn


class TrainingProgress(NamedTuple):
    """Where training stands: ``step`` optimizer steps completed out of ``total_steps``;
    ``steps_per_epoch``: optimizer steps in one pass over the training set (None when unknown, e.g. a
    streamed data set), for schedules the papers give in epochs (DINO's frozen last layer)."""

    step: int
    total_steps: int
    steps_per_epoch: int | None = None

    def epochs_to_steps(self, epochs: float) -> int:
        """``epochs`` in optimizer steps (rounded), or in shares of the run when the epoch length is
        unknown (``epochs`` / 100 of ``total_steps``: the papers' runs are 100 epochs or more)."""
        if self.steps_per_epoch:
            return round(epochs * self.steps_per_epoch)
        return round(epochs / 100 * self.total_steps)

    @property
    def fraction(self) -> float:
        """``step / total_steps`` in [0, 1] (1 when there are no steps)."""
        return min(self.step / self.total_steps, 1.0) if self.total_steps > 0 else 1.0


def cosine_schedule(step: int, total_steps: int, start: float, end: float) -> float:
    """Cosine interpolation from ``start`` at step 0 to ``end`` at ``total_steps`` (held after it).

    ``end - (end - start) * (cos(pi * step / total_steps) + 1) / 2``: BYOL's target momentum
    (Grill et al. 2020, sec. 3.2: ``1 - (1 - tau_base) (cos(pi k / K) + 1) / 2``), DINO's momentum and
    weight-decay schedules (Caron et al. 2021, appendix).
    """
    if total_steps < 0 or step < 0:
        raise ValueError(
            f"cosine_schedule needs step >= 0 and total_steps >= 0, got step={step}, total={total_steps}."
        )
    if total_steps == 0 or step >= total_steps:
        return float(end)
    return end - (end - start) * (math.cos(math.pi * step / total_steps) + 1) / 2


def linear_warmup(step: int, warmup_steps: int, start: float, end: float) -> float:
    """Linear interpolation from ``start`` at step 0 to ``end`` at ``warmup_steps``, then ``end``
    (DINO's teacher temperature warm-up, 0.04 -> 0.07 over the first 30 epochs)."""
    if warmup_steps <= 0 or step >= warmup_steps:
        return float(end)
    return start + (end - start) * step / warmup_steps


def teacher_copy(student: nn.Module) -> nn.Module:
    """A teacher for ``student``: a deep copy with ``requires_grad=False``, so it starts equal to the
    student and only :func:`update_momentum` changes it (never re-initialised; a teacher initialised
    afresh is a known peer bug). Make it after the student's initialisation (``post_init``)."""
    teacher = copy.deepcopy(student)
    teacher.requires_grad_(False)
    return teacher


@torch.no_grad()
def reset_teacher(student: nn.Module, teacher: nn.Module) -> None:
    """Make ``teacher`` equal to ``student`` again, parameters and buffers, in place: what a method with a
    teacher does when training starts from step 0, so that weights loaded into the student after the
    model was built (a pretrained backbone given to the recipe) reach the teacher too."""
    update_momentum(student, teacher, 0.0)
    for teacher_buffer, student_buffer in zip(teacher.buffers(), student.buffers()):
        teacher_buffer.copy_(student_buffer)


@torch.no_grad()
def update_momentum(student: nn.Module, teacher: nn.Module, momentum: float) -> None:
    """EMA update of ``teacher`` towards ``student``: ``t <- m * t + (1 - m) * s``, in place.

    The momentum encoder of MoCo (He et al. 2020, eq. 2), BYOL's target network (Grill et al. 2020)
    and DINO's teacher (Caron et al. 2021). Parameters are matched by name, so ``teacher`` must be
    a copy of ``student`` (``copy.deepcopy``). Buffers (BatchNorm running statistics) are left alone,
    as in MoCo's and DINO's code: the teacher's own forward passes update them.
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"update_momentum needs momentum in [0, 1], got {momentum}.")
    student_parameters = dict(student.named_parameters())
    teacher_parameters = dict(teacher.named_parameters())
    if student_parameters.keys() != teacher_parameters.keys():
        raise ValueError("update_momentum needs a teacher with the student's parameters (a deep copy of it).")
    for name, teacher_parameter in teacher_parameters.items():
        teacher_parameter.lerp_(student_parameters[name].detach(), 1.0 - momentum)
