"""MoCo v2 and MoCo v3: their losses by hand, where gradients go, MoCo v2's queue (enqueue after the loss, wrap
around, never in evaluation), the momentum encoders (schedule, EMA under the trainer with gradient accumulation,
save, resume, export), and 2 processes (gloo) against 1 process on the concatenated batch.

MoCo v2's loss reads no other sample of the batch (only the queue, which every process holds alike), so its
2-process check runs the whole model on a ViT backbone (LayerNorm: no batch statistics) in float64; MoCo v3's
heads have BatchNorm, which normalises per process, so its check runs the loss on fixed embeddings.
"""

import json
import logging
import math

import datasets
import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from conftest import (
    WORLD,
    assert_backbones_load_without_hfssl,
    assert_save_load_round_trip,
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
from hfssl.losses import info_nce, moco_v2_loss, moco_v3_contrastive, moco_v3_loss
from hfssl.schedules import TrainingProgress, cosine_schedule
from hfssl.training import SSLTrainer, SSLTrainingArguments
from hfssl.training.guards import check_run_can_learn

V2_HEADS = dict(projection_hidden_dim=16, projection_dim=8)
V3_HEADS = dict(projection_hidden_dim=16, projection_dim=8, prediction_hidden_dim=16)


def tiny_moco_v2(**overrides):
    config = dict(backbone_config=tiny_resnet_config(num_channels=1), image_size=8, queue_size=10, **V2_HEADS)
    return hfssl.MoCoV2Model(hfssl.MoCoV2Config(**{**config, **overrides}))


def tiny_moco_v3(**overrides):
    config = dict(backbone_config=tiny_resnet_config(num_channels=1), image_size=8, **V3_HEADS)
    return hfssl.MoCoV3Model(hfssl.MoCoV3Config(**{**config, **overrides}))


def random_views(batch_size=6, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch_size, 1, 8, 8, generator=generator) for _ in range(2)]


def _unit(rows):
    return [[x / math.sqrt(sum(v * v for v in row)) for x in row] for row in rows]


def _dot(a, b):
    return sum(x * y for x, y in zip(a, b))


# ---- losses against hand computations ---------------------------------------------------------


def _hand_info_nce(queries, keys, queue, tau):
    """-log(exp(q.k+ / tau) / (exp(q.k+ / tau) + sum_i exp(q.k_i / tau))), averaged, in plain Python."""
    losses = []
    for q, k in zip(_unit(queries), _unit(keys)):
        positive = math.exp(_dot(q, k) / tau)
        negatives = sum(math.exp(_dot(q, n) / tau) for n in queue)
        losses.append(-math.log(positive / (positive + negatives)))
    return sum(losses) / len(losses)


def test_info_nce_with_a_queue_by_hand_and_the_keys_get_no_gradient():
    queries, keys = [[2.0, 0.0], [0.0, 3.0]], [[1.0, 1.0], [0.0, 0.5]]
    queue = [[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]  # unit rows, as the model stores them
    # row 1: q = (1, 0), k+ = (1, 1)/sqrt(2): logits [1/sqrt(2), 1, 0, -1] / tau; row 2: q = (0, 1), [1, 0, 1, 0] / tau
    tau = 0.5
    row1 = -math.log(math.exp(2 / math.sqrt(2)) / (math.exp(2 / math.sqrt(2)) + math.exp(2) + 1 + math.exp(-2)))
    row2 = -math.log(math.exp(2) / (math.exp(2) + 1 + math.exp(2) + 1))
    q = torch.tensor(queries, requires_grad=True)
    k = torch.tensor(keys, requires_grad=True)
    negatives = torch.tensor(queue, requires_grad=True)
    loss = info_nce(q, k, negatives, tau)
    assert loss.item() == pytest.approx((row1 + row2) / 2, rel=1e-6)
    assert loss.item() == pytest.approx(_hand_info_nce(queries, keys, queue, tau), rel=1e-6)
    loss.backward()
    assert q.grad is not None and q.grad.abs().sum() > 0
    assert k.grad is None and negatives.grad is None  # keys and queue are stop-gradients
    with pytest.raises(ValueError, match="queue"):
        info_nce(q, k, torch.randn(3, 5), tau)


def test_moco_v2_loss_averages_both_directions_against_the_same_queue():
    q1, q2 = [[3.0, 4.0, 0.0], [0.0, 1.0, 1.0]], [[1.0, 0.0, 0.0], [1.0, -2.0, 2.0]]
    k1, k2 = [[0.0, 0.0, 2.0], [1.0, 1.0, 0.0]], [[4.0, 3.0, 0.0], [0.0, 1.0, 0.0]]
    queue = _unit([[1.0, 2.0, 2.0], [0.0, -1.0, 0.0], [2.0, 1.0, -2.0]])
    tau = 0.2
    expected = (_hand_info_nce(q1, k2, queue, tau) + _hand_info_nce(q2, k1, queue, tau)) / 2
    loss = moco_v2_loss(*(torch.tensor(t) for t in (q1, q2, k1, k2, queue)), tau=tau)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def _hand_ctr(queries, keys, tau):
    """2 tau x the mean over rows i of -log(exp(q_i.k_i / tau) / sum_j exp(q_i.k_j / tau)), in plain Python."""
    q, k = _unit(queries), _unit(keys)
    losses = [
        -math.log(math.exp(_dot(q[i], k[i]) / tau) / sum(math.exp(_dot(q[i], kj) / tau) for kj in k))
        for i in range(len(q))
    ]
    return 2 * tau * sum(losses) / len(losses)


def test_moco_v3_ctr_by_hand_scaled_by_two_tau_and_symmetrised():
    q1 = [[3.0, 4.0], [1.0, 0.0], [0.0, -2.0]]  # unit: (0.6, 0.8), (1, 0), (0, -1)
    k2 = [[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]  # unit: (1, 0), (0, 1), -(1, 1)/sqrt(2)
    tau = 0.2
    r = 1 / math.sqrt(2)
    logits = [[0.6, 0.8, -1.4 * r], [1.0, 0.0, -r], [0.0, -1.0, r]]  # q_i . k_j; the positives on the diagonal
    by_hand = [-math.log(math.exp(row[i] / tau) / sum(math.exp(x / tau) for x in row)) for i, row in enumerate(logits)]
    expected = 2 * tau * sum(by_hand) / 3
    assert _hand_ctr(q1, k2, tau) == pytest.approx(expected, rel=1e-12)
    q = torch.tensor(q1, requires_grad=True)
    k = torch.tensor(k2, requires_grad=True)
    loss = moco_v3_contrastive(q, k, tau)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert q.grad.abs().sum() > 0 and k.grad is None  # the keys are stop-gradients
    q2 = [[1.0, 1.0], [-3.0, 1.0], [2.0, 2.0]]
    k1 = [[0.0, 5.0], [1.0, -1.0], [3.0, 0.0]]
    symmetric = moco_v3_loss(*(torch.tensor(t) for t in (q1, q2, k1, k2)), tau=tau)
    assert symmetric.item() == pytest.approx(_hand_ctr(q1, k2, tau) + _hand_ctr(q2, k1, tau), rel=1e-5)


# ---- where the gradients go, and the queue ------------------------------------------------------


@pytest.mark.parametrize("method", ["moco_v2", "moco_v3"])
def test_only_the_online_encoder_trains_and_backward_leaves_the_queue_alone(method):
    torch.manual_seed(0)
    model = tiny_moco_v2() if method == "moco_v2" else tiny_moco_v3()
    model.train()
    teacher = [p for name, p in model.named_parameters() if name.startswith("teacher_")]
    assert teacher and all(not p.requires_grad for p in teacher)
    output = model(views=random_views())
    assert output.embeddings.shape == (12, 8) and output.features.shape == (12, model.feature_dim)
    queue = model.queue.clone() if method == "moco_v2" else None
    output.loss.backward()
    for name, parameter in model.named_parameters():
        if name.startswith("teacher_"):
            assert parameter.grad is None, name
        elif not name.endswith("bias") or parameter.grad is not None:
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    online = [n for n, _ in model.named_parameters() if n.startswith(("backbone.", "projection_head."))]
    assert sorted(
        n.removeprefix("teacher_") for n, _ in model.named_parameters() if n.startswith("teacher_")
    ) == sorted(online)  # the momentum encoder mirrors backbone and projector (MoCo v3: not the predictor)
    if method == "moco_v2":
        assert torch.equal(model.queue, queue)  # the queue is a buffer: backward does not touch it
        assert not model.queue.requires_grad
    else:
        assert any(n.startswith("prediction_head.") for n, _ in model.named_parameters())


def test_the_loss_uses_the_queue_before_this_steps_keys_which_are_then_enqueued():
    torch.manual_seed(0)
    model = tiny_moco_v2(queue_size=16)
    model.train()
    before = model.queue.clone()
    views = random_views(batch_size=5)
    output = model(views=views)
    with torch.no_grad():  # the keys, recomputed: the key encoder's normalised projections of both views
        x = torch.cat(views)
        keys = F.normalize(model.teacher_projection_head(pooled_features(model.teacher_backbone, x, "auto")), dim=1)
    torch.testing.assert_close(model.queue[:10], keys)  # k1 then k2 of the 5 images, in slots 0-9
    assert torch.equal(model.queue[10:], before[10:]) and model.queue_pointer.item() == 10
    q = output.embeddings
    expected = moco_v2_loss(q[:5], q[5:], keys[:5], keys[5:], before, model.config.tau)
    torch.testing.assert_close(output.loss, expected)
    stale = moco_v2_loss(q[:5], q[5:], keys[:5], keys[5:], model.queue, model.config.tau)
    assert not torch.allclose(output.loss, stale)  # with the keys enqueued first, each key would be its own negative


def test_evaluation_forwards_do_not_enqueue():
    torch.manual_seed(0)
    model = tiny_moco_v2()
    queue, pointer = model.queue.clone(), model.queue_pointer.clone()
    model.eval()
    assert model(views=random_views()).loss is not None
    model.train()
    assert model(views=random_views(), return_loss=False).loss is None
    assert torch.equal(model.queue, queue) and torch.equal(model.queue_pointer, pointer)
    model(views=random_views())
    assert model.queue_pointer.item() == 12 % 10 and not torch.equal(model.queue, queue)


def _sequential_queue(queue, pointer, batches):
    """A hand loop: each key in turn overwrites the oldest slot."""
    queue = queue.clone()
    for keys in batches:
        for key in keys:
            queue[pointer] = key
            pointer = (pointer + 1) % queue.shape[0]
    return queue, pointer


def test_the_queue_wraps_around_any_queue_size_and_skips_non_finite_keys():
    torch.manual_seed(0)
    model = tiny_moco_v2(queue_size=5)
    initial = model.queue.clone()
    generator = torch.Generator().manual_seed(1)
    # 4 keys a step into 5 slots (not a multiple), then a step of 12 keys (more than the queue)
    batches = [F.normalize(torch.randn(n, 8, generator=generator), dim=1) for n in (4, 4, 12)]
    for step, keys in enumerate(batches, 1):
        model._dequeue_and_enqueue(keys)  # keys arrive as [k1; k2]; at world size 1 they are enqueued in order
        expected, pointer = _sequential_queue(initial, 0, batches[:step])
        torch.testing.assert_close(model.queue, expected, rtol=0, atol=0)
        assert model.queue_pointer.item() == pointer
    keys = F.normalize(torch.randn(2, 8, generator=generator), dim=1)
    keys[1, 0] = float("nan")
    held = model.queue.clone()
    model._dequeue_and_enqueue(keys)
    slot = model.queue_pointer.item() - 1
    assert torch.equal(model.queue[slot], held[slot]) and torch.isfinite(model.queue).all()
    assert torch.equal(model.queue[slot - 1], keys[0])


def test_a_queue_longer_than_an_epoch_is_warned_about_before_the_first_step(tmp_path, caplog):
    rows = datasets.Dataset.from_dict({"pixel_values": torch.zeros(14, 1, 8, 8, dtype=torch.uint8).tolist()})
    for queue_size, warned in ((30, True), (24, False)):  # 14 rows, batches of 6, the last dropped: 2 x 12 keys
        model = tiny_moco_v2(queue_size=queue_size)
        args = SSLTrainingArguments(
            output_dir=str(tmp_path / str(queue_size)), per_device_train_batch_size=6, max_steps=1, use_cpu=True,
            report_to="none", dataloader_drop_last=True,
        )  # fmt: skip
        trainer = SSLTrainer(model=model, args=args, train_dataset=rows)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="hfssl.models.moco_v2.modeling_moco_v2"):
            check_run_can_learn(trainer, model)
        messages = [r.getMessage() for r in caplog.records if "queue_size" in r.getMessage()]
        assert len(messages) == (1 if warned else 0), messages
        if warned:
            assert "30 is larger than the 24 keys one epoch enqueues (2 views x 12 images)" in messages[0]


# ---- momentum encoders: schedule and EMA --------------------------------------------------------


def test_moco_v3_momentum_follows_the_cosine_formula_and_moco_v2s_is_constant():
    torch.manual_seed(0)
    model = tiny_moco_v3()
    total = 10
    for k in (0, 1, 3, 5, 9, 10, 12):
        m = 1 - (1 - 0.99) * (math.cos(math.pi * min(k, total) / total) + 1) / 2
        assert model.target_momentum(k, total) == pytest.approx(m, abs=1e-12)
        model.on_train_start(TrainingProgress(k, total))
        assert model.momentum == pytest.approx(m, abs=1e-12)
    v3, v2 = model, tiny_moco_v2(momentum=0.9)
    for model, progress in ((v3, TrainingProgress(3, total)), (v2, TrainingProgress(0, total))):
        model.on_train_start(progress)
        m = model.momentum
        assert m == pytest.approx(0.9 if model is v2 else cosine_schedule(3, total, 0.99, 1.0))
        with torch.no_grad():  # an optimizer step moves the online encoder
            for parameter in model.parameters():
                if parameter.requires_grad:
                    parameter.add_(torch.randn_like(parameter) * 0.1)
        before = {name: p.clone() for name, p in model.named_parameters() if name.startswith("teacher_")}
        online = dict(model.named_parameters())
        model.after_optimizer_step(TrainingProgress(progress.step + 1, total))
        for name, parameter in model.named_parameters():
            if name.startswith("teacher_"):
                source = online[name.removeprefix("teacher_")]
                torch.testing.assert_close(parameter, m * before[name] + (1 - m) * source, rtol=0, atol=1e-6)
    assert v3.momentum == pytest.approx(v3.target_momentum(4, total)) and v2.momentum == 0.9  # the next step's m


def test_a_fresh_run_starts_the_momentum_encoder_from_the_online_one():
    torch.manual_seed(0)
    for model in (tiny_moco_v2(), tiny_moco_v3()):
        with torch.no_grad():
            model.backbone.embedder.embedder.convolution.weight.add_(1.0)  # as loading a --backbone checkpoint does
        model.on_train_start(TrainingProgress(0, 5))
        online = model.backbone.state_dict()
        for name, value in model.teacher_backbone.state_dict().items():
            torch.testing.assert_close(value, online[name], rtol=0, atol=0, msg=name)


# ---- under the trainer ---------------------------------------------------------------------------


def _trainer(method, output_dir, model_overrides=None, **overrides):
    torch.manual_seed(0)
    build = tiny_moco_v2 if method == "moco_v2" else tiny_moco_v3
    model = build(**{**(dict(queue_size=24, momentum=0.9) if method == "moco_v2" else dict(base_momentum=0.9))})
    return SSLTrainer(
        model=model,
        args=short_run_arguments(output_dir, **overrides),
        train_dataset=random_image_rows(),
        data_collator=collate_pixels,
        batch_transform=hfssl.METHODS[method].batch_transform(model, None),
    )


class SnapshotOnline(TrainerCallback):
    """The online backbone and projector after every optimizer step (for the hand-computed EMA)."""

    def __init__(self):
        self.snapshots = []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        online = ("backbone.", "projection_head.")
        self.snapshots.append({n: p.detach().clone() for n, p in model.named_parameters() if n.startswith(online)})


@pytest.mark.parametrize(("method", "accumulation"), [("moco_v3", 1), ("moco_v3", 2), ("moco_v2", 2)])
def test_the_momentum_encoder_after_n_steps_equals_a_hand_loop(tmp_path, method, accumulation):
    trainer = _trainer(
        method, tmp_path, per_device_train_batch_size=8 // accumulation, gradient_accumulation_steps=accumulation
    )
    model = trainer.model
    teacher = {n.removeprefix("teacher_"): p.detach().clone() for n, p in model.named_parameters() if "teacher_" in n}
    snapshots = SnapshotOnline()
    trainer.add_callback(snapshots)
    trainer.train()
    assert len(snapshots.snapshots) == 5  # one EMA update per optimizer step, not per micro-batch
    for step, online in enumerate(snapshots.snapshots):  # t_k = m_{k-1} t_{k-1} + (1 - m_{k-1}) s_k
        m = 0.9 if method == "moco_v2" else cosine_schedule(step, 5, 0.9, 1.0)
        teacher = {name: m * teacher[name] + (1 - m) * online[name] for name in teacher}
    for name, parameter in model.named_parameters():
        if name.startswith("teacher_"):
            torch.testing.assert_close(parameter, teacher[name.removeprefix("teacher_")], rtol=0, atol=1e-6)
    if method == "moco_v2":  # every micro-batch's 2 x 4 keys were enqueued: 5 steps x 2 micro-batches x 8 keys
        assert model.queue_pointer.item() == (5 * 2 * 8) % 24
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 5 and all("embedding_std" in e and "feature_rank" in e for e in logs)


def test_resumed_moco_v2_run_equals_the_uninterrupted_one_key_encoder_and_queue_included(tmp_path):
    straight = _trainer("moco_v2", tmp_path / "straight")
    initial_queue = straight.model.queue.clone()
    straight.train()
    assert not torch.equal(straight.model.queue, initial_queue)
    assert straight.model.queue_pointer.item() == (5 * 16) % 24  # 80 keys into 24 slots: wrapped three times

    interrupted = _trainer("moco_v2", tmp_path / "interrupted", save_strategy="steps", save_steps=2)
    interrupted.add_callback(stop_after(2))
    interrupted.train()
    checkpoint = str(tmp_path / "interrupted" / "checkpoint-2")
    resumed = _trainer(
        "moco_v2", tmp_path / "interrupted", save_strategy="steps", save_steps=2, resume_from_checkpoint=checkpoint
    )
    resumed.train(resume_from_checkpoint=checkpoint)
    expected = straight.model.state_dict()
    assert {"queue", "queue_pointer"} <= set(expected) and any(k.startswith("teacher_backbone.") for k in expected)
    for name, value in resumed.model.state_dict().items():  # query and key encoders, queue and its pointer
        torch.testing.assert_close(value, expected[name], rtol=0, atol=1e-6, msg=name)
    config = json.loads((tmp_path / "interrupted" / "checkpoint-2" / "config.json").read_text())
    assert config["model_type"] == "hfssl_moco_v2"


# ---- configs, registration, save, load, export ---------------------------------------------------


def test_moco_v3_keeps_a_vits_random_patch_projection_fixed_also_after_loading(tmp_path):
    torch.manual_seed(0)
    model = tiny_moco_v3(backbone_config=tiny_vit_config(image_size=8, num_channels=1)).train()
    projection = model.backbone.embeddings.patch_embeddings.projection
    before = {name: value.clone() for name, value in model.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model(views=random_views()).loss.backward()
    assert projection.weight.grad is None and projection.bias.grad is None
    optimizer.step()
    after = model.state_dict()
    fixed = "backbone.embeddings.patch_embeddings.projection.weight"
    assert torch.equal(after[fixed], before[fixed])  # the random projection is kept
    assert not torch.equal(after["backbone.embeddings.cls_token"], before["backbone.embeddings.cls_token"])
    model.save_pretrained(tmp_path / "v3")
    restored = AutoModel.from_pretrained(tmp_path / "v3")  # loading makes parameters trainable: frozen again
    frozen = {name for name, parameter in restored.named_parameters() if not parameter.requires_grad}
    assert "backbone.embeddings.patch_embeddings.projection.weight" in frozen
    assert all(name.startswith("teacher_") or "patch_embeddings" in name for name in frozen)
    assert any(name.startswith("teacher_") for name in frozen)
    trained = tiny_moco_v3(
        backbone_config=tiny_vit_config(image_size=8, num_channels=1), freeze_patch_projection=False
    )
    assert trained.backbone.embeddings.patch_embeddings.projection.weight.requires_grad
    assert all(p.requires_grad for p in tiny_moco_v3().backbone.parameters())  # a ResNet has no patch projection


def test_configs_have_the_papers_defaults_and_validate_their_ranges():
    v2, v3 = hfssl.MoCoV2Config(), hfssl.MoCoV3Config()
    assert (v2.projection_hidden_dim, v2.projection_dim, v2.queue_size, v2.momentum, v2.tau) == (
        2048, 128, 65536, 0.999, 0.2,
    )  # fmt: skip
    assert (v2.min_crop_scale, v2.export_teacher) == (0.2, False)
    assert (v3.projection_hidden_dim, v3.projection_dim, v3.projection_num_layers, v3.prediction_hidden_dim) == (
        4096, 256, 3, 4096,
    )  # fmt: skip
    assert (v3.prediction_last_batch_norm, v3.tau, v3.base_momentum, v3.final_momentum) == (True, 0.2, 0.99, 1.0)
    assert (v3.min_crop_scale, v3.export_teacher) == (0.08, False)
    v2_head = tiny_moco_v2().projection_head  # MoCo v2's MLP: Linear -> ReLU -> Linear, biases, no BatchNorm
    assert [type(m).__name__ for m in v2_head] == ["Linear", "ReLU", "Linear"] and v2_head[0].bias is not None
    v3_model = tiny_moco_v3()
    for head in (v3_model.projection_head, v3_model.prediction_head):  # BatchNorm without affine at the output
        last = head.layers[-1]
        assert isinstance(last, torch.nn.BatchNorm1d) and not last.affine
    assert len([m for m in v3_model.projection_head.layers if isinstance(m, torch.nn.Linear)]) == 3
    assert len([m for m in v3_model.prediction_head.layers if isinstance(m, torch.nn.Linear)]) == 2
    backbone = tiny_resnet_config()
    for bad, match in (
        (dict(queue_size=0), "queue_size"),
        (dict(queue_size=10.5), "queue_size"),
        (dict(momentum=1.5), r"momentum must be in \[0, 1\]"),
        (dict(tau=0.0), "tau"),
        (dict(projection_dim=0), "projection_dim"),
        (dict(projection_hidden_dim=True), "projection_hidden_dim"),
        (dict(min_crop_scale=0.0), "min_crop_scale"),
        (dict(export_teacher="yes"), "export_teacher"),
    ):
        with pytest.raises(ValueError, match=match):
            hfssl.MoCoV2Config(backbone_config=backbone, **bad)
    for bad, match in (
        (dict(base_momentum=-0.1), "base_momentum"),
        (dict(final_momentum=0.9), "final_momentum must be >= base_momentum"),
        (dict(tau=-1.0), "tau"),
        (dict(projection_num_layers=0), "projection_num_layers"),
        (dict(prediction_hidden_dim=0), "prediction_hidden_dim"),
        (dict(prediction_last_batch_norm="no"), "prediction_last_batch_norm"),
        (dict(min_crop_scale=1.5), "min_crop_scale"),
        (dict(export_teacher=2), "export_teacher"),
    ):
        with pytest.raises(ValueError, match=match):
            hfssl.MoCoV3Config(backbone_config=backbone, **bad)
    with pytest.raises(ValueError, match="queue_size"):  # overrides are checked too
        hfssl.MoCoV2Config.from_dict(hfssl.MoCoV2Config().to_dict(), queue_size=-1)


def test_methods_are_registered_with_their_view_recipes():
    assert {"moco_v2", "moco_v3"} <= set(hfssl.methods_of("image"))
    images = {"pixel_values": torch.randint(0, 256, (3, 1, 12, 12), dtype=torch.uint8)}
    for name, model in (("moco_v2", tiny_moco_v2(min_crop_scale=0.3)), ("moco_v3", tiny_moco_v3(min_crop_scale=0.4))):
        assert isinstance(model, hfssl.METHODS[name].model_class)
        transform = hfssl.METHODS[name].batch_transform(model, None)
        views = transform(images)["views"]
        assert [tuple(v.shape) for v in views] == [(3, 1, 8, 8)] * 2
        assert all(r.crop_scale == (model.config.min_crop_scale, 1.0) for r in transform.view_generator.recipes)
    v2_recipes = hfssl.METHODS["moco_v2"].batch_transform(tiny_moco_v2(image_size=64), None).view_generator.recipes
    assert [(r.blur_probability, r.solarize_probability, r.saturation) for r in v2_recipes] == [(0.5, 0.0, 0.4)] * 2
    v3_recipes = hfssl.METHODS["moco_v3"].batch_transform(tiny_moco_v3(image_size=64), None).view_generator.recipes
    assert [(r.blur_probability, r.solarize_probability) for r in v3_recipes] == [(1.0, 0.0), (0.1, 0.2)]  # BYOL's


def test_save_load_round_trip_and_exported_backbones_load_without_hfssl(tmp_path):
    torch.manual_seed(0)
    v2, v3 = tiny_moco_v2(), tiny_moco_v3()
    v2.train()
    v2(views=random_views(batch_size=2))  # queue and pointer move: 4 keys
    with torch.no_grad():  # the momentum encoders differ from the online ones, as after training
        for model in (v2, v3):
            for parameter in model.teacher_backbone.parameters():
                parameter.mul_(0.5)
    for name, model in (("moco_v2", v2), ("moco_v3", v3)):
        assert_save_load_round_trip(model, tmp_path / name)
    assert torch.equal(AutoModel.from_pretrained(tmp_path / "moco_v2").queue_pointer, torch.tensor(4))
    v2.export_backbone(tmp_path / "v2_query")
    v3.export_backbone(tmp_path / "v3_online")
    v2.config.export_teacher = True
    assert v2.exported_network == "teacher"
    v2.export_backbone(tmp_path / "v2_key")
    weights = "embedder.embedder.convolution.weight"
    assert not torch.equal(v2.backbone.state_dict()[weights], v2.teacher_backbone.state_dict()[weights])
    assert_backbones_load_without_hfssl(
        {"v2_query": v2.backbone, "v2_key": v2.teacher_backbone, "v3_online": v3.backbone},
        tmp_path,
        weights,
        "ResNetModel",
    )


# ---- 2 processes against 1 process on the concatenated batch -------------------------------------

LOCAL_BATCH = 3


def _vit_moco_v2():
    """MoCo v2 on a ViT (LayerNorm, no BatchNorm: every image's forward is its own), in float64."""
    torch.manual_seed(0)
    config = hfssl.MoCoV2Config(
        backbone_config=tiny_vit_config(image_size=8, num_channels=1), image_size=8, queue_size=10, **V2_HEADS
    )
    return hfssl.MoCoV2Model(config).double().train()


def _global_inputs():
    generator = torch.Generator().manual_seed(4)
    n = WORLD * LOCAL_BATCH
    steps = [[torch.randn(n, 1, 8, 8, generator=generator, dtype=torch.float64) for _ in range(2)] for _ in range(2)]
    embeddings = [torch.randn(n, 6, generator=generator, dtype=torch.float64) for _ in range(4)]  # q1, q2, k1, k2
    return steps, embeddings


def _moco_runs(rows: slice):
    """What one process computes on the images ``rows``: MoCo v2 over two steps (the second's loss sees the
    first's gathered keys in the queue), then MoCo v3's loss on fixed embeddings."""
    steps, embeddings = _global_inputs()
    model = _vit_moco_v2()
    model(views=[view[rows] for view in steps[0]])  # step 1 enqueues 2 x 6 global keys into 10 slots
    loss = model(views=[view[rows] for view in steps[1]]).loss  # step 2: the queue holds step 1's keys
    loss.backward()
    q1, q2, k1, k2 = (e[rows].clone().requires_grad_(True) for e in embeddings)
    v3_loss = moco_v3_loss(q1, q2, k1, k2, tau=0.2)
    v3_loss.backward()
    return {
        "v2_loss": loss.detach(),
        "v2_grads": {n: p.grad for n, p in model.named_parameters() if p.grad is not None},
        "v2_queue": model.queue.clone(),
        "v2_pointer": model.queue_pointer.clone(),
        "v3_loss": v3_loss.detach(),
        "v3_grads": [q1.grad, q2.grad],
        "v3_key_grads": [k1.grad, k2.grad],
    }


def _ddp_queue_run(rank: int) -> dict:
    """Under DDP (which broadcasts process 0's buffers before every forward by default), process 1 starts from a
    queue of its own: the forward leaves it (the queue is not broadcast), the train-start synchronisation replaces it
    by process 0's."""
    steps, _ = _global_inputs()
    model = _vit_moco_v2()
    if rank == 1:
        model.queue.fill_(7.0)
    ddp = torch.nn.parallel.DistributedDataParallel(model)  # broadcast_buffers=True, accelerate's default
    ddp(views=[view[rank : rank + 1] for view in steps[0]])  # enqueues 2 x 2 gathered keys into 10 slots
    after_forward = model.queue.clone()
    model.synchronize_replicated_buffers()
    return {"ddp_queue_after_forward": after_forward, "ddp_queue_synchronized": model.queue.clone()}


def _moco_worker(rank: int, port: int, result_path: str):
    torch.set_num_threads(1)
    init_gloo(rank, port)
    try:
        result = _moco_runs(slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH))
        result["world"] = dist.get_world_size()
        result.update(_ddp_queue_run(rank))
        torch.save(result, f"{result_path}.{rank}")
    finally:
        dist.destroy_process_group()


def test_two_processes_equal_one_on_the_concatenated_batch(tmp_path):
    result_path = str(tmp_path / "moco")
    spawn_processes(_moco_worker, (free_port(), result_path))
    results = [torch.load(f"{result_path}.{rank}", weights_only=True) for rank in range(WORLD)]
    single = _moco_runs(slice(None))
    assert all(r["world"] == WORLD for r in results)
    # DDP averages the per-process losses and gradients: they must average to the single process's
    for key in ("v2_loss", "v3_loss"):
        assert abs(sum(r[key] for r in results).item() / WORLD - single[key].item()) < 1e-10, key
    for name, grad in single["v2_grads"].items():
        averaged = sum(r["v2_grads"][name] for r in results) / WORLD
        torch.testing.assert_close(averaged, grad, rtol=1e-7, atol=1e-10, msg=name)
    assert len(single["v2_grads"]) > 10 and not any(name.startswith("teacher_") for name in single["v2_grads"])
    # MoCo v3: each process's query gradient is its own rows' share; DDP's 1 / P makes it the global one
    for view in range(2):
        averaged = torch.cat([r["v3_grads"][view] for r in results]) / WORLD
        torch.testing.assert_close(averaged, single["v3_grads"][view], rtol=1e-7, atol=1e-10)
        assert single["v3_grads"][view].abs().sum() > 0 and all(r["v3_key_grads"][view] is None for r in results)
    # DDP does not broadcast the queue at each forward; the train-start synchronisation makes it process 0's
    first, second = (r["ddp_queue_after_forward"] for r in results)
    assert torch.all(second[4:] == 7.0) and not torch.any(first == 7.0)  # 4 keys enqueued, the rest process 1's own
    torch.testing.assert_close(first[:4], second[:4], rtol=0, atol=0)  # the same gathered keys on both
    for r in results:
        torch.testing.assert_close(r["ddp_queue_synchronized"], first, rtol=0, atol=0)
    assert hfssl.MoCoV2Model.replicated_buffers == ("queue", "queue_pointer")
    # every process holds the queue one process has on the concatenated batch
    for r in results:
        torch.testing.assert_close(r["v2_queue"], single["v2_queue"], rtol=0, atol=1e-12)
        assert r["v2_pointer"].item() == single["v2_pointer"].item() == (2 * 12) % 10
