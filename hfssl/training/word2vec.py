"""Training word2vec through ``transformers.Trainer``: word2vec's SGD, its learning-rate decay,
and word-vector benchmarks as the evaluation.

word2vec takes a plain SGD step of size ``alpha`` per (context, center) pair, one pair after the
other, with ``alpha`` decaying linearly to ``min_alpha`` over training (word2vec.c, gensim). Here
the model's loss is the sum over the batch's pairs and ``torch.optim.SGD`` takes the step with
``lr=alpha``; the trainer hands the current ``alpha`` to the model (``sgd_step_size``), whose fused
loss evaluates each chunk of pairs after the updates of the chunks before it, so that one
optimizer step applies the batch's updates in sequence as word2vec does. (Summing a large batch's
updates at the same weights diverges: a frequent word collects hundreds of them.) With several
processes the loss is multiplied by the world size, because DDP averages gradients where
word2vec adds them; each process sees its own updates within a step, as gensim's threads do.
Logged ``loss`` is the mean per pair.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..evaluation.word_vectors import model_word_vector_metrics
from ..models.word2vec import Word2VecTrainingRows
from .arguments import PretrainingArguments
from .trainer import SSLTrainer


@dataclass
class Word2VecTrainingArguments(PretrainingArguments):
    """``TrainingArguments`` with word2vec's defaults (gensim's: alpha 0.025 -> min_alpha 1e-4, 5 epochs)."""

    learning_rate: float = field(
        default=0.025, metadata={"help": "alpha: the SGD step per pair at the start (word2vec: 0.025)."}
    )
    min_alpha: float = field(
        default=1e-4, metadata={"help": "The learning rate decays linearly to this value over training."}
    )
    num_train_epochs: float = field(default=5.0, metadata={"help": "Passes over the corpus."})
    per_device_train_batch_size: int = field(
        default=1024,
        metadata={"help": "Sentences per process and step (each gives its pairs; larger batches run faster)."},
    )
    max_grad_norm: float = field(default=0.0, metadata={"help": "Kept 0: word2vec's steps are not clipped."})
    weight_decay: float = field(default=0.0, metadata={"help": "Kept 0: word2vec has no weight decay."})
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Kept False: batches are made by the word2vec collator."}
    )
    sparse_gradients: bool = field(
        default=False,
        metadata={"help": "Sparse embedding gradients (with loss_implementation=autograd only; see BENCHMARKS.md)."},
    )

    def __post_init__(self):
        super().__post_init__()
        if self.gradient_accumulation_steps != 1:
            raise ValueError(
                "word2vec's loss is a sum over pairs, so gradient accumulation only makes a larger batch: "
                "raise --per_device_train_batch_size instead of --gradient_accumulation_steps."
            )
        if not 0 <= self.min_alpha <= self.learning_rate:
            raise ValueError(
                f"--min_alpha must be in [0, --learning_rate={self.learning_rate}], got {self.min_alpha}."
            )


class Word2VecTrainer(SSLTrainer):
    """:class:`~hfssl.training.SSLTrainer` with word2vec's SGD and learning-rate decay; the batch transform
    (subsampling and windows, :class:`~hfssl.models.word2vec.Word2VecTrainingRows`) turns packed sentences
    into training rows. Evaluation reports word-similarity and analogy scores (``eval_wordsim353_spearman``,
    ...) and, given an ``eval_dataset`` of sentences, the held-out loss per pair."""

    def __init__(self, *args, **kwargs):
        # Evaluation needs no eval dataset (the benchmarks ship with gensim); an empty dict gets past
        # Trainer's check that one was given when --eval_strategy is set.
        if kwargs.get("eval_dataset") is None:
            kwargs["eval_dataset"] = {}
        if kwargs.get("batch_transform") is None:
            kwargs["batch_transform"] = Word2VecTrainingRows(kwargs["model"] if "model" in kwargs else args[0])
        super().__init__(*args, **kwargs)
        self.model.set_sparse_gradients(self.args.sparse_gradients)
        if self.args.sparse_gradients and self.model.config.loss_implementation != "autograd":
            raise ValueError(
                "--sparse_gradients needs loss_implementation='autograd' (the fused loss gives dense gradients)."
            )
        self._last_num_pairs = torch.tensor(1)

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            model = self.model if model is None else model
            self.optimizer = torch.optim.SGD(
                [p for p in model.parameters() if p.requires_grad], lr=self.args.learning_rate
            )
        return self.optimizer

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        """alpha decays linearly to min_alpha at the last step (gensim decays by words processed)."""
        if self.lr_scheduler is None:
            floor = self.args.min_alpha / self.args.learning_rate if self.args.learning_rate > 0 else 0.0
            decay = lambda step: 1.0 - (1.0 - floor) * min(step / max(num_training_steps, 1), 1.0)  # noqa: E731
            self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
                self.optimizer if optimizer is None else optimizer, decay
            )
            self._created_lr_scheduler = True
        return self.lr_scheduler

    def _get_grad_norm(self, model, grad_norm=None):
        """Trainer computes the gradient norm at every step for its logs even when nothing is clipped;
        word2vec never clips (max_grad_norm 0), and over two dense (V, D) gradients the norm costs
        more than the SGD step, so it is skipped (nothing logged)."""
        if self.args.max_grad_norm <= 0:
            return grad_norm
        return super()._get_grad_norm(model, grad_norm)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The loss of the model on the training rows, with the current SGD step size."""
        step_size = self.optimizer.param_groups[0]["lr"] if model.training and self.optimizer is not None else 0.0
        outputs = model(**inputs, sgd_step_size=step_size)
        self._last_num_pairs = outputs.num_pairs.detach()
        loss = outputs.loss * self.args.world_size  # DDP averages gradients; word2vec adds them
        return (loss, outputs) if return_outputs else loss

    def training_step(self, model, inputs, num_items_in_batch=None):
        """Backward of the summed loss; returns the mean loss per pair for the logs."""
        loss = super().training_step(model, inputs, num_items_in_batch)
        return loss / (self._last_num_pairs * self.args.world_size).clamp_min(1)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(self.transform_batch(inputs, self.eval_batch_transform))
        with torch.no_grad():
            _, outputs = self.compute_loss(model, inputs, return_outputs=True)
        return (outputs.loss / outputs.num_pairs.clamp_min(1)).detach(), None, None

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        """Word-vector benchmarks of the current input vectors (plus held-out loss when sentences are given)."""
        metrics: dict[str, float] = {}
        dataset = self.eval_dataset if eval_dataset is None else eval_dataset
        if dataset is not None and not (isinstance(dataset, dict) and not dataset):
            loop = self.evaluation_loop(
                self.get_eval_dataloader(dataset),
                "Evaluation",
                prediction_loss_only=True,
                metric_key_prefix=metric_key_prefix,
            )
            metrics.update(loop.metrics)
        model = self.accelerator.unwrap_model(self.model)
        metrics.update(
            {f"{metric_key_prefix}_{name}": value for name, value in model_word_vector_metrics(model).items()}
        )
        metrics["epoch"] = self.state.epoch
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics
