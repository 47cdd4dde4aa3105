"""The trainer of every hfssl method: ``transformers.Trainer`` plus the method contract.

:class:`~hfssl.training.transform_trainer.TransformTrainer` is the one place where a batch's
randomness is drawn (the method's batch transform, inside the training step); :class:`SSLTrainer`
adds what pretraining needs, for every method and modality:

* the run guards (:mod:`hfssl.training.guards`): a run that cannot learn is refused before its
  first step, a non-finite loss or gradient stops it (or is skipped, ``--nan_policy skip``), and
  non-finite weights are never written;
* the step hooks of the model (:class:`StepHooks`: EMA teachers, schedules, frozen layers);
* optimizer groups without weight decay on biases, norms, tokens and position embeddings, and
  ``--use_lars``;
* collapse monitors of the last training batch's embeddings in each training log, and a warning
  (once per run) when they collapse;
* with a labelled ``knn_train_dataset`` and eval split, weighted-kNN accuracy at each evaluation
  (image methods);
* hfssl's model card.

A method never subclasses the trainer; word2vec, whose SGD and evaluation are its own, is the one
modality that does (:class:`hfssl.training.Word2VecTrainer`). Everything the Trainer does itself
(schedules, gradient accumulation, checkpoints with RNG states, resume, logging, Hub pushes) is
left to it.
"""

from __future__ import annotations

import itertools
import logging
import os

import torch
from torch import nn
from torch.utils.data import DataLoader
from transformers import PreTrainedModel, Trainer, TrainerCallback
from transformers.modeling_utils import unwrap_model
from transformers.trainer_utils import get_last_checkpoint
from transformers.utils import SAFE_WEIGHTS_NAME

from ..augment import EvalTransform
from ..evaluation.frozen import frozen_feature_metrics
from ..schedules import TrainingProgress
from .checkpoints import check_resume_checkpoint, load_checkpoint_weights
from .guards import (
    NonFiniteGuard,
    check_run_can_learn,
    refuse_run_without_steps,
    remove_previous_run,
    require_finite_weights,
)
from .model_card import HfsslModelCardMixin
from .monitors import collapse_warning, effective_rank, embedding_std
from .optim import LARS, decay_parameter_names
from .plots import plot_image_panels
from .transform_trainer import TransformTrainer

logger = logging.getLogger(__name__)

MONITORED_OUTPUTS = ("embeddings", "features", "pretext_accuracy")


FEATURE_METHODS = ("get_image_features", "get_text_features", "reconstruction_panels")
RECONSTRUCTIONS = "reconstructions.png"
PICTURE_IMAGES = 8  # held-out images in reconstructions.png


def register_feature_forwards(model: nn.Module) -> None:
    """Under FSDP2, make the feature methods (kNN, probes) gather the sharded weights as ``forward`` does."""
    from torch.distributed.fsdp import FSDPModule, register_fsdp_forward_method

    if isinstance(model, FSDPModule):
        for name in FEATURE_METHODS:
            if hasattr(model, name):
                register_fsdp_forward_method(model, name)


class StepHooks(TrainerCallback):
    """Calls the model's optional step hooks (see :mod:`hfssl.schedules`) with the training progress:
    ``on_train_start`` once when training starts or resumes, ``before_optimizer_step`` when a step's
    gradients are complete (clipped), ``after_optimizer_step`` after each optimizer step that was
    taken (not after accumulation micro-steps, nor after a step the mixed-precision scaler skipped),
    and ``after_skipped_step`` instead after a step that was not (``--nan_policy skip`` or the scaler):
    the place to drop what the step's forwards accumulated (DINO's pending centre sums).
    ``progress.step`` counts the optimizer steps completed so far.

    Weight-decay schedules (DINO's 0.04 -> 0.4): a model that defines ``weight_decay_at(progress) -> float``
    gets that value written into the ``weight_decay`` of the optimizer's groups of decayed parameters (those
    whose every parameter is in ``trainer.get_decay_parameter_names``: the weight matrices, not biases,
    norms, tokens or position embeddings) before each optimizer step, in place of ``--weight_decay``.
    Models without it are untouched."""

    def __init__(self, trainer: Trainer):
        self.trainer = trainer
        self.steps_per_epoch = None
        self.decayed_groups: list[int] = []  # indices of the optimizer groups a weight-decay schedule sets

    def _call(self, hook: str, model, step: int, total_steps: int) -> None:
        method = getattr(unwrap_model(model), hook, None)
        if method is not None:
            method(TrainingProgress(step, total_steps, self.steps_per_epoch))

    def on_train_begin(self, args, state, control, model=None, train_dataloader=None, **kwargs):
        register_feature_forwards(model)
        try:  # as Trainer counts an epoch's updates; a streamed data set has no length
            self.steps_per_epoch = max(len(train_dataloader) // args.gradient_accumulation_steps, 1)
        except TypeError:
            self.steps_per_epoch = None
        self.decayed_groups = self._decayed_groups(model)
        synchronize = getattr(unwrap_model(model), "synchronize_replicated_buffers", None)
        if synchronize is not None:
            synchronize()
        self._call("on_train_start", model, state.global_step, state.max_steps)

    def _decayed_groups(self, model) -> list[int]:
        """The optimizer groups that hold decayed parameters only, for a model with ``weight_decay_at``."""
        model = unwrap_model(model)
        if getattr(model, "weight_decay_at", None) is None or self.trainer.optimizer is None:
            return []
        names = set(self.trainer.get_decay_parameter_names(model))
        decayed = {id(parameter) for name, parameter in model.named_parameters() if name in names}
        groups = [
            index
            for index, group in enumerate(self.trainer.optimizer.param_groups)
            if group["params"] and all(id(parameter) in decayed for parameter in group["params"])
        ]
        if not groups:
            logger.warning(
                "%s schedules its weight decay, but no optimizer group holds decayed parameters only: the schedule "
                "is not applied.",
                type(model).__name__,
            )
        return groups

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if not self.trainer.nonfinite_guard.skipped_this_step:  # the guard runs first and may drop the step
            schedule = getattr(unwrap_model(model), "weight_decay_at", None)
            if schedule is not None:
                weight_decay = schedule(TrainingProgress(state.global_step, state.max_steps, self.steps_per_epoch))
                for index in self.decayed_groups:
                    self.trainer.optimizer.param_groups[index]["weight_decay"] = weight_decay
            self._call("before_optimizer_step", model, state.global_step, state.max_steps)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        skipped = self.trainer.accelerator.optimizer_step_was_skipped or self.trainer.nonfinite_guard.skipped_this_step
        hook = "after_skipped_step" if skipped else "after_optimizer_step"
        self._call(hook, model, state.global_step, state.max_steps)


class SSLTrainer(HfsslModelCardMixin, TransformTrainer):
    """
    Args (beyond :class:`TransformTrainer`'s):
        feature_transform: uint8 (B, C, H, W) -> normalised float images, for the kNN features of
            image methods (:class:`hfssl.augment.EvalTransform`).
        knn_train_dataset: labelled dataset whose features form the kNN memory bank; with a
            labelled ``eval_dataset`` it turns on ``eval_knn_accuracy``.

    Without ``compute_metrics``, evaluation reports the loss alone (model outputs are not collected).
    """

    def __init__(self, *args, feature_transform: nn.Module | None = None, knn_train_dataset=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.feature_transform = feature_transform
        self.knn_train_dataset = knn_train_dataset
        self._last_outputs = None
        self._collapse_warned = False
        self._feature_dataloaders = {}  # id(dataset) -> (dataset, prepared loader), see feature_dataloader
        self.nonfinite_guard = NonFiniteGuard(self)
        self.add_callback(self.nonfinite_guard)  # before the step hooks: a skipped step must not reach them
        self.add_callback(StepHooks(self))
        if self.model_init is None:  # with model_init, Trainer built the model through call_model_init
            self.model = self._convert_model(self.model)

    def _convert_model(self, model: nn.Module) -> nn.Module:
        """Apply --sync_batchnorm and --channels_last to a freshly built model."""
        if getattr(self.args, "sync_batchnorm", False) and self.args.world_size > 1:
            if self.args.device.type == "cpu":
                raise ValueError("--sync_batchnorm needs GPUs: torch's SyncBatchNorm does not run on the CPU.")
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        if getattr(self.args, "channels_last", False):
            model.to(memory_format=torch.channels_last)
        return model

    def call_model_init(self, trial=None):
        """Trainer rebuilds the model here when given ``model_init`` (e.g. hyperparameter search)."""
        return self._convert_model(super().call_model_init(trial))

    # ---- training and its guards ------------------------------------------------------------
    def train(self, resume_from_checkpoint=None, trial=None, ignore_keys_for_eval=None, **kwargs):
        """``Trainer.train`` between the guards: refused when the run cannot learn (or its checkpoint is
        unusable), and an error rather than a saved model when it took no step. With ``--nan_policy
        skip`` the train metrics count the skipped steps (``nonfinite_steps_skipped``)."""
        model = self.accelerator.unwrap_model(self.model)
        check_run_can_learn(self, model)
        remove_previous_run(self)  # --overwrite_output_dir, now that the new run can start
        checkpoint = (
            get_last_checkpoint(self.args.output_dir) if resume_from_checkpoint is True else resume_from_checkpoint
        )
        if checkpoint:
            check_resume_checkpoint(checkpoint, model)
        output = super().train(resume_from_checkpoint, trial, ignore_keys_for_eval, **kwargs)
        refuse_run_without_steps(self)
        if getattr(self.args, "nan_policy", "stop") == "skip":
            output.metrics["nonfinite_steps_skipped"] = self.nonfinite_guard.skipped_steps
        return output

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        self.nonfinite_guard.record_loss(loss)
        return loss

    def _get_grad_norm(self, model, grad_norm=None):
        grad_norm = super()._get_grad_norm(model, grad_norm)
        self.nonfinite_guard.record_grad_norm(grad_norm)
        return grad_norm

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        """Trainer's loading, except for an unsharded safetensors checkpoint of a ``PreTrainedModel``, whose keys are
        renamed as ``from_pretrained`` renames them and must all match (:func:`load_checkpoint_weights`)."""
        if not self._load_checkpoint_weights(resume_from_checkpoint, model):
            super()._load_from_checkpoint(resume_from_checkpoint, model)

    def _load_best_model(self) -> None:
        """``--load_best_model_at_end``: the best checkpoint's weights loaded as a resume loads them."""
        if not self._load_checkpoint_weights(self.state.best_model_checkpoint):
            super()._load_best_model()

    def _load_checkpoint_weights(self, checkpoint: str, model: nn.Module | None = None) -> bool:
        """:func:`load_checkpoint_weights` for an unsharded safetensors checkpoint of a ``PreTrainedModel`` without
        FSDP; False (nothing loaded) otherwise, for Trainer's own loading."""
        target = self.accelerator.unwrap_model(model if model is not None else self.model)
        weights = os.path.join(checkpoint, SAFE_WEIGHTS_NAME)
        if self.is_fsdp_enabled or not os.path.isfile(weights) or not isinstance(target, PreTrainedModel):
            return False
        load_checkpoint_weights(target, checkpoint)
        return True

    def _save_checkpoint(self, model, trial):
        where = f"checkpoint-{self.state.global_step}"
        require_finite_weights(self.accelerator.unwrap_model(self.model), where, self.accelerator)
        super()._save_checkpoint(model, trial)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        if not _internal_call:  # checkpoints were checked in _save_checkpoint
            require_finite_weights(self.accelerator.unwrap_model(self.model), "the final model")
        super().save_model(output_dir, _internal_call)

    # ---- loss -------------------------------------------------------------------------------
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        if model.training:  # detached: the monitors must not keep the step's graph alive
            self._last_outputs = {
                name: outputs[name].detach()
                for name in MONITORED_OUTPUTS
                if isinstance(outputs, dict) and outputs.get(name) is not None
            }
        return (loss, outputs) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        if self.compute_metrics is not None:
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
        inputs = self._prepare_inputs(self.transform_batch(inputs, self.eval_batch_transform))
        with torch.no_grad():
            loss = self.compute_loss(model, inputs).detach()
        return loss, None, None

    # ---- optimizer --------------------------------------------------------------------------
    def get_decay_parameter_names(self, model: nn.Module) -> list[str]:
        return decay_parameter_names(model)

    def create_optimizer(self, model=None):
        if self.optimizer is not None or not getattr(self.args, "use_lars", False):
            return super().create_optimizer(model)
        model = self.model if model is None else model
        decay = set(self.get_decay_parameter_names(model))
        trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
        groups = [
            {"params": [p for name, p in trainable if name in decay], "weight_decay": self.args.weight_decay},
            {
                "params": [p for name, p in trainable if name not in decay],
                "weight_decay": 0.0,
                "lars_exclude": True,
                "lr": self.args.learning_rate * self.args.lars_exclude_lr_scale,  # the schedule keeps the ratio
            },
        ]
        self.optimizer = LARS(
            groups, lr=self.args.learning_rate, momentum=self.args.lars_momentum, eta=self.args.lars_eta
        )
        return self.optimizer

    # ---- logging ----------------------------------------------------------------------------
    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add collapse monitors (and a pretext task's accuracy) of this process's last training batch to training logs."""
        if "loss" in logs and self._last_outputs:
            embeddings = self._last_outputs.get("embeddings")
            features = self._last_outputs.get("features")
            if embeddings is not None:
                logs["embedding_std"] = round(embedding_std(embeddings), 6)
                logs["embedding_rank"] = round(effective_rank(embeddings), 3)
                self._warn_once_if_collapsed(logs["embedding_std"], embeddings.shape[-1])
            if features is not None:
                logs["feature_rank"] = round(effective_rank(features), 3)
            if self._last_outputs.get("pretext_accuracy") is not None:  # a pretext task's labels, this batch
                logs["pretext_accuracy"] = round(self._last_outputs["pretext_accuracy"].item(), 4)
        super().log(logs, start_time)

    def _warn_once_if_collapsed(self, std: float, dim: int) -> None:
        if self._collapse_warned:
            return
        hint = getattr(self.accelerator.unwrap_model(self.model), "collapse_hint", None)
        message = collapse_warning(std, dim, self.state.global_step, hint)
        if message is not None:
            logger.warning(message)
            self._collapse_warned = True

    # ---- evaluation -------------------------------------------------------------------------
    def evaluation_loop(
        self, dataloader, description, prediction_loss_only=None, ignore_keys=None, metric_key_prefix="eval"
    ):
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        dataset = getattr(dataloader, "dataset", None)
        if self.knn_train_dataset is not None and "label" in getattr(dataset, "column_names", ()):
            output.metrics[f"{metric_key_prefix}_knn_accuracy"] = self.knn_accuracy(dataset)
        self.draw_reconstructions()
        return output

    @torch.no_grad()
    def draw_reconstructions(self) -> str | None:
        """For models with ``reconstruction_panels`` (MAE, the denoising autoencoder, colorization):
        ``reconstructions.png`` (or the model's ``picture_name``) in ``--output_dir``, the first :data:`PICTURE_IMAGES` images of the eval split (else of the training split)
        with a mask or corruption drawn from ``--seed``, so every evaluation shows the same inputs. Call it on every
        process (FSDP gathers the weights); the main process writes. Returns the path written, else None."""
        model = self.accelerator.unwrap_model(self.model)
        dataset = self.eval_dataset if self.eval_dataset is not None else self.train_dataset
        if isinstance(dataset, dict):  # several eval splits: the first
            dataset = next(iter(dataset.values()), None)
        if getattr(model, "reconstruction_panels", None) is None or self.feature_transform is None or dataset is None:
            return None
        rows = list(itertools.islice(iter(dataset), PICTURE_IMAGES))  # a streamed split's first rows too
        if not rows:
            return None
        pixels = self.data_collator(rows)["pixel_values"].to(self.args.device)
        # resized, channel-matched (colour for a model that predicts it from grey input), in [0, 1]
        channels = getattr(model, "picture_channels", self.feature_transform.num_channels)
        images = EvalTransform(self.feature_transform.image_size, channels).unit_images(pixels)
        normalization = self.feature_transform.normalize.to(images.device)
        was_training = model.training
        model.eval()
        generator = torch.Generator().manual_seed(self.args.seed)
        panels = model.reconstruction_panels(images, normalization, normalization.inverse, generator)
        model.train(was_training)
        if not self.is_world_process_zero():
            return None
        path = os.path.join(self.args.output_dir, getattr(model, "picture_name", RECONSTRUCTIONS))
        return plot_image_panels(panels, path, title=f"step {self.state.global_step}")

    def feature_dataloader(self, dataset) -> DataLoader:
        """An in-order loader over every row of ``dataset`` (never drops the last batch), sharded
        over processes, for feature extraction. Made once per dataset: ``accelerator.prepare``
        keeps every loader it prepares, so a new one at each evaluation would pile up."""
        cached = self._feature_dataloaders.get(id(dataset))
        if cached is not None and cached[0] is dataset:  # the same object, not another one at a reused id
            return cached[1]
        loader = DataLoader(
            dataset,
            batch_size=self.args.per_device_eval_batch_size,
            collate_fn=self.data_collator,
            num_workers=self.args.dataloader_num_workers,
            pin_memory=self.args.dataloader_pin_memory,
        )
        self._feature_dataloaders[id(dataset)] = (dataset, self.accelerator.prepare(loader))
        return self._feature_dataloaders[id(dataset)][1]

    @torch.no_grad()
    def knn_accuracy(self, eval_dataset) -> float:
        """Weighted kNN accuracy (``--knn_k``, ``--knn_temperature``) of the current backbone."""
        model = self.accelerator.unwrap_model(self.model)
        was_training = model.training
        model.eval()
        metrics = frozen_feature_metrics(
            model.get_image_features,
            self.feature_dataloader(self.knn_train_dataset),
            self.feature_dataloader(eval_dataset),
            self.feature_transform,
            self.accelerator,
            protocols=("knn",),
            knn_k=self.args.knn_k,
            knn_temperature=self.args.knn_temperature,
        )
        model.train(was_training)
        return metrics["knn_accuracy"]
