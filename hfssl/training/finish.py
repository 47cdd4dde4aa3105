"""What every recipe does around training, once: train (resuming when asked) and save the state,
export the backbone, draw the pictures, write the model card, save (and push) the model.

The order matters: the backbone is exported before any final evaluation, so a failing evaluation
cannot cost it; the pictures are drawn before the card, which embeds them; the model is saved last,
so that a ``--push_to_hub`` upload (which ``save_model`` triggers) carries the metrics, the
``backbone/`` folder, the pictures and hfssl's card.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from transformers import Trainer, TrainingArguments

from .arguments import resumed_checkpoint
from .guards import require_finite_weights
from .plots import plot_embedding_map, plot_training_curves

TRAINING_CURVES = "training_curves.png"
EMBEDDING_MAP = "embedding_map.png"


def train_and_save_state(trainer: Trainer, training_args: TrainingArguments):
    """``trainer.train`` (from ``--resume_from_checkpoint``: a path, or true for the last checkpoint),
    then the train metrics and the trainer state saved in ``--output_dir``. Returns the train output."""
    train_result = trainer.train(resume_from_checkpoint=resumed_checkpoint(training_args))
    trainer.log_metrics("train", train_result.metrics)
    trainer.save_metrics("train", train_result.metrics)
    trainer.save_state()
    return train_result


def export_backbone(trainer: Trainer, model, processing_class=None) -> str:
    """``model.export_backbone`` into ``<output_dir>/<model.export_folder>`` (``backbone`` unless the model says
    otherwise: CLIP writes its whole ``dual_encoder``), by the main process, with its tokenizer, image processor or
    processor beside it. Call it on every process: under FSDP the full weights are gathered from all of them first.
    Returns the folder."""
    require_finite_weights(model, "the backbone", trainer.accelerator)
    directory = os.path.join(trainer.args.output_dir, getattr(model, "export_folder", "backbone"))
    state_dict = None
    if getattr(trainer, "is_fsdp_enabled", False):
        full = trainer.accelerator.get_state_dict(trainer.model)  # a collective; the full dict on process 0
        exported = getattr(model, "exported_backbone_name", "backbone")  # "": the whole model (CLIP)
        prefix = exported + "." if exported else ""
        state_dict = {name[len(prefix) :]: value for name, value in full.items() if name.startswith(prefix)}
    if trainer.is_world_process_zero():
        model.export_backbone(directory, processing_class, state_dict=state_dict)
    return directory


def draw_pictures(trainer: Trainer, eval_features=None, eval_labels=None, class_names: Sequence[str] | None = None):
    """``training_curves.png`` from the log history and, given eval features (N, D) with labels (N,),
    ``embedding_map.png`` (main process only). Returns the files written."""
    if not trainer.is_world_process_zero():
        return []
    output_dir = trainer.args.output_dir
    written = [plot_training_curves(trainer.state.log_history, os.path.join(output_dir, TRAINING_CURVES))]
    if eval_features is not None and eval_labels is not None and len(eval_labels) > 1:
        written.append(
            plot_embedding_map(eval_features, eval_labels, os.path.join(output_dir, EMBEDDING_MAP), class_names)
        )
    return [path for path in written if path is not None]


def finish_run(
    trainer: Trainer,
    write_card: Callable[[bool], str],
    eval_features=None,
    eval_labels=None,
    class_names: Sequence[str] | None = None,
) -> None:
    """Pictures (a reconstruction method's ``reconstructions.png`` of the final model too), then the card
    (``write_card(write)`` returns its text and writes it when ``write``, on the main process), then
    ``save_model`` (which pushes with ``--push_to_hub``)."""
    if hasattr(trainer, "draw_reconstructions"):
        trainer.draw_reconstructions()
    draw_pictures(trainer, eval_features, eval_labels, class_names)
    trainer.model_card_text = write_card(trainer.is_world_process_zero())
    trainer.save_model()
