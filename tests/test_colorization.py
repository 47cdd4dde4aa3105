"""Colorization: Lab round trips, the ab bins cover the sRGB gamut, soft encoding and class rebalancing by hand, the
loss by hand, greyscale data refused, 2 processes against 1 (the bin counts are global), save/load and export, and
a short emoji run that beats random init and writes its picture."""

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
    collate_pixels,
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
from PIL import Image

import hfssl
from hfssl import ColorizationConfig, ColorizationModel
from hfssl.augment import EvalTransform
from hfssl.pretext import (
    AB_RANGE,
    annealed_mean,
    in_gamut_ab_bins,
    lab_to_rgb,
    rebalancing_weights,
    rgb_to_lab,
    soft_encode,
)
from hfssl.training import SSLTrainer

sys.path.insert(0, str(REPO_ROOT / "recipes"))
import pretrain_vision  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_colorizer(backbone=None, **overrides):
    config = ColorizationConfig(
        backbone_config=backbone or tiny_resnet_config(num_channels=1), image_size=16, decoder_channels=16, **overrides
    )
    return ColorizationModel(config)


def colour_batch(count=8, side=20, seed=0):
    return torch.randint(
        0, 256, (count, 3, side, side), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)
    )


# ---- Lab and the bins ----------------------------------------------------------------------------------------------


def test_lab_round_trips_and_has_the_reference_values():
    colours = torch.rand(1, 3, 50, 50, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(lab_to_rgb(rgb_to_lab(colours)), colours, rtol=0, atol=1e-4)
    white, red = torch.ones(1, 3, 1, 1), torch.tensor([1.0, 0, 0]).view(1, 3, 1, 1)
    torch.testing.assert_close(rgb_to_lab(white).flatten(), torch.tensor([100.0, 0, 0]), rtol=0, atol=0.01)
    torch.testing.assert_close(rgb_to_lab(red).flatten(), torch.tensor([53.24, 80.09, 67.20]), rtol=0, atol=0.05)


def test_the_ab_bins_are_on_the_grid_and_cover_the_srgb_gamut():
    bins = in_gamut_ab_bins(10.0)
    assert bins.shape == (261, 2) and len({tuple(b) for b in bins.tolist()}) == 261
    assert torch.all(bins.remainder(10) == 0) and bins.abs().max() <= AB_RANGE
    assert [0.0, 0.0] in bins.tolist()  # the greys
    colours = torch.rand(1, 3, 1, 100_000, generator=torch.Generator().manual_seed(1))  # not the cube's grid
    ab = rgb_to_lab(colours)[0, 1:, 0].T
    nearest = torch.cdist(ab, bins).min(dim=1).values
    assert nearest.max() <= 10 / math.sqrt(2) + 1e-3  # every colour within half a bin diagonal of a bin centre


def test_soft_encoding_by_hand():
    bins = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [50.0, 50.0]])
    target = soft_encode(torch.tensor([[2.0, 1.0]]), bins, neighbours=2, sigma=5.0)
    d = [math.hypot(2, 1), math.hypot(8, 1)]  # the two nearest: (0, 0) then (10, 0)
    w = [math.exp(-(x**2) / 50) for x in d]
    expected = torch.tensor([[w[0] / sum(w), w[1] / sum(w), 0.0, 0.0]])
    torch.testing.assert_close(target, expected, rtol=1e-5, atol=1e-7)


def test_class_rebalancing_by_hand_and_its_expectation_is_one():
    bins = torch.tensor([[0.0, 0.0], [100.0, 0.0]])  # far apart: the smoothing leaves each count alone
    counts = torch.tensor([3.0, 1.0])
    weights = rebalancing_weights(counts, bins, mix=0.5, sigma=5.0)
    raw = [1 / (0.5 * 0.75 + 0.25), 1 / (0.5 * 0.25 + 0.25)]
    scale = 0.75 * raw[0] + 0.25 * raw[1]
    torch.testing.assert_close(weights, torch.tensor([raw[0] / scale, raw[1] / scale]), rtol=1e-5, atol=0)
    assert weights[1] > weights[0]  # the rarer colour weighs more
    torch.testing.assert_close(rebalancing_weights(counts, bins, mix=1.0), torch.ones(2))  # lambda 1: no rebalancing
    torch.testing.assert_close(rebalancing_weights(torch.zeros(2), bins), torch.ones(2))  # nothing seen yet: uniform


def test_the_annealed_mean_sharpens_towards_the_mode():
    bins = torch.tensor([[0.0, 0.0], [20.0, -10.0]])
    logits = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1)
    mean = annealed_mean(logits, bins, temperature=1.0).flatten()
    p = 1 / (1 + math.exp(-1))
    torch.testing.assert_close(mean, torch.tensor([20 * (1 - p), -10 * (1 - p)]), rtol=1e-5, atol=1e-5)
    assert annealed_mean(logits, bins, temperature=0.38).flatten()[0] < mean[0]  # closer to the mode (0, 0)


# ---- the transform, the loss ---------------------------------------------------------------------------------------


def test_the_transform_gives_the_lightness_and_the_colour_it_removed():
    model = tiny_colorizer(min_crop_scale=1.0, flip_probability=0.0)  # no augmentation: the images as they are
    batch = hfssl.METHODS["colorization"].batch_transform(model, None)({"pixel_values": colour_batch(side=16)})
    assert batch["pixel_values"].shape == (8, 1, 16, 16) and batch["ab"].shape == (8, 2, 16, 16)
    lab = torch.cat([(batch["pixel_values"] * 0.5 + 0.5) * 100, batch["ab"]], dim=1)  # the 1-channel 0.5 / 0.5
    torch.testing.assert_close(lab_to_rgb(lab), colour_batch(side=16).float() / 255, rtol=0, atol=2e-3)


def test_greyscale_batches_and_data_are_refused_with_the_fix(tmp_path):
    model = tiny_colorizer()
    with pytest.raises(ValueError, match="colour .RGB. images"):
        hfssl.METHODS["colorization"].batch_transform(model, None)({"pixel_values": colour_batch()[:, :1]})
    with pytest.raises(ValueError, match="greyscale .* no colour to predict.*emoji-captions"):
        pretrain_vision.main(
            ["--method", "colorization", "--dataset_name", "builtin:digits", "--output_dir", "/tmp/x"]
        )


def test_the_backbone_must_read_one_channel():
    with pytest.raises(ValueError, match="num_channels=1"):
        ColorizationConfig(backbone_config=tiny_resnet_config(num_channels=3))
    for bad in (dict(objective="l1"), dict(ab_bin_size=1), dict(rebalancing_mix=2), dict(soft_encoding_sigma=0)):
        with pytest.raises(ValueError, match="ColorizationConfig"):
            ColorizationConfig(backbone_config=tiny_resnet_config(num_channels=1), **bad)


def test_the_classification_loss_by_hand_and_the_counts_grow_in_training_only():
    model = tiny_colorizer(soft_encoding_neighbours=1)
    bins = model.ab_bins
    logits = torch.randn(1, len(bins), 1, 2, generator=torch.Generator().manual_seed(0))
    ab = torch.stack([bins[5], bins[40]]).T.reshape(1, 2, 1, 2)  # two pixels exactly on bins 5 and 40
    model.train()
    loss = model.loss(logits, ab)
    counts = torch.zeros(len(bins), dtype=torch.float64)
    counts[[5, 40]] = 1
    assert torch.equal(model.bin_counts, counts)
    weights = rebalancing_weights(counts, bins)
    log_p = F.log_softmax(logits[0, :, 0].T, dim=1)  # (2 pixels, Q)
    expected = -(weights[5] * log_p[0, 5] + weights[40] * log_p[1, 40]) / 2
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    model.eval()
    model.loss(logits, ab)
    assert torch.equal(model.bin_counts, counts)  # evaluation does not count


def test_the_regression_objective_is_the_squared_error_on_scaled_ab():
    model = tiny_colorizer(objective="regression")
    logits = torch.tensor([[[[0.5]], [[-0.25]]]])
    ab = torch.tensor([[[[33.0]], [[-11.0]]]])
    expected = ((0.5 - 0.3) ** 2 + (-0.25 + 0.1) ** 2) / 2
    assert model.loss(logits, ab).item() == pytest.approx(expected, rel=1e-5)


def test_every_part_gets_a_gradient_and_the_prediction_is_at_a_quarter_of_the_side():
    model = tiny_colorizer()
    batch = hfssl.METHODS["colorization"].batch_transform(model, None)({"pixel_values": colour_batch()})
    output = model(**batch)
    assert output.logits.shape == (8, 261, 4, 4) and output.features.shape == (8, model.feature_dim)
    output.loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def _two_process_worker(rank: int, port: int, result_path: str):
    torch.set_num_threads(1)
    init_gloo(rank, port)
    torch.manual_seed(0)
    model = tiny_colorizer(tiny_vit_config(16, 1)).train()  # LayerNorm: no per-process batch statistics
    transform = hfssl.METHODS["colorization"].batch_transform(model, None)
    torch.manual_seed(1)
    batch = transform({"pixel_values": colour_batch(count=4, seed=10 + rank)})
    loss = model(**batch).loss
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    torch.save({"loss": loss.detach(), "grads": grads, "counts": model.bin_counts}, f"{result_path}.{rank}")


def test_two_processes_count_the_global_batch_and_give_the_single_process_loss_and_gradients(tmp_path):
    spawn_processes(_two_process_worker, (free_port(), str(tmp_path / "result")))
    results = [torch.load(f"{tmp_path / 'result'}.{rank}", weights_only=True) for rank in range(WORLD)]
    torch.manual_seed(0)
    model = tiny_colorizer(tiny_vit_config(16, 1)).train()
    transform = hfssl.METHODS["colorization"].batch_transform(model, None)
    torch.manual_seed(1)
    images = torch.cat([colour_batch(count=4, seed=10 + rank) for rank in range(WORLD)])
    batch = transform({"pixel_values": images})
    output = model(**batch)
    output.loss.backward()
    for result in results:
        assert torch.equal(result["counts"], model.bin_counts)  # every process counts the global batch
    assert abs(sum(r["loss"] for r in results).item() / WORLD - output.loss.item()) < 1e-5
    for name, parameter in model.named_parameters():
        averaged = sum(r["grads"][name] for r in results) / WORLD
        torch.testing.assert_close(averaged, parameter.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_save_load_round_trip_keeps_the_counts_and_the_backbone_exports(tmp_path):
    model = tiny_colorizer().train()
    model(**hfssl.METHODS["colorization"].batch_transform(model, None)({"pixel_values": colour_batch()}))
    assert model.bin_counts.sum() == 8 * 16  # 8 images of 4 x 4 predicted pixels
    restored = assert_save_load_round_trip(model, tmp_path / "colorization")
    assert torch.equal(restored.bin_counts, model.bin_counts)
    model.export_backbone(tmp_path / "backbone")
    assert_backbones_load_without_hfssl(
        {"backbone": model.backbone}, tmp_path, "embedder.embedder.convolution.weight", "ResNetModel"
    )


# ---- a short real run ----------------------------------------------------------------------------------------------


def test_a_short_emoji_run_beats_random_init_and_draws_its_colourisations(tmp_path):
    emoji = require_full_data("emoji-captions", "3,655 colour images")
    output = tmp_path / "colorization"
    metrics = pretrain_vision.main([
        "--method", "colorization", "--train_dir", str(emoji), "--label_column_name", "group",
        "--backbone", "resnet-tiny", "--image_size", "32", "--output_dir", str(output),
        "--per_device_train_batch_size", "64", "--max_steps", "60", "--learning_rate", "3e-3", "--save_strategy", "no",
        "--final_protocols", "knn", "--baselines", "true", "--seed", "0", "--use_cpu", "--report_to", "none",
        "--disable_tqdm", "true", "--dataloader_num_workers", "0",
    ])  # fmt: skip
    print({key: value for key, value in metrics.items() if "knn" in key})
    assert metrics["knn_accuracy"] > metrics["random_init_knn_accuracy"] + REAL_RUN_MARGIN
    with Image.open(output / "colorizations.png") as picture:
        assert picture.size[0] > picture.size[1] > 0
    card = (output / "README.md").read_text()
    assert "colorizations.png" in card and "Colorful Image Colorization" in card


# 60 steps of 64 emoji at 32 px on resnet-tiny, kNN over the 9 groups on the 366 held-out images (one image is
# 0.0027); the margin over random init measured on cpu-2, seeds 0/1/2: +0.079/+0.046/+0.041.
REAL_RUN_MARGIN = 0.015


def _colorization_trainer(output_dir, **overrides):
    torch.manual_seed(0)
    model = tiny_colorizer()
    rows = random_image_rows(count=48, size=18, channels=3)
    return SSLTrainer(
        model=model,
        args=short_run_arguments(output_dir, **overrides),
        train_dataset=rows,
        data_collator=collate_pixels,
        batch_transform=hfssl.METHODS["colorization"].batch_transform(model, None),
        feature_transform=EvalTransform(16, 1),
    )


def test_a_resumed_run_equals_the_uninterrupted_one_bin_counts_included(tmp_path):
    straight = _colorization_trainer(tmp_path / "straight")
    straight.train()
    interrupted = _colorization_trainer(tmp_path / "interrupted", save_strategy="steps", save_steps=2)
    interrupted.add_callback(stop_after(2))
    interrupted.train()
    checkpoint = str(tmp_path / "interrupted" / "checkpoint-2")
    resumed = _colorization_trainer(
        tmp_path / "interrupted", save_strategy="steps", save_steps=2, resume_from_checkpoint=checkpoint
    )
    resumed.train(resume_from_checkpoint=checkpoint)  # crops, flips and counts after the checkpoint as before
    expected = straight.model.state_dict()
    assert expected["bin_counts"].sum() > 0
    for name, value in resumed.model.state_dict().items():
        torch.testing.assert_close(value, expected[name], rtol=0, atol=1e-6, msg=name)
