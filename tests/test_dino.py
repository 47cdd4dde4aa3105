"""DINO: the loss by hand, where gradients go, 2 processes against 1, the step schedules (teacher temperature,
momentum, weight decay, frozen last layer) through SSLTrainer with and without gradient accumulation, the
multi-crop views, the centre (updated per optimizer step, never by evaluation), save / load / export, resume.

Recipe runs that beat random init are measured separately (see the report in tests/test_momentum_methods.py's
REAL_RUNS); this file stays under a minute on 2 cores.
"""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import (
    WORLD,
    assert_backbones_load_without_hfssl,
    collate_pixels,
    free_port,
    init_gloo,
    random_image_rows,
    short_run_arguments,
    spawn_processes,
    stop_after,
    tiny_resnet_config,
    tiny_vit_config,
)
from transformers import AutoModel, TrainerCallback

import hfssl
from hfssl.backbones import pooled_features
from hfssl.distributed import world_size
from hfssl.losses import dino_loss
from hfssl.schedules import TrainingProgress, cosine_schedule
from hfssl.training import SSLTrainer, SSLTrainingArguments

HEAD = dict(output_dim=16, hidden_dim=16, bottleneck_dim=8)


def tiny_dino(backbone=None, **overrides):
    config = dict(HEAD, image_size=8, local_image_size=4, num_local_crops=2)
    backbone = tiny_resnet_config(num_channels=1) if backbone is None else backbone
    return hfssl.DINOModel(hfssl.DINOConfig(backbone_config=backbone, **{**config, **overrides}))


def random_views(batch_size=4, channels=1, global_size=8, local_size=4, num_local=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    sizes = [global_size] * 2 + [local_size] * num_local
    return [torch.randn(batch_size, channels, size, size, generator=generator) for size in sizes]


# ---- the loss against a hand computation -----------------------------------------------------

STUDENT = [  # (V=3 crops: 2 global + 1 local, B=2, K=3)
    [[0.5, -1.0, 2.0], [1.0, 0.0, -0.5]],
    [[-0.3, 0.8, 0.1], [0.2, 0.2, 0.9]],
    [[1.5, -0.5, 0.0], [-1.0, 0.5, 0.3]],
]
TEACHER = [  # (G=2, B=2, K=3)
    [[0.2, 0.4, -0.1], [0.0, 1.2, 0.3]],
    [[-0.6, 0.1, 0.5], [0.7, -0.2, 0.0]],
]
CENTER = [0.1, -0.2, 0.3]


def _softmax(row, temperature):
    exps = [math.exp(x / temperature) for x in row]
    return [e / sum(exps) for e in exps]


def _hand_dino_loss(student, teacher, center, tau_t, tau_s, skip_same_view=True):
    """mean over pairs (g, v), v != g, of mean_b -sum_k softmax((t_gb - c) / tau_t)_k log softmax(s_vb / tau_s)_k."""
    terms = []
    for g in range(len(teacher)):
        for v in range(len(student)):
            if skip_same_view and v == g:
                continue
            batch = []
            for b in range(len(student[v])):
                q = _softmax([t - c for t, c in zip(teacher[g][b], center)], tau_t)
                p = _softmax(student[v][b], tau_s)
                batch.append(-sum(qk * math.log(pk) for qk, pk in zip(q, p)))
            terms.append(sum(batch) / len(batch))
    return sum(terms) / len(terms), len(terms)


def test_dino_loss_equals_the_hand_computation_with_centring_and_skipped_pairs():
    student = torch.tensor(STUDENT, requires_grad=True)
    teacher = torch.tensor(TEACHER, requires_grad=True)
    center = torch.tensor(CENTER, requires_grad=True)
    loss = dino_loss(student, teacher, center, teacher_temperature=0.5, student_temperature=0.25)
    expected, pairs = _hand_dino_loss(STUDENT, TEACHER, CENTER, 0.5, 0.25)
    assert pairs == 4  # (g, v) in {0, 1} x {0, 1, 2} without (0, 0) and (1, 1)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    with_same_view, _ = _hand_dino_loss(STUDENT, TEACHER, CENTER, 0.5, 0.25, skip_same_view=False)
    assert abs(with_same_view - expected) > 1e-3  # the skipped pairs matter on these inputs
    uncentred, _ = _hand_dino_loss(STUDENT, TEACHER, [0.0] * 3, 0.5, 0.25)
    assert abs(uncentred - expected) > 1e-3  # and so does the centre
    zero = torch.zeros(3)
    assert dino_loss(student, teacher, zero, 0.5, 0.25).item() == pytest.approx(uncentred, rel=1e-6)
    # centring: shifting the teacher's logits and the centre alike changes nothing
    shift = torch.tensor([0.3, -1.0, 2.0])
    shifted = dino_loss(student, teacher + shift, center + shift, 0.5, 0.25)
    assert shifted.item() == pytest.approx(loss.item(), rel=1e-6)

    loss.backward()
    assert teacher.grad is None and center.grad is None  # targets and centre are constants
    # by hand: d/ds of H(q, softmax(s / tau_s)) is (p - q) / tau_s; crop v meets the global crops g != v, each
    # pair weighted 1 / (B * pairs)
    q = F.softmax((torch.tensor(TEACHER) - torch.tensor(CENTER)) / 0.5, dim=-1)
    p = F.softmax(torch.tensor(STUDENT) / 0.25, dim=-1)
    for v in range(3):
        expected_grad = sum((p[v] - q[g]) for g in range(2) if g != v) / (0.25 * 2 * 4)
        torch.testing.assert_close(student.grad[v], expected_grad, rtol=1e-5, atol=1e-7)
    # a uniform student costs log K whatever the teacher
    uniform = dino_loss(torch.zeros(4, 5, 7), torch.randn(2, 5, 7), torch.randn(7), 0.04)
    assert uniform.item() == pytest.approx(math.log(7), rel=1e-6)
    with pytest.raises(ValueError, match="at least 2 crops"):
        dino_loss(torch.zeros(1, 2, 3), torch.zeros(1, 2, 3), torch.zeros(3), 0.04)
    with pytest.raises(ValueError, match="centre"):
        dino_loss(torch.zeros(3, 2, 3), torch.zeros(2, 2, 3), torch.zeros(4), 0.04)


# ---- where the gradients go, what the teacher sees -------------------------------------------


def test_the_student_trains_and_the_teacher_sees_the_global_crops_only():
    torch.manual_seed(0)
    model = tiny_dino(num_local_crops=3)
    assert all(not p.requires_grad for p in model.teacher_backbone.parameters())
    assert all(not p.requires_grad for p in model.teacher_head.parameters())
    assert not model.center.requires_grad
    seen = {"student": [], "teacher": []}
    model.backbone.register_forward_pre_hook(
        lambda m, args, kw: seen["student"].append(kw["pixel_values"].shape), with_kwargs=True
    )
    model.teacher_backbone.register_forward_pre_hook(
        lambda m, args, kw: seen["teacher"].append(kw["pixel_values"].shape), with_kwargs=True
    )
    images = {"pixel_values": torch.randint(0, 256, (3, 1, 12, 12), dtype=torch.uint8)}
    views = hfssl.METHODS["dino"].batch_transform(model, None)(images)["views"]
    assert [tuple(v.shape) for v in views] == [(3, 1, 8, 8)] * 2 + [(3, 1, 4, 4)] * 3
    output = model(views=views)
    assert seen["teacher"] == [(6, 1, 8, 8)]  # the 2 global crops, in one pass
    assert seen["student"] == [(6, 1, 8, 8), (9, 1, 4, 4)]  # every crop, one pass per size
    assert output.embeddings.shape == (6, 8)  # the bottleneck of the global crops
    torch.testing.assert_close(output.embeddings.norm(dim=1), torch.ones(6))
    assert output.features.shape == (6, model.feature_dim)
    output.loss.backward()
    for name, parameter in model.named_parameters():
        if name.startswith("teacher_"):
            assert parameter.grad is None, name
        else:
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    with pytest.raises(ValueError, match="2 global crops"):
        model(views=views[:1])


def test_views_follow_the_config_and_the_local_size_is_derived_from_the_image_size():
    model = tiny_dino(image_size=16, local_image_size=None, num_local_crops=4, local_crop_scale=(0.1, 0.3))
    assert model.config.local_crop_size == round(16 * 96 / 224) == 7
    assert hfssl.DINOConfig(image_size=224).local_crop_size == 96
    transform = hfssl.METHODS["dino"].batch_transform(model, None)
    views = transform({"pixel_values": torch.randint(0, 256, (2, 1, 20, 20), dtype=torch.uint8)})["views"]
    assert [tuple(v.shape) for v in views] == [(2, 1, 16, 16)] * 2 + [(2, 1, 7, 7)] * 4
    recipes = transform.view_generator.recipes
    assert [r.crop_scale for r in recipes] == [(0.4, 1.0)] * 2 + [(0.1, 0.3)] * 4
    assert hfssl.METHODS["dino"].modality == "image" and "dino" in hfssl.methods_of("image")


# ---- the teacher's EMA and the centre ---------------------------------------------------------


def test_after_a_step_the_teacher_is_the_ema_and_the_centre_moves_only_then():
    torch.manual_seed(0)
    model = tiny_dino(base_momentum=0.9, center_momentum=0.8)
    model.on_train_start(TrainingProgress(3, 10))
    momentum = model.momentum
    assert momentum == pytest.approx(1 - 0.1 * (math.cos(math.pi * 3 / 10) + 1) / 2)
    model.train()
    views = random_views()
    model(views=views)
    model(views=random_views(seed=1))  # two micro-batches of one optimizer step
    assert torch.equal(model.center, torch.zeros(16))  # not before the step
    with torch.no_grad():
        teacher_outputs = torch.cat(
            [
                model.teacher_head(pooled_features(model.teacher_backbone, torch.cat(v[:2]), model.config.pooling))
                for v in (views, random_views(seed=1))
            ]
        )
        for parameter in model.parameters():  # an optimizer step moves the student
            if parameter.requires_grad:
                parameter.add_(torch.randn_like(parameter) * 0.1)
    before = {name: p.clone() for name, p in model.named_parameters() if name.startswith("teacher_")}
    student = dict(model.named_parameters())
    model.after_optimizer_step(TrainingProgress(4, 10))
    for name, parameter in model.named_parameters():
        if name.startswith("teacher_"):  # backbone and head
            source = student[name.removeprefix("teacher_")]
            torch.testing.assert_close(parameter, momentum * before[name] + (1 - momentum) * source, rtol=0, atol=1e-6)
    assert any(name.startswith("teacher_head.") for name in before)
    torch.testing.assert_close(model.center, 0.2 * teacher_outputs.mean(0), rtol=1e-5, atol=1e-6)
    assert model.momentum == pytest.approx(cosine_schedule(4, 10, 0.9, 1.0))  # the next step's
    center = model.center.clone()
    model.eval()
    model(views=views)  # an evaluation forward
    model.after_optimizer_step(TrainingProgress(5, 10))  # nothing recorded: the centre stays
    assert torch.equal(model.center, center)
    model.train()
    model(views=views)  # a step whose update is then dropped (--nan_policy skip): its outputs are discarded
    model.after_skipped_step(TrainingProgress(5, 10))
    model.after_optimizer_step(TrainingProgress(6, 10))
    assert torch.equal(model.center, center)


def test_a_fresh_run_starts_the_teacher_from_the_student():
    torch.manual_seed(0)
    model = tiny_dino()
    with torch.no_grad():
        model.backbone.embedder.embedder.convolution.weight.add_(1.0)  # as loading a --backbone checkpoint does
        model.head.last_layer.weight_v.mul_(2.0)
    model.on_train_start(TrainingProgress(0, 5))
    for student, teacher in ((model.backbone, model.teacher_backbone), (model.head, model.teacher_head)):
        expected = student.state_dict()
        for name, value in teacher.state_dict().items():
            torch.testing.assert_close(value, expected[name], rtol=0, atol=0, msg=name)


# ---- 2 processes against 1 on the concatenated batch -----------------------------------------


def _two_process_model():
    torch.manual_seed(0)  # the same initial model in every process
    model = tiny_dino(backbone=tiny_vit_config(image_size=8), center_momentum=0.7)  # LayerNorm: no batch statistics
    with torch.no_grad():  # a teacher unlike the student, and a centre, as after some training
        for parameter in model.teacher_backbone.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
        model.center.copy_(torch.randn(16))
    model.teacher_temperature = 0.05
    return model.train()


def _dino_worker(rank: int, port: int, result_path: str):
    torch.set_num_threads(1)  # two processes on two cores
    init_gloo(rank, port)
    try:
        model = _two_process_model()
        views = random_views(batch_size=6, channels=3)
        output = model(views=[v[rank * 3 : rank * 3 + 3] for v in views])  # equal halves
        output.loss.backward()
        model.update_center()
        center_equal = model.center.clone()
        with torch.no_grad():  # unequal shares of the next batch: 2 and 4 images
            model(views=[v[:2] if rank == 0 else v[2:] for v in random_views(batch_size=6, channels=3, seed=1)])
        model.update_center()
        torch.save(
            {
                "world": world_size(),
                "loss": output.loss.detach(),
                "grads": {n: p.grad for n, p in model.named_parameters() if p.grad is not None},
                "center_equal": center_equal,
                "center_unequal": model.center.clone(),
            },
            f"{result_path}.{rank}",
        )
    finally:
        torch.distributed.destroy_process_group()


def test_two_processes_give_the_single_process_loss_gradients_and_centre(tmp_path):
    result_path = str(tmp_path / "result")
    spawn_processes(_dino_worker, (free_port(), result_path))
    results = [torch.load(f"{result_path}.{rank}", weights_only=True) for rank in range(WORLD)]
    assert all(r["world"] == WORLD for r in results)

    model = _two_process_model()
    output = model(views=random_views(batch_size=6, channels=3))
    output.loss.backward()
    # DDP averages the per-process losses and gradients
    assert abs(sum(r["loss"] for r in results).item() / WORLD - output.loss.item()) < 1e-5
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert grads.keys() == results[0]["grads"].keys() and not any(n.startswith("teacher_") for n in grads)
    for name, grad in grads.items():
        averaged = sum(r["grads"][name] for r in results) / WORLD
        torch.testing.assert_close(averaged, grad, rtol=1e-4, atol=1e-5, msg=name)
    flat = torch.cat([g.flatten() for g in grads.values()])
    averaged_flat = torch.cat([(sum(r["grads"][n] for r in results) / WORLD).flatten() for n in grads])
    assert flat.norm() > 1e-2  # large enough that a 1 / world_size error would show
    assert (averaged_flat - flat).norm() < 1e-4 * flat.norm()
    model.update_center()
    for key in ("center_equal", "center_unequal"):
        torch.testing.assert_close(results[0][key], results[1][key], rtol=0, atol=0)  # the processes agree
    torch.testing.assert_close(results[0]["center_equal"], model.center, rtol=0, atol=1e-5)
    with torch.no_grad():
        model(views=random_views(batch_size=6, channels=3, seed=1))
    model.update_center()
    torch.testing.assert_close(results[0]["center_unequal"], model.center, rtol=0, atol=1e-5)


# ---- the step schedules through SSLTrainer -----------------------------------------------------


class RecordSteps(TrainerCallback):
    """After each optimizer step: the values that step used, and the head's last layer."""

    def __init__(self):
        self.steps = []

    def on_optimizer_step(self, args, state, control, model=None, optimizer=None, **kwargs):
        self.steps.append(
            dict(
                step=state.global_step,
                teacher_temperature=model.teacher_temperature,
                momentum=model.momentum,
                weight_decays=[group["weight_decay"] for group in optimizer.param_groups],
                last_layer=model.head.last_layer.weight_v.detach().clone(),
            )
        )


def _dino_trainer(output_dir, model, images, **overrides):
    args = short_run_arguments(output_dir, **{"learning_rate": 0.01, **overrides})
    return SSLTrainer(
        model=model,
        args=args,
        train_dataset=images,
        eval_dataset=images.select(range(16)),
        data_collator=collate_pixels,
        batch_transform=hfssl.METHODS["dino"].batch_transform(model, None),
    )


SCHEDULED = dict(
    base_momentum=0.9, teacher_temperature_warmup_epochs=0.5, freeze_last_layer_epochs=1 / 3,
    base_weight_decay=0.05, final_weight_decay=0.3,
)  # fmt: skip


def test_schedules_advance_per_optimizer_step_and_accumulation_reproduces_the_run(tmp_path):
    """48 images, 8 per optimizer step: 6 steps an epoch, so the teacher temperature warms up over 3 steps and
    the last layer is frozen for 2. No BatchNorm (ViT backbone): accumulating 2 x 4 images is the run on 8."""
    runs = {}
    for accumulation in (1, 2):
        torch.manual_seed(0)
        model = tiny_dino(backbone=tiny_vit_config(image_size=8, num_channels=1), **SCHEDULED)
        trainer = _dino_trainer(
            tmp_path / str(accumulation),
            model,
            random_image_rows(),
            per_device_train_batch_size=8 // accumulation,
            gradient_accumulation_steps=accumulation,
        )
        record = RecordSteps()
        trainer.add_callback(record)
        initial_last_layer = model.head.last_layer.weight_v.detach().clone()
        trainer.train()
        runs[accumulation] = (trainer, record.steps)

        assert [s["step"] for s in record.steps] == [0, 1, 2, 3, 4]  # once per optimizer step
        decayed = set(trainer.get_decay_parameter_names(model))
        group_decays = [
            all(n in decayed for n, p in model.named_parameters() if any(p is q for q in g["params"]))
            for g in trainer.optimizer.param_groups
        ]
        assert group_decays == [True, False]
        for k, values in enumerate(record.steps):
            assert values["teacher_temperature"] == pytest.approx(0.04 + 0.03 * min(k, 3) / 3, abs=1e-12)
            assert values["momentum"] == pytest.approx(1 - 0.1 * (math.cos(math.pi * k / 5) + 1) / 2, abs=1e-12)
            decay = 0.3 - 0.25 * (math.cos(math.pi * k / 5) + 1) / 2  # cosine 0.05 -> 0.3 over 5 steps
            assert values["weight_decays"] == pytest.approx([decay, 0.0], abs=1e-12)  # biases, norms: none
        frozen = [torch.equal(s["last_layer"], initial_last_layer) for s in record.steps]
        assert frozen[:2] == [True, True] and not frozen[2]  # frozen for the first 2 steps, trained after
        assert not torch.equal(model.center, torch.zeros(16))

    (straight, _), (accumulated, _) = runs[1], runs[2]
    expected = straight.model.state_dict()
    for name, value in accumulated.model.state_dict().items():  # student, teacher and centre
        torch.testing.assert_close(value, expected[name], rtol=0, atol=1e-5, msg=name)
    # evaluation (loss and forwards in eval mode) leaves the centre as it is
    center = straight.model.center.clone()
    metrics = straight.evaluate()
    assert math.isfinite(metrics["eval_loss"]) and torch.equal(straight.model.center, center)
    logs = [entry for entry in straight.state.log_history if "loss" in entry]
    assert len(logs) == 5 and all("embedding_std" in entry and "feature_rank" in entry for entry in logs)


def test_other_models_keep_their_weight_decay(tmp_path):
    """Only a model with ``weight_decay_at`` has its optimizer's weight decay set by the step hooks."""
    torch.manual_seed(0)
    model = hfssl.SimSiamModel(
        hfssl.SimSiamConfig(
            backbone_config=tiny_resnet_config(num_channels=1),
            projection_hidden_dim=8,
            projection_dim=8,
            prediction_hidden_dim=8,
            image_size=8,
        )
    )
    args = SSLTrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=8, learning_rate=0.01, max_steps=2, save_strategy="no",
        report_to="none", use_cpu=True, disable_tqdm=True, dataloader_num_workers=0, optim="sgd", weight_decay=0.123,
    )  # fmt: skip
    trainer = SSLTrainer(
        model=model,
        args=args,
        train_dataset=random_image_rows(16),
        data_collator=collate_pixels,
        batch_transform=hfssl.METHODS["simsiam"].batch_transform(model, None),
    )
    trainer.train()
    assert [group["weight_decay"] for group in trainer.optimizer.param_groups] == [0.123, 0.0]


# ---- configs -----------------------------------------------------------------------------------


def test_config_has_the_papers_defaults_and_validates_its_ranges():
    config = hfssl.DINOConfig()
    assert (config.output_dim, config.hidden_dim, config.bottleneck_dim, config.num_head_layers) == (
        65536,
        2048,
        256,
        3,
    )
    assert (config.norm_last_layer, config.head_batch_norm, config.export_teacher) == (True, False, False)
    assert (config.student_temperature, config.warmup_teacher_temperature, config.teacher_temperature) == (
        0.1,
        0.04,
        0.07,
    )
    assert (config.teacher_temperature_warmup_epochs, config.freeze_last_layer_epochs) == (30, 1)
    assert (config.center_momentum, config.base_momentum, config.final_momentum) == (0.9, 0.996, 1.0)
    assert (config.base_weight_decay, config.final_weight_decay) == (0.04, 0.4)
    assert tuple(config.global_crop_scale) == (0.4, 1.0) and tuple(config.local_crop_scale) == (0.05, 0.4)
    assert config.num_local_crops == 8 and config.local_image_size is None
    for bad, match in (
        (dict(output_dim=0), "output_dim"),
        (dict(num_local_crops=-1), "num_local_crops"),
        (dict(local_image_size=0), "local_image_size"),
        (dict(local_crop_scale=(0.5, 0.2)), "local_crop_scale"),
        (dict(global_crop_scale=(0.0, 1.0)), "global_crop_scale"),
        (dict(teacher_temperature=0.0), "teacher_temperature"),
        (dict(student_temperature=-0.1), "student_temperature"),
        (dict(center_momentum=1.5), "center_momentum"),
        (dict(final_momentum=0.9), "final_momentum must be >= base_momentum"),
        (dict(base_weight_decay=-0.1), "base_weight_decay"),
        (dict(freeze_last_layer_epochs=-1), "freeze_last_layer_epochs"),
        (dict(export_teacher="yes"), "export_teacher"),
    ):
        with pytest.raises(ValueError, match=match):
            hfssl.DINOConfig(backbone_config=tiny_resnet_config(), **bad)
    with pytest.raises(ValueError, match="center_momentum"):  # overrides are checked too
        hfssl.DINOConfig.from_dict(hfssl.DINOConfig().to_dict(), center_momentum=2.0)
    assert "centring" in hfssl.DINOModel.collapse_hint and hfssl.DINOModel.min_global_batch_size == 2


# ---- save, load, export ----------------------------------------------------------------------


def test_save_load_round_trip_keeps_the_centre_and_exports_student_or_teacher(tmp_path):
    torch.manual_seed(0)
    model = tiny_dino()
    with torch.no_grad():  # a trained teacher and centre differ from the student and from zero
        for parameter in model.teacher_backbone.parameters():
            parameter.mul_(0.5)
        model.center.copy_(torch.randn(16))
    model.save_pretrained(tmp_path / "dino")
    restored = AutoModel.from_pretrained(tmp_path / "dino")
    assert type(restored) is hfssl.DINOModel
    expected = model.state_dict()
    assert restored.state_dict().keys() == expected.keys() and "center" in expected
    for key, value in restored.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=0, msg=key)
    assert model.exported_network == "student"
    model.export_backbone(tmp_path / "student")
    model.config.export_teacher = True
    assert model.exported_network == "teacher"
    model.export_backbone(tmp_path / "teacher")
    weights = "embedder.embedder.convolution.weight"
    assert_backbones_load_without_hfssl(
        {"student": model.backbone, "teacher": model.teacher_backbone}, tmp_path, weights, "ResNetModel"
    )
    assert not torch.equal(model.backbone.state_dict()[weights], model.teacher_backbone.state_dict()[weights])


# ---- resume equals the uninterrupted run, teacher and centre included ---------------------------------


def _resumable_trainer(output_dir, **overrides):
    torch.manual_seed(0)
    model = tiny_dino(**SCHEDULED)
    return _dino_trainer(output_dir, model, random_image_rows(), optim="adamw_torch", **overrides)


def test_resumed_run_equals_the_uninterrupted_one_teacher_and_centre_included(tmp_path):
    straight = _resumable_trainer(tmp_path / "straight")
    initial = {k: v.clone() for k, v in straight.model.state_dict().items()}
    straight.train()
    moved = straight.model.state_dict()
    assert not torch.equal(moved["center"], initial["center"])
    assert any(not torch.equal(moved[k], initial[k]) for k in initial if k.startswith("teacher_head."))

    interrupted = _resumable_trainer(tmp_path / "interrupted", save_strategy="steps", save_steps=2)
    interrupted.add_callback(stop_after(2))
    interrupted.train()
    checkpoint = str(tmp_path / "interrupted" / "checkpoint-2")
    resumed = _resumable_trainer(
        tmp_path / "interrupted", save_strategy="steps", save_steps=2, resume_from_checkpoint=checkpoint
    )
    resumed.train(resume_from_checkpoint=checkpoint)
    assert resumed.model.momentum == pytest.approx(straight.model.momentum)
    assert resumed.model.teacher_temperature == pytest.approx(straight.model.teacher_temperature)
    assert [g["weight_decay"] for g in resumed.optimizer.param_groups] == pytest.approx(
        [g["weight_decay"] for g in straight.optimizer.param_groups]
    )
    expected = straight.model.state_dict()
    for name, value in resumed.model.state_dict().items():  # student, teacher, centre
        torch.testing.assert_close(value, expected[name], rtol=0, atol=1e-6, msg=name)
    config = json.loads((tmp_path / "interrupted" / "checkpoint-2" / "config.json").read_text())
    assert config["model_type"] == "hfssl_dino"
