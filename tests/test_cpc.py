"""Contrastive predictive coding: the patch grid and which patch each prediction's positive is, the context sees
no row below its own, InfoNCE by hand, 2 processes against 1, the config, gradients, save/load and export,
resume, and a short Fashion-MNIST run that beats random init."""

import math
import sys

import pytest
import torch
import torch.nn.functional as F
from conftest import (
    REPO_ROOT,
    WORLD,
    assert_backbones_load_without_hfssl,
    assert_save_load_round_trip,
    free_port,
    init_gloo,
    random_image_rows,
    require_full_data,
    short_run_arguments,
    spawn_processes,
    stop_after,
    tiny_resnet_config,
    tiny_vit_config,
)

import hfssl
from hfssl import CPCConfig, CPCModel
from hfssl.augment import EvalTransform
from hfssl.losses import cpc_info_nce
from hfssl.models.cpc.modeling_cpc import ContextNetwork
from hfssl.pretext import cpc_positive_indices, overlapping_patches, patch_grid_geometry
from hfssl.training import SSLTrainer

sys.path.insert(0, str(REPO_ROOT / "recipes"))
import pretrain_vision  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_cpc(backbone=None, image_size=16, **overrides):
    settings = dict(grid_size=3, prediction_steps=2, context_dim=8, **overrides)
    config = CPCConfig(
        backbone_config=backbone or tiny_resnet_config(num_channels=1), image_size=image_size, **settings
    )
    return CPCModel(config)


def coordinate_images(batch: int, side: int) -> torch.Tensor:
    values = (torch.arange(side * side, dtype=torch.float32) + 1) / (side * side + 1)
    return values.view(1, 1, side, side).expand(batch, 1, side, side).clone()


def position_of(value: torch.Tensor, side: int) -> tuple[int, int]:
    return divmod(round(value.item() * (side * side + 1)) - 1, side)


def test_the_grid_overlaps_by_half_in_reading_order():
    assert patch_grid_geometry(256, 7) == (64, 32)  # the papers' grid
    assert patch_grid_geometry(32, 7) == (8, 4)
    side, grid = 32, 7
    patches = overlapping_patches(coordinate_images(2, side), grid)
    assert patches.shape == (2, 49, 1, 8, 8)
    for index in range(49):
        i, j = divmod(index, grid)
        assert position_of(patches[1, index, 0, 0, 0], side) == (4 * i, 4 * j)
        assert position_of(patches[1, index, 0, -1, -1], side) == (4 * i + 7, 4 * j + 7)


@pytest.mark.parametrize("steps", [1, 2, 5])
def test_each_positive_index_points_at_the_patch_steps_rows_below(steps):
    side, grid, batch = 32, 7, 3
    patches = overlapping_patches(coordinate_images(batch, side), grid).flatten(0, 1)  # (B * 49, 1, 8, 8)
    positives = cpc_positive_indices(batch, grid, steps)
    assert positives.shape == (batch * (grid - steps) * grid,)
    sources = [(b, i, j) for b in range(batch) for i in range(grid - steps) for j in range(grid)]
    for (b, i, j), positive in zip(sources, positives.tolist()):
        assert positive // (grid * grid) == b  # the same image
        source_row, source_column = position_of(patches[b * 49 + i * grid + j, 0, 0, 0], side)
        row, column = position_of(patches[positive, 0, 0, 0], side)
        assert (row - source_row, column - source_column) == (4 * steps, 0)


def test_the_context_at_a_row_never_sees_the_rows_below():
    torch.manual_seed(0)
    context = ContextNetwork(4, 6, layers=3, kernel_size=3)
    z = torch.randn(2, 4, 7, 7, requires_grad=True)
    out = context(z)
    assert out.shape == (2, 6, 7, 7)
    for row in range(7):
        (gradient,) = torch.autograd.grad(out[:, :, row].sum(), z, retain_graph=True)
        assert gradient[:, :, row + 1 :].abs().sum() == 0  # rows below: no influence
        assert gradient[:, :, row].abs().sum() > 0  # its own row: seen
    (gradient,) = torch.autograd.grad(out[:, :, 6].sum(), z)
    assert gradient[:, :, 0].abs().sum() > 0  # three layers of 3 rows reach 6 rows up


def test_cpc_info_nce_by_hand():
    predictions = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    keys = torch.tensor([[1.0, 1.0], [2.0, 0.0], [0.0, -1.0]])
    loss, accuracy = cpc_info_nce(predictions, torch.tensor([1, 0]), keys)
    first = -(2.0 - math.log(math.exp(1) + math.exp(2) + math.exp(0)))  # scores 1, 2, 0; the positive 2
    second = -(2.0 - math.log(math.exp(2) + math.exp(0) + math.exp(-2)))  # scores 2, 0, -2; the positive 2
    assert loss.item() == pytest.approx((first + second) / 2, rel=1e-6)
    assert accuracy.item() == 1.0
    with pytest.raises(ValueError, match="cpc_info_nce"):
        cpc_info_nce(predictions, torch.tensor([0, 1]), torch.zeros(3, 5))


def test_the_loss_is_the_mean_over_steps_of_each_steps_info_nce():
    torch.manual_seed(0)
    model = tiny_cpc()
    batch = hfssl.METHODS["cpc"].batch_transform(model, None)(
        {"pixel_values": torch.randint(0, 256, (4, 1, 18, 18), dtype=torch.uint8)}
    )
    output = model(**batch)
    z = output.features
    z_grid = z.reshape(4, 3, 3, -1).permute(0, 3, 1, 2)
    context = model.context_network(z_grid)
    losses = []
    for step, predictor in enumerate(model.predictors, start=1):
        predictions = predictor(context[:, :, : 3 - step].permute(0, 2, 3, 1).reshape(-1, context.shape[1]))
        losses.append(F.cross_entropy(predictions @ z.T, cpc_positive_indices(4, 3, step)))
    assert output.loss.item() == pytest.approx(sum(losses).item() / 2, rel=1e-5)
    output.loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_image_features_are_the_grids_pooled_patch_encodings():
    model = tiny_cpc().eval()
    images = torch.randn(2, 1, 16, 16)
    patches = overlapping_patches(images, 3)  # (2, 9, 1, 8, 8)
    expected = model.patch_features(patches.flatten(0, 1)).reshape(2, 9, -1).mean(dim=1)
    torch.testing.assert_close(model.get_image_features(images), expected, rtol=1e-6, atol=1e-6)
    output = model(pixel_values=patches, return_loss=False)
    torch.testing.assert_close(output.features.reshape(2, 9, -1).mean(dim=1), expected, rtol=1e-6, atol=1e-6)


def test_config_defaults_and_ranges():
    config = CPCConfig()
    assert (config.grid_size, config.prediction_steps, config.context_dim) == (7, 5, None)
    for bad in (
        dict(grid_size=1),
        dict(grid_size=4, prediction_steps=4),
        dict(prediction_steps=0),
        dict(context_kernel_size=2),
        dict(context_dim=0),
        dict(min_crop_scale=0),
    ):
        with pytest.raises(ValueError, match="CPCConfig"):
            CPCConfig(backbone_config=tiny_resnet_config(num_channels=1), image_size=64, **bad)
    with pytest.raises(ValueError, match="--image_size \\(at least 32\\)"):  # 8 x (8 // 2): patches of one ViT patch
        CPCConfig(backbone_config={**tiny_vit_config(24, 1), "patch_size": 8}, image_size=24)


def test_save_load_round_trip_and_the_exported_backbone_loads_without_hfssl(tmp_path):
    model = tiny_cpc()
    assert_save_load_round_trip(model, tmp_path / "cpc")
    model.export_backbone(tmp_path / "backbone")
    assert_backbones_load_without_hfssl(
        {"backbone": model.backbone}, tmp_path, "embedder.embedder.convolution.weight", "ResNetModel"
    )


def _two_process_worker(rank: int, port: int, result_path: str):
    torch.set_num_threads(1)
    init_gloo(rank, port)
    torch.manual_seed(0)
    model = tiny_cpc(tiny_vit_config(16, 1))  # LayerNorm: no per-process batch statistics
    transform = hfssl.METHODS["cpc"].batch_transform(model, None)
    images = torch.randint(0, 256, (8, 1, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    torch.manual_seed(1)
    output = model(**transform({"pixel_values": images[4 * rank : 4 * rank + 4]}))
    output.loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    torch.save({"loss": output.loss.detach(), "grads": grads}, f"{result_path}.{rank}")


def test_two_processes_give_the_single_process_loss_and_gradients(tmp_path):
    spawn_processes(_two_process_worker, (free_port(), str(tmp_path / "result")))
    results = [torch.load(f"{tmp_path / 'result'}.{rank}", weights_only=True) for rank in range(WORLD)]
    torch.manual_seed(0)
    model = tiny_cpc(tiny_vit_config(16, 1))
    transform = hfssl.METHODS["cpc"].batch_transform(model, None)
    images = torch.randint(0, 256, (8, 1, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    torch.manual_seed(1)
    output = model(**transform({"pixel_values": images}))
    output.loss.backward()
    # each process scores its predictions against all 8 images' patches: the negatives of the concatenated batch
    assert abs(sum(r["loss"] for r in results).item() / WORLD - output.loss.item()) < 1e-5
    for name, parameter in model.named_parameters():
        averaged = sum(r["grads"][name] for r in results) / WORLD
        torch.testing.assert_close(averaged, parameter.grad, rtol=1e-4, atol=1e-6, msg=name)


def _cpc_trainer(output_dir, **overrides):
    torch.manual_seed(0)
    model = tiny_cpc()
    rows = random_image_rows(count=48, size=18, channels=1)
    return SSLTrainer(
        model=model,
        args=short_run_arguments(output_dir, **overrides),
        train_dataset=rows,
        data_collator=lambda examples: {
            "pixel_values": torch.stack([torch.as_tensor(e["pixel_values"]) for e in examples])
        },
        batch_transform=hfssl.METHODS["cpc"].batch_transform(model, None),
        feature_transform=EvalTransform(16, 1),
    )


def test_a_resumed_run_equals_the_uninterrupted_one(tmp_path):
    straight = _cpc_trainer(tmp_path / "straight", logging_steps=1)
    straight.train()
    assert all("pretext_accuracy" in entry for entry in straight.state.log_history if "loss" in entry)
    interrupted = _cpc_trainer(tmp_path / "interrupted", save_strategy="steps", save_steps=2)
    interrupted.add_callback(stop_after(2))
    interrupted.train()
    checkpoint = str(tmp_path / "interrupted" / "checkpoint-2")
    resumed = _cpc_trainer(
        tmp_path / "interrupted", save_strategy="steps", save_steps=2, resume_from_checkpoint=checkpoint
    )
    resumed.train(resume_from_checkpoint=checkpoint)
    expected = straight.model.state_dict()
    for name, value in resumed.model.state_dict().items():
        torch.testing.assert_close(value, expected[name], rtol=0, atol=1e-6, msg=name)


# 100 steps of 64 of 1,500 Fashion-MNIST training images at 24 px on resnet-tiny (a 5 x 5 grid of 8 px patches,
# 3 rows ahead), kNN on 500 test images (one image is 0.002), both models' features the grid's pooled patch
# encodings; the margin over random init measured on cpu-2, seeds 0/1/2: +0.086/+0.100/+0.086 (about 13 s a run).
REAL_RUN_MARGIN = 0.04


def test_a_short_fashion_mnist_run_beats_random_init(tmp_path):
    fashion = require_full_data("fashion-mnist", "1,500 training and 500 test images for a stable kNN margin")
    metrics = pretrain_vision.main([
        "--method", "cpc", "--idx_dir", str(fashion), "--max_train_samples", "1500", "--max_eval_samples", "500",
        "--backbone", "resnet-tiny", "--image_size", "24", "--config_overrides", "grid_size=5,prediction_steps=3",
        "--output_dir", str(tmp_path / "cpc"),
        "--per_device_train_batch_size", "64", "--max_steps", "100", "--learning_rate", "3e-3",
        "--warmup_steps", "0.05", "--save_strategy", "no", "--final_protocols", "knn", "--baselines", "true",
        "--per_device_eval_batch_size", "512", "--seed", "0", "--use_cpu", "--report_to", "none",
        "--disable_tqdm", "true", "--dataloader_num_workers", "0",
    ])  # fmt: skip
    print({key: value for key, value in metrics.items() if "knn" in key})
    assert metrics["knn_accuracy"] > metrics["random_init_knn_accuracy"] + REAL_RUN_MARGIN
