"""SSLTrainer: one ``transformers.Trainer`` for every vision SSL method.

What it adds to ``Trainer``:

* views are made on the device from the uint8 batch (``view_generator``), inside ``compute_loss``;
* optimizer groups exclude biases and norms from weight decay; ``--use_lars`` switches to LARS;
* each training log carries collapse monitors of the last batch's embeddings;
* each evaluation adds weighted-kNN accuracy on the labelled eval split, with a labelled train
  split as the memory bank.

Everything the Trainer does itself (schedules, gradient accumulation, checkpoints with RNG
states, resume, progress bars, Hub pushes) is left to it. Callbacks passed to the trainer run
after the optimizer step (``on_step_end``), so per-step schedules stay exact under gradient
accumulation and resume.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader
from transformers import Trainer

from ..evaluation.frozen import frozen_feature_metrics
from .model_card import HfsslModelCardMixin
from .monitors import effective_rank, embedding_std
from .optim import LARS, decay_parameter_names


class SSLTrainer(HfsslModelCardMixin, Trainer):
    """
    Args (beyond ``Trainer``'s):
        view_generator: uint8 (B, C, H, W) -> list of normalised float views, on the device.
        eval_transform: uint8 (B, C, H, W) -> normalised float images, for feature extraction.
        knn_train_dataset: labelled dataset whose features form the kNN memory bank; with a
            labelled ``eval_dataset`` it turns on ``eval_knn_accuracy``.
    """

    def __init__(self, *args, view_generator: nn.Module, eval_transform: nn.Module, knn_train_dataset=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.view_generator = view_generator
        self.eval_transform = eval_transform
        self.knn_train_dataset = knn_train_dataset
        self._last_outputs = None
        self._feature_dataloaders = {}  # id(dataset) -> (dataset, prepared loader), see feature_dataloader
        if self.model_init is None:  # with model_init, Trainer built the model through call_model_init
            self.model = self._convert_model(self.model)

    def _convert_model(self, model: nn.Module) -> nn.Module:
        """Apply --sync_batchnorm and --channels_last to a freshly built model."""
        if self.args.sync_batchnorm and self.args.world_size > 1:
            if self.args.device.type == "cpu":
                raise ValueError("--sync_batchnorm needs GPUs: torch's SyncBatchNorm does not run on the CPU.")
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        if self.args.channels_last:
            model.to(memory_format=torch.channels_last)
        return model

    def call_model_init(self, trial=None):
        """Trainer rebuilds the model here when given ``model_init`` (e.g. hyperparameter search)."""
        return self._convert_model(super().call_model_init(trial))

    # ---- loss -------------------------------------------------------------------------------
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        views = self.view_generator(inputs["pixel_values"])
        if self.args.channels_last:
            views = [view.contiguous(memory_format=torch.channels_last) for view in views]
        outputs = model(views=views)
        if model.training:  # detached: the monitors must not keep the step's graph alive
            self._last_outputs = {name: value.detach() for name, value in outputs.items() if name != "loss"}
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """Evaluation loss only: the embeddings of the eval set are not collected."""
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            loss = self.compute_loss(model, inputs).detach()
        return loss, None, None

    # ---- optimizer --------------------------------------------------------------------------
    def get_decay_parameter_names(self, model: nn.Module) -> list[str]:
        return decay_parameter_names(model)

    def create_optimizer(self, model=None):
        if self.optimizer is not None or not self.args.use_lars:
            return super().create_optimizer(model)
        model = self.model if model is None else model
        decay = set(self.get_decay_parameter_names(model))
        trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
        groups = [
            {"params": [p for name, p in trainable if name in decay], "weight_decay": self.args.weight_decay},
            {"params": [p for name, p in trainable if name not in decay], "weight_decay": 0.0, "lars_exclude": True},
        ]
        self.optimizer = LARS(
            groups, lr=self.args.learning_rate, momentum=self.args.lars_momentum, eta=self.args.lars_eta
        )
        return self.optimizer

    # ---- logging ----------------------------------------------------------------------------
    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add collapse monitors of this process's last training batch to training logs."""
        if "loss" in logs and self._last_outputs is not None:
            embeddings = self._last_outputs.get("embeddings")
            features = self._last_outputs.get("features")
            if embeddings is not None:
                logs["embedding_std"] = round(embedding_std(embeddings), 6)
                logs["embedding_rank"] = round(effective_rank(embeddings), 3)
            if features is not None:
                logs["feature_rank"] = round(effective_rank(features), 3)
        super().log(logs, start_time)

    # ---- evaluation -------------------------------------------------------------------------
    def evaluation_loop(
        self, dataloader, description, prediction_loss_only=None, ignore_keys=None, metric_key_prefix="eval"
    ):
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        if self.knn_train_dataset is not None and "label" in dataloader.dataset.column_names:
            output.metrics[f"{metric_key_prefix}_knn_accuracy"] = self.knn_accuracy(dataloader.dataset)
        return output

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
            self.eval_transform,
            self.accelerator,
            protocols=("knn",),
            knn_k=self.args.knn_k,
            knn_temperature=self.args.knn_temperature,
        )
        model.train(was_training)
        return metrics["knn_accuracy"]
