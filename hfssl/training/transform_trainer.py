"""``TransformTrainer``: ``transformers.Trainer`` that draws each batch's randomness inside the
training step, by running the method's batch transform (:mod:`hfssl.transforms`) there, and the
eval transform in prediction steps. Every hfssl trainer is one (pretraining through
:class:`hfssl.training.SSLTrainer`); supervised fine-tuning uses it as it is.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from transformers import Trainer, TrainerCallback, set_seed

from ..transforms import keep_examples, seeds_per_process, takes_examples

_SAME_AS_TRAINING = object()


class SeedPerProcess(TrainerCallback):
    """At the start of training, seed process ``i`` with ``seed + i``: ``Trainer`` seeds every process
    alike, so collators drawing per example from the global RNG would repeat their draws across
    processes (process 0 keeps the one-process stream). A resumed run then restores each process's
    own saved RNG state."""

    def on_train_begin(self, args, state, control, **kwargs):
        set_seed(args.seed + args.process_index)


class TransformTrainer(Trainer):
    """``Trainer`` that turns each batch into the model's inputs with a batch transform.

    Args (beyond ``Trainer``'s):
        batch_transform: collated batch -> ``forward`` keyword arguments, run in every training step
            (on the device, or on the example list for ``takes_examples`` transforms); None: the
            batch is the input, as in ``Trainer``.
        eval_batch_transform: the same for prediction steps; by default ``batch_transform``, except
            for a ``takes_examples`` transform with an ``eval_data_collator``, which collates instead.
        eval_data_collator: the eval loader's collator, when it differs from the training one (e.g.
            a collator seeded once, so that every evaluation scores the same masked text; a fresh
            copy at each evaluation, so its draws repeat).
    """

    def __init__(
        self,
        *args,
        batch_transform: Callable | None = None,
        eval_batch_transform: Any = _SAME_AS_TRAINING,
        eval_data_collator: Callable | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.batch_transform = batch_transform
        if (
            eval_batch_transform is _SAME_AS_TRAINING
        ):  # an eval collator already collates what a collator-transform would
            collated = takes_examples(batch_transform) and eval_data_collator is not None
            eval_batch_transform = None if collated else batch_transform
        self.eval_batch_transform = eval_batch_transform
        self.eval_data_collator = eval_data_collator
        if seeds_per_process(batch_transform):
            self.add_callback(SeedPerProcess())

    # ---- the batch transform ------------------------------------------------------------------
    def transform_batch(self, inputs, transform: Callable | None) -> dict:
        """``transform(inputs)`` on the device (after moving ``inputs`` there) or, for a
        ``takes_examples`` transform, on the example list; channels-last views with ``--channels_last``."""
        if transform is None:
            return inputs
        if takes_examples(transform):
            return transform(inputs)  # Trainer moves the collated tensors to the device
        outputs = transform(self._prepare_inputs(inputs))
        if getattr(self.args, "channels_last", False):
            outputs = {name: _channels_last(value) for name, value in outputs.items()}
        return outputs

    def training_step(self, model, inputs, num_items_in_batch=None):
        return super().training_step(model, self.transform_batch(inputs, self.batch_transform), num_items_in_batch)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self.transform_batch(inputs, self.eval_batch_transform)
        return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)

    def floating_point_ops(self, inputs) -> int:
        return 0 if isinstance(inputs, list) else super().floating_point_ops(inputs)

    # ---- data loaders ---------------------------------------------------------------------------
    def get_train_dataloader(self):
        if not takes_examples(self.batch_transform):
            return super().get_train_dataloader()
        config = self.accelerator.dataloader_config
        dispatch = config.dispatch_batches
        if isinstance(self.train_dataset, torch.utils.data.IterableDataset):
            if dispatch:
                raise ValueError(
                    "accelerator_config.dispatch_batches=True cannot carry a streamed training set here: its batches "
                    "are uncollated example lists (the batch transform collates them in the training step), and "
                    "dispatching needs tensors. Leave dispatch_batches unset, or drop --streaming."
                )
            # accelerate dispatches batches of iterable datasets by default, which needs tensors; instead every
            # process reads the stream and keeps its own share of it.
            config.dispatch_batches = False
        collator, self.data_collator = self.data_collator, keep_examples
        try:
            return super().get_train_dataloader()
        finally:
            self.data_collator = collator
            config.dispatch_batches = dispatch

    def get_eval_dataloader(self, eval_dataset=None):
        if self.eval_data_collator is not None:
            collator = copy.deepcopy(self.eval_data_collator)
        elif takes_examples(self.eval_batch_transform):
            collator = keep_examples
        else:
            return super().get_eval_dataloader(eval_dataset)
        train_collator, self.data_collator = self.data_collator, collator
        try:
            return super().get_eval_dataloader(eval_dataset)
        finally:
            self.data_collator = train_collator


def _channels_last(value):
    if isinstance(value, torch.Tensor) and value.dim() == 4 and value.is_floating_point():
        return value.contiguous(memory_format=torch.channels_last)
    if isinstance(value, (list, tuple)):
        return type(value)(_channels_last(item) for item in value)
    return value
