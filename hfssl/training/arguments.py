"""Training arguments shared by every SSL recipe: transformers' ``TrainingArguments`` plus SSL options."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field

from transformers import HfArgumentParser, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

from .argument_checks import check_ssl_training_arguments
from .guards import RunGuardArguments

logger = logging.getLogger(__name__)


@dataclass
class PretrainingArguments(RunGuardArguments, TrainingArguments):
    """``TrainingArguments`` with the run guards (``--nan_policy``, ``--overwrite_output_dir``:
    :mod:`hfssl.training.guards`), checked when parsed; every pretraining recipe's arguments are one."""

    def __post_init__(self):
        super().__post_init__()
        refuse_unconnected_processes(self)
        self.check_run_guards()


@dataclass
class SSLTrainingArguments(PretrainingArguments):
    """``PretrainingArguments`` with defaults suited to label-free image training, and kNN/LARS options."""

    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Kept False: SSL batches carry images the model's forward does not name."}
    )
    dataloader_drop_last: bool = field(
        default=True,
        metadata={"help": "Drop the last incomplete batch (BatchNorm heads and equal per-process batches need it)."},
    )
    per_device_train_batch_size: int = field(
        default=256,
        metadata={"help": "Images per process and step; contrastive methods want large batches (negatives)."},
    )
    logging_steps: float = field(
        default=0.02,
        metadata={
            "help": "Log (loss, learning rate, collapse monitors) every N steps, or every share of the run when below 1: "
            "0.02 gives 50 points for training_curves.png."
        },
    )
    learning_rate: float = field(
        default=1e-3, metadata={"help": "Peak learning rate (AdamW by default; with --use_lars, LARS's)."}
    )
    knn_k: int = field(
        default=200, metadata={"help": "Neighbours of the weighted kNN evaluation (InstDisc protocol: 200)."}
    )
    knn_temperature: float = field(
        default=0.1, metadata={"help": "Temperature of the kNN vote weights exp(sim / T) (InstDisc: 0.1)."}
    )
    use_lars: bool = field(
        default=False, metadata={"help": "Use LARS (SGD + momentum + trust ratio) instead of --optim."}
    )
    lars_eta: float = field(default=0.001, metadata={"help": "LARS trust coefficient."})
    lars_momentum: float = field(default=0.9, metadata={"help": "LARS momentum."})
    lars_exclude_lr_scale: float = field(
        default=1.0,
        metadata={
            "help": "With --use_lars, the learning rate of biases and norm parameters (no weight decay, no "
            "adaptation) as a multiple of --learning_rate: Barlow Twins uses 0.0048 beside 0.2, i.e. 0.024."
        },
    )
    channels_last: bool = field(
        default=False,
        metadata={
            "help": "Run the model and views in channels-last memory format: faster convolutions (oneDNN, cuDNN); no effect on results beyond rounding."
        },
    )
    sync_batchnorm: bool = field(
        default=False,
        metadata={
            "help": "BatchNorm statistics over all processes (SimCLR's global BN); GPUs only, as torch's SyncBatchNorm."
        },
    )

    def __post_init__(self):
        super().__post_init__()
        check_ssl_training_arguments(self)
        if self.use_lars:
            warn_about_lars_settings(self)


def warn_about_lars_settings(args: SSLTrainingArguments) -> None:
    """LARS scales each layer's step to ``lars_eta * ||w|| / ||g + wd * w||`` times the learning rate,
    so it wants SimCLR-scale learning rates (Chen et al. 2020: 0.3 x batch / 256, e.g. 4.8 at 4096);
    an AdamW-scale rate barely moves the weights. Warns when the rate is over 10x below that; changes nothing."""
    global_batch = args.per_device_train_batch_size * args.world_size * args.gradient_accumulation_steps
    simclr_rate = 0.3 * global_batch / 256
    if args.learning_rate < simclr_rate / 10:
        logger.warning(
            "--use_lars with --learning_rate %g: LARS takes SimCLR-scale rates (0.3 x global batch / 256: %.3g for a global "
            "batch of %d); this one, over 10x smaller, barely moves the weights.",
            args.learning_rate, simclr_rate, global_batch,
        )  # fmt: skip


def refuse_unconnected_processes(args: TrainingArguments) -> None:
    """Raise when several processes were launched but each would train alone (no GPU, no ``--use_cpu``)."""
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and args.world_size == 1:
        raise ValueError(
            f"{launched} processes were launched but training would run unparallelised in each of them "
            "(accelerate found no GPU). On a machine without GPUs pass --use_cpu to train over gloo."
        )


def parse_recipe_arguments(dataclass_types: tuple, argv: list[str] | None = None) -> tuple:
    """Parse a recipe's argument dataclasses from ``argv`` (the command line when None), or from
    a JSON file when the command line is a single ``*.json`` path, as transformers' examples do."""
    parser = HfArgumentParser(dataclass_types)
    if argv is None and len(sys.argv) == 2 and sys.argv[1].endswith(".json"):
        return parser.parse_json_file(os.path.abspath(sys.argv[1]))
    return parser.parse_args_into_dataclasses(args=argv)


def resumed_checkpoint(training_args: TrainingArguments) -> str | None:
    """The checkpoint directory ``--resume_from_checkpoint`` names (a path, or true: the last one in ``--output_dir``)."""
    checkpoint = training_args.resume_from_checkpoint
    if checkpoint is None or str(checkpoint).lower() in ("false", ""):
        return None
    if str(checkpoint).lower() == "true":
        last = get_last_checkpoint(training_args.output_dir)
        if last is None:
            raise ValueError(
                f"--resume_from_checkpoint true, but {training_args.output_dir} holds no checkpoint-* folder."
            )
        return last
    return checkpoint
