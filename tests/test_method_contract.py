"""The method contract: batch transforms drawn in the training step, step hooks, METHODS entries.

A toy method defined here (not in the package) has an EMA teacher on a cosine momentum schedule, a
layer frozen for its first steps, and a batch transform that draws noise: the trainer must call
its hooks once per optimizer step, at the right steps, and resume it exactly.
"""

import json
import math
from dataclasses import dataclass

import datasets
import pytest
import torch
from conftest import short_run_arguments, stop_after, tiny_resnet_config
from torch import nn
from transformers import PreTrainedConfig, PreTrainedModel, TrainerCallback
from transformers.utils import ModelOutput

import hfssl
from hfssl.models.vision import VisionSSLConfig, VisionSSLPreTrainedModel
from hfssl.schedules import TrainingProgress, cosine_schedule, linear_warmup, teacher_copy, update_momentum
from hfssl.training import SSLTrainer
from hfssl.transforms import BatchTransform, CollateInStep, MultiViewTransform

# ---- schedules and EMA ------------------------------------------------------------------------


def test_cosine_schedule_matches_byol_formula():
    total, base = 10, 0.996
    for step in range(total + 3):
        k = min(step, total)
        byol = 1 - (1 - base) * (math.cos(math.pi * k / total) + 1) / 2
        assert cosine_schedule(step, total, base, 1.0) == pytest.approx(byol, abs=1e-12)
    assert cosine_schedule(0, 0, 0.5, 1.0) == 1.0  # no steps: the end value
    with pytest.raises(ValueError, match="step >= 0"):
        cosine_schedule(-1, 10, 0.0, 1.0)


def test_linear_warmup_and_progress():
    assert [linear_warmup(s, 4, 0.04, 0.07) for s in (0, 2, 4, 9)] == pytest.approx([0.04, 0.055, 0.07, 0.07])
    assert TrainingProgress(3, 12).fraction == 0.25 and TrainingProgress(0, 0).fraction == 1.0


def test_update_momentum_is_the_ema_and_teacher_copy_starts_equal():
    torch.manual_seed(0)
    student = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    teacher = teacher_copy(student)
    assert all(not p.requires_grad for p in teacher.parameters())
    assert all(torch.equal(s, t) for s, t in zip(student.state_dict().values(), teacher.state_dict().values()))
    before = {name: p.clone() for name, p in teacher.named_parameters()}
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    student(torch.randn(5, 3))  # moves the student's BatchNorm statistics
    update_momentum(student, teacher, 0.9)
    for name, p in teacher.named_parameters():
        expected = 0.9 * before[name] + 0.1 * dict(student.named_parameters())[name]
        torch.testing.assert_close(p, expected, rtol=0, atol=1e-6)
    assert torch.equal(teacher[1].running_mean, torch.zeros(4))  # buffers: the teacher's own forward moves them
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        update_momentum(student, teacher, 1.5)
    with pytest.raises(ValueError, match="deep copy"):
        update_momentum(student, nn.Linear(3, 4), 0.5)


# ---- a toy method with an EMA teacher --------------------------------------------------------


class ToyConfig(PreTrainedConfig):
    model_type = "hfssl_test_toy_ema"
    dim: int = 4
    base_momentum: float = 0.8
    frozen_steps: int = 0


@dataclass
class ToyOutput(ModelOutput):
    loss: torch.FloatTensor | None = None
    embeddings: torch.FloatTensor | None = None


class ToyEMAModel(PreTrainedModel):
    """Student (two linear layers) regresses its EMA teacher's output on noisy inputs; the last layer
    is frozen for ``frozen_steps`` optimizer steps; every hook call is recorded."""

    config_class = ToyConfig
    accepts_loss_kwargs = False

    def __init__(self, config):
        super().__init__(config)
        self.student = nn.Sequential(nn.Linear(config.dim, config.dim), nn.Tanh(), nn.Linear(config.dim, config.dim))
        self.post_init()
        self.teacher = teacher_copy(self.student)
        self.register_buffer("momentum", torch.tensor(config.base_momentum), persistent=False)
        self.calls = []

    def forward(self, x, return_loss=True):
        z = self.student(x)
        target = self.teacher(x.flip(0)).detach()
        return ToyOutput(loss=((z - target) ** 2).mean() + z.pow(2).mean() * 0.1, embeddings=z)

    def set_momentum(self, progress):
        self.momentum.fill_(cosine_schedule(progress.step, progress.total_steps, self.config.base_momentum, 1.0))

    def on_train_start(self, progress):
        self.calls.append(("start", progress.step, progress.total_steps))
        self.set_momentum(progress)

    def before_optimizer_step(self, progress):
        self.calls.append(("before", progress.step, progress.total_steps))
        if progress.step < self.config.frozen_steps:
            for p in self.student[2].parameters():
                p.grad = None

    def after_optimizer_step(self, progress):
        self.calls.append(("after", progress.step, progress.total_steps))
        update_momentum(self.student, self.teacher, self.momentum.item())  # m of the step just taken
        self.set_momentum(progress)  # m of the next step


class NoisyInputs(BatchTransform):
    """Adds Gaussian noise drawn in the training step: resume must reproduce these draws."""

    def __call__(self, batch):
        return {"x": batch["x"] + 0.1 * torch.randn_like(batch["x"])}


def _toy_data():
    generator = torch.Generator().manual_seed(0)
    return datasets.Dataset.from_dict({"x": torch.randn(64, 4, generator=generator).tolist()})


def _collate(rows):
    return {"x": torch.tensor([row["x"] for row in rows])}


class SnapshotStudent(TrainerCallback):
    """The student's weights after every optimizer step (for the hand-computed EMA)."""

    def __init__(self):
        self.snapshots = []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.snapshots.append({name: p.detach().clone() for name, p in model.student.named_parameters()})


def _toy_trainer(output_dir, frozen_steps=0, **overrides):
    torch.manual_seed(0)
    model = ToyEMAModel(ToyConfig(frozen_steps=frozen_steps))
    args = short_run_arguments(output_dir, **overrides)
    return SSLTrainer(
        model=model, args=args, train_dataset=_toy_data(), data_collator=_collate, batch_transform=NoisyInputs()
    )


def _hand_ema(initial, snapshots, base, total):
    """The teacher a hand loop gives: t_k = m_{k-1} t_{k-1} + (1 - m_{k-1}) s_k with m_j = cosine(j)."""
    teacher = {name: value.clone() for name, value in initial.items()}
    for step, student in enumerate(snapshots):
        m = cosine_schedule(step, total, base, 1.0)
        teacher = {name: m * teacher[name] + (1 - m) * student[name] for name in teacher}
    return teacher


@pytest.mark.parametrize("accumulation", [1, 2])
def test_teacher_after_n_steps_equals_a_hand_loop(tmp_path, accumulation):
    trainer = _toy_trainer(
        tmp_path, per_device_train_batch_size=8 // accumulation, gradient_accumulation_steps=accumulation
    )
    initial = {name: p.detach().clone() for name, p in trainer.model.teacher.named_parameters()}
    snapshots = SnapshotStudent()
    trainer.add_callback(snapshots)
    trainer.train()
    model = trainer.model
    # once at the start, then one before/after pair per optimizer step (not per micro-batch)
    expected_calls = [("start", 0, 5)] + [c for k in range(5) for c in (("before", k, 5), ("after", k + 1, 5))]
    assert model.calls == expected_calls
    assert len(snapshots.snapshots) == 5
    expected = _hand_ema(initial, snapshots.snapshots, model.config.base_momentum, 5)
    for name, p in model.teacher.named_parameters():
        torch.testing.assert_close(p, expected[name], rtol=0, atol=1e-6)
    assert not torch.equal(model.teacher[0].weight, initial["0.weight"])  # the teacher did move
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 5 and all("embedding_std" in entry for entry in logs)  # monitors of the toy's embeddings


def test_before_optimizer_step_freezes_a_layer_for_the_first_steps(tmp_path):
    trainer = _toy_trainer(tmp_path, frozen_steps=3)
    snapshots = SnapshotStudent()
    trainer.add_callback(snapshots)
    initial_last = trainer.model.student[2].weight.detach().clone()
    initial_first = trainer.model.student[0].weight.detach().clone()
    trainer.train()
    last = [s["2.weight"] for s in snapshots.snapshots]
    assert all(torch.equal(w, initial_last) for w in last[:3])  # frozen through steps 1-3
    assert not torch.equal(last[3], initial_last)  # trained from step 4 on
    assert not torch.equal(snapshots.snapshots[0]["0.weight"], initial_first)  # the rest trained throughout


def test_resumed_toy_run_equals_the_uninterrupted_one_teacher_included(tmp_path):
    straight = _toy_trainer(tmp_path / "straight")
    straight.train()
    interrupted = _toy_trainer(tmp_path / "interrupted", save_strategy="steps", save_steps=2)
    interrupted.add_callback(stop_after(2))
    interrupted.train()
    checkpoint = str(tmp_path / "interrupted" / "checkpoint-2")  # a run in a folder with checkpoints must resume
    resumed = _toy_trainer(
        tmp_path / "interrupted", save_strategy="steps", save_steps=2, resume_from_checkpoint=checkpoint
    )
    resumed.train(resume_from_checkpoint=checkpoint)
    assert resumed.model.calls[0] == ("start", 2, 5)  # the schedule restarts at the resumed step
    assert resumed.model.momentum.item() == pytest.approx(straight.model.momentum.item())
    expected = straight.model.state_dict()
    for name, value in resumed.model.state_dict().items():  # student and teacher
        torch.testing.assert_close(value, expected[name], rtol=0, atol=1e-6, msg=name)
    assert any(name.startswith("teacher.") for name in expected)
    checkpoint_keys = json.loads((tmp_path / "interrupted" / "checkpoint-2" / "config.json").read_text())
    assert checkpoint_keys["model_type"] == "hfssl_test_toy_ema"


# ---- METHODS entries and their transforms ------------------------------------------------------


def test_every_method_says_its_modality_and_builds_its_transform():
    assert set(hfssl.MODALITIES) >= {method.modality for method in hfssl.METHODS.values()}
    image_methods = hfssl.methods_of("image")
    assert "simclr" in image_methods and image_methods == sorted(image_methods)
    for name in image_methods:  # every image method is a vision SSL model with its own hfssl model type
        method = hfssl.METHODS[name]
        assert issubclass(method.config_class, VisionSSLConfig), name
        assert issubclass(method.model_class, VisionSSLPreTrainedModel), name
        assert method.config_class.model_type.startswith("hfssl_"), name
    assert hfssl.methods_of("text") == ["bart", "bert", "gpt"]
    model = hfssl.SimCLRModel(hfssl.SimCLRConfig(backbone_config=tiny_resnet_config(num_channels=1), image_size=12))
    transform = hfssl.METHODS["simclr"].batch_transform(model, None)
    assert isinstance(transform, MultiViewTransform) and not transform.takes_examples
    views = transform({"pixel_values": torch.randint(0, 256, (3, 1, 20, 20), dtype=torch.uint8)})["views"]
    assert [tuple(v.shape) for v in views] == [(3, 1, 12, 12)] * 2
    bert = hfssl.BertPretrainingModel(
        hfssl.BertPretrainingConfig(
            backbone_config=dict(
                model_type="bert",
                num_hidden_layers=1,
                hidden_size=32,
                num_attention_heads=2,
                intermediate_size=64,
                vocab_size=200,
            ),
            mlm_probability=0.3,
        )
    )
    from hfssl.tokenization import train_subword_tokenizer

    tokenizer = train_subword_tokenizer(["the cat sat on the mat"] * 20, "wordpiece", "bert", vocab_size=60)
    bert_transform = hfssl.METHODS["bert"].batch_transform(bert, tokenizer)
    assert (
        isinstance(bert_transform, CollateInStep)
        and bert_transform.takes_examples
        and bert_transform.seeds_per_process
    )
    assert bert_transform.collator.mlm_probability == 0.3  # built from the config
    assert hfssl.METHODS["gpt"].batch_transform(None, None) is None  # packed blocks are the input
    with pytest.raises(ValueError, match="modality"):
        hfssl.methods_of("audio")


def test_configs_carry_the_augmentation_and_validate_it():
    config = hfssl.SimCLRConfig(backbone_config=tiny_resnet_config(), min_crop_scale=0.3, color_jitter_strength=0.5)
    restored = hfssl.SimCLRConfig.from_dict(config.to_dict())
    assert (restored.min_crop_scale, restored.color_jitter_strength, restored.image_size) == (0.3, 0.5, 224)
    for bad, match in ((dict(tau=-1.0), "tau"), (dict(tau=0.0), "tau"), (dict(min_crop_scale=1.5), "min_crop_scale")):
        with pytest.raises(ValueError, match=match):
            hfssl.SimCLRConfig(backbone_config=tiny_resnet_config(), **bad)
    with pytest.raises(ValueError, match="mlm_probability"):
        hfssl.BertPretrainingConfig(mlm_probability=0.0)
    with pytest.raises(ValueError, match="random_replace_prob"):
        hfssl.BertPretrainingConfig(mask_replace_prob=0.95, random_replace_prob=0.1)
    with pytest.raises(ValueError, match="mask_ratio"):
        hfssl.BartPretrainingConfig(mask_ratio=1.2)


# Losses of each method on fixed inputs through the code path before the method contract (views
# from simclr_view_generator, the collators built by the recipes, word2vec's training_rows in the
# trainer), recorded with that code; the METHODS transforms must give the same.
RECORDED_LOSSES = {
    "simclr": 2.443835496902466,
    "bert_wwm=False": 7.092200756072998,
    "bert_wwm=True": 7.095788955688477,
    "bart": 6.401174068450928,
    "word2vec": 485.20306396484375,
}


@pytest.fixture(scope="module")
def corpus_head(shared_data):
    import gzip

    with gzip.open(shared_data / "corpus" / "train.jsonl.gz", "rt") as handle:
        return [json.loads(next(handle))["text"] for _ in range(40)]


def _simclr_loss():
    torch.manual_seed(0)
    config = hfssl.SimCLRConfig(
        backbone_config=tiny_resnet_config(), projection_hidden_dim=32, projection_dim=16, tau=0.5, image_size=16
    )
    model = hfssl.SimCLRModel(config)
    images = torch.randint(0, 256, (6, 3, 20, 20), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    torch.manual_seed(5)
    return model(**hfssl.METHODS["simclr"].batch_transform(model, None)({"pixel_values": images})).loss.item()


def _bert_losses(documents):
    from hfssl.data.nsp import build_nsp_examples
    from hfssl.tokenization import train_subword_tokenizer

    tokenizer = train_subword_tokenizer(documents, "byte_level_bpe", "bert", vocab_size=600)
    pairs = build_nsp_examples(
        datasets.Dataset.from_dict({"text": documents[:8]}), tokenizer=tokenizer, max_seq_length=48, seed=0
    )
    examples = [pairs[i] for i in range(8)]
    backbone = dict(
        model_type="bert", vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    losses = {}
    for whole_word_mask in (False, True):
        torch.manual_seed(0)
        model = hfssl.BertPretrainingModel(
            hfssl.BertPretrainingConfig(backbone_config=backbone, whole_word_mask=whole_word_mask)
        )
        torch.manual_seed(6)
        batch = hfssl.METHODS["bert"].batch_transform(model, tokenizer)(examples)
        losses[f"bert_wwm={whole_word_mask}"] = model(**batch).loss.item()
    return losses


def _bart_loss(documents):
    from hfssl.data.denoising import build_denoising_examples
    from hfssl.tokenization import train_subword_tokenizer

    tokenizer = train_subword_tokenizer(documents, "byte_level_bpe", "bart", vocab_size=600)
    rows = build_denoising_examples(datasets.Dataset.from_dict({"text": documents[:8]}), tokenizer, max_seq_length=64)
    special = {name: getattr(tokenizer, name) for name in ("pad_token_id", "bos_token_id", "eos_token_id")}
    backbone = dict(
        model_type="bart", vocab_size=len(tokenizer), d_model=32, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
        max_position_embeddings=80, decoder_start_token_id=tokenizer.eos_token_id, **special,
    )  # fmt: skip
    torch.manual_seed(0)
    model = hfssl.BartPretrainingModel(hfssl.BartPretrainingConfig(backbone_config=backbone, max_seq_length=64))
    torch.manual_seed(7)
    batch = hfssl.METHODS["bart"].batch_transform(model, tokenizer)([rows[i] for i in range(8)])
    return model(**batch).loss.item()


def _word2vec_loss():
    torch.manual_seed(0)
    config = hfssl.Word2VecConfig(
        vocab_size=30, vector_size=8, window=3, negative=3, sample=1e-2, loss_implementation="autograd"
    )
    model = hfssl.Word2VecModel(config)
    model.set_word_counts(torch.arange(30, 0, -1) * 10)
    batch = {
        "token_ids": torch.randint(1, 30, (60,), generator=torch.Generator().manual_seed(3)),
        "sentence_ids": torch.arange(60) // 15,
    }
    torch.manual_seed(8)
    rows = hfssl.METHODS["word2vec"].batch_transform(model, None)(batch)
    return model(**rows, sgd_step_size=0.0).loss.item()


def test_the_methods_give_the_losses_recorded_before_the_contract(corpus_head):
    losses = {
        "simclr": _simclr_loss(),
        **_bert_losses(corpus_head),
        "bart": _bart_loss(corpus_head),
        "word2vec": _word2vec_loss(),
    }
    assert losses == pytest.approx(RECORDED_LOSSES, rel=1e-5)
