"""The classic pretext tasks (rotation, relative patch position, jigsaw): each transform's labels against the
geometry it made, the permutation set's distances, the loss by hand, gradients, 2 processes against 1, the
configs, save/load and export, resume, and short Fashion-MNIST runs that beat random init."""

import json
import sys

import pytest
import torch
import torch.nn.functional as F
from conftest import (
    REPO_ROOT,
    assert_backbones_load_without_hfssl,
    assert_save_load_round_trip,
    random_image_rows,
    require_full_data,
    short_run_arguments,
    stop_after,
    tiny_resnet_config,
    tiny_vit_config,
)

import hfssl
from hfssl import (
    JigsawConfig,
    RelativePositionConfig,
    RelativePositionModel,
    RotationConfig,
)
from hfssl.augment import EvalTransform
from hfssl.models.vision import pretext_task_output
from hfssl.pretext import (
    CENTRE_CELL,
    NEIGHBOUR_CELLS,
    JigsawTransform,
    RelativePositionTransform,
    crop_tiles,
    drop_channels,
    grid_geometry,
    hamming_permutation_set,
    min_hamming_distance,
    rotate_all_four,
    standardize_tiles,
    tile_corners,
)
from hfssl.training import SSLTrainer
from hfssl.training.model_card import PAPERS

sys.path.insert(0, str(REPO_ROOT / "recipes"))
import pretrain_vision  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PRETEXT_METHODS = ("rotation", "relative_position", "jigsaw")


def tiny_model(method, image_size=24, channels=1, **overrides):
    entry = hfssl.METHODS[method]
    config = entry.config_class(
        backbone_config=tiny_resnet_config(num_channels=channels), image_size=image_size, **overrides
    )
    return entry.model_class(config)


def coordinate_images(batch: int, side: int) -> torch.Tensor:
    """(B, 1, S, S) float images whose pixel (r, c) holds (r * S + c + 1) / (S * S + 1): the position is readable
    from the value, and an identity normalisation keeps it."""
    values = (torch.arange(side * side, dtype=torch.float32) + 1) / (side * side + 1)
    return values.view(1, 1, side, side).expand(batch, 1, side, side).clone()


def position_of(value: torch.Tensor, side: int) -> tuple[int, int]:
    index = round(value.item() * (side * side + 1)) - 1
    return divmod(index, side)


IDENTITY = dict(mean=(0.0,), std=(1.0,))


# ---- rotation --------------------------------------------------------------------------------------------------


def test_rotating_back_by_the_label_gives_the_original():
    images = torch.rand(5, 3, 8, 8)
    rotated, labels = rotate_all_four(images)
    assert rotated.shape == (20, 3, 8, 8) and labels.tolist() == [0] * 5 + [1] * 5 + [2] * 5 + [3] * 5
    for index in range(20):
        back = torch.rot90(rotated[index], -int(labels[index]), dims=(1, 2))
        torch.testing.assert_close(back, images[index % 5], rtol=0, atol=0)
    assert not torch.equal(rotated[5], images[0])  # a quarter turn changes a random image
    corner = torch.zeros(1, 1, 4, 4)
    corner[0, 0, 0, 3] = 1  # top right, turned a quarter counter-clockwise: top left
    assert rotate_all_four(corner)[0][1, 0, 0, 0] == 1


def test_the_rotation_transform_shows_one_augmented_view_in_its_four_rotations():
    model = tiny_model("rotation", image_size=16)
    transform = hfssl.METHODS["rotation"].batch_transform(model, None)
    torch.manual_seed(0)
    batch = transform({"pixel_values": torch.randint(0, 256, (6, 1, 20, 20), dtype=torch.uint8)})
    pixels, labels = batch["pixel_values"], batch["pretext_labels"]
    assert pixels.shape == (24, 1, 16, 16)
    for k in range(4):
        torch.testing.assert_close(torch.rot90(pixels[6 * k : 6 * k + 6], -k, dims=(2, 3)), pixels[:6])
        assert torch.all(labels[6 * k : 6 * k + 6] == k)


# ---- the grid ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("side, fraction, jitter", [(30, 2 / 3, 0.3), (32, 0.85, 1.0), (64, 0.5, 0.0)])
def test_tiles_stay_in_their_cells_with_the_promised_gap(side, fraction, jitter):
    cell, tile = grid_geometry(side, fraction)
    cells = torch.arange(9).repeat(400, 1)
    draws = torch.rand(400, 2 + 18, generator=torch.Generator().manual_seed(0))
    corners = tile_corners(draws, cells, side, fraction, jitter)
    rows, columns = corners[..., 0], corners[..., 1]
    assert rows.min() >= 0 and columns.min() >= 0 and (rows + tile).max() <= side and (columns + tile).max() <= side
    within = corners - (torch.stack([cells // 3, cells % 3], -1) * cell)  # position inside the cell, plus the origin
    grid_slack = side - 3 * cell
    assert within.min() >= 0 and within.max() <= (cell - tile) + grid_slack
    gap = columns[:, 1] - (columns[:, 0] + tile)  # between the first two tiles of the top row
    assert gap.min() >= round((cell - tile) * (1 - jitter)) - 1  # rounding moves each tile by at most half a pixel
    if jitter == 0:
        assert torch.all(within - within[:, :1] == 0)  # centred: the same place in every cell
    else:
        assert len(set(within[:, 4, 0].tolist())) > 1  # jittered


def test_crop_tiles_is_slicing():
    images = torch.rand(2, 3, 12, 12)
    corners = torch.tensor([[[0, 0], [5, 7]], [[8, 1], [2, 9]]])
    tiles = crop_tiles(images, corners, 3)
    assert tiles.shape == (2, 2, 3, 3, 3)
    for b in range(2):
        for k in range(2):
            r, c = corners[b, k].tolist()
            torch.testing.assert_close(tiles[b, k], images[b, :, r : r + 3, c : c + 3], rtol=0, atol=0)


def test_the_relative_position_label_matches_the_crop_geometry():
    side = 30
    transform = RelativePositionTransform(EvalTransform(side, 1, **IDENTITY), 2 / 3, 0.3, channel_dropping=False)
    torch.manual_seed(0)
    batch = transform({"pixel_values": coordinate_images(256, side)})
    cell, tile = grid_geometry(side, 2 / 3)
    assert batch["pixel_values"].shape == (256, 2, 1, tile, tile)
    assert set(batch["pretext_labels"].tolist()) == set(range(8))  # every place drawn
    for pair, label in zip(batch["pixel_values"], batch["pretext_labels"].tolist()):
        (centre_row, centre_column), (row, column) = (position_of(t[0, 0, 0], side) for t in pair)
        assert (centre_row // cell, centre_column // cell) == divmod(CENTRE_CELL, 3)
        assert (row // cell, column // cell) == divmod(NEIGHBOUR_CELLS[label], 3)
        assert position_of(pair[1, 0, -1, -1], side) == (row + tile - 1, column + tile - 1)  # a whole, unscaled tile


def test_each_jigsaw_place_shows_the_cell_its_permutation_names():
    side, permutations = 33, hamming_permutation_set(10)
    transform = JigsawTransform(EvalTransform(side, 1, **IDENTITY), 0.85, 1.0, permutations, standardize=False)
    torch.manual_seed(0)
    batch = transform({"pixel_values": coordinate_images(64, side)})
    cell, tile = grid_geometry(side, 0.85)
    assert batch["pixel_values"].shape == (64, 9, 1, tile, tile)
    for puzzle, label in zip(batch["pixel_values"], batch["pretext_labels"].tolist()):
        shown = []
        for tile_pixels in puzzle:
            row, column = position_of(tile_pixels[0, 0, 0], side)
            shown.append((row // cell) * 3 + column // cell)
        assert shown == list(permutations[label])
        solved = torch.empty_like(puzzle)
        solved[list(permutations[label])] = puzzle  # the inverse permutation puts each tile back in its cell
        tops = [position_of(t[0, 0, 0], side) for t in solved]
        assert [(r // cell) * 3 + c // cell for r, c in tops] == list(range(9))


def test_the_permutation_set_is_fixed_distinct_and_at_least_its_minimum_distance_apart():
    permutations = hamming_permutation_set(100)
    assert len(permutations) == 100 and len(set(permutations)) == 100
    assert permutations[0] == tuple(range(9)) and all(sorted(p) == list(range(9)) for p in permutations)
    assert min_hamming_distance(permutations) == 6  # the docstring's promise
    assert min_hamming_distance(hamming_permutation_set(4)) == 9  # four permutations can differ everywhere
    assert hamming_permutation_set.__wrapped__(100) == permutations  # the same set without the cache
    assert min_hamming_distance([(0, 1, 2), (0, 2, 1), (2, 1, 0)]) == 2  # by hand: 2, 2 and 3 places
    with pytest.raises(ValueError, match="between 1 and"):
        hamming_permutation_set(0)


def test_tiles_standardise_and_drop_channels_as_the_papers_say():
    tiles = torch.rand(5, 3, 6, 6) * 4 + 2
    standard = standardize_tiles(tiles)
    torch.testing.assert_close(standard.mean(dim=(1, 2, 3)), torch.zeros(5), rtol=0, atol=1e-5)
    torch.testing.assert_close(standard.std(dim=(1, 2, 3), unbiased=False), torch.ones(5), rtol=0, atol=1e-4)
    kept = torch.tensor([0, 1, 2, 1, 0])
    noise = torch.full_like(tiles, -7.0)
    dropped = drop_channels(tiles, kept, noise)
    for index, channel in enumerate(kept.tolist()):
        torch.testing.assert_close(dropped[index, channel], tiles[index, channel], rtol=0, atol=0)
        others = [c for c in range(3) if c != channel]
        assert torch.all(dropped[index, others] == -7.0)


def test_the_colour_guard_keeps_one_channel_of_each_tile_and_fills_the_others_with_faint_noise():
    model = tiny_model("relative_position", image_size=30, channels=3)
    transform = hfssl.METHODS["relative_position"].batch_transform(model, None)
    torch.manual_seed(0)
    images = torch.full((128, 3, 30, 30), 200, dtype=torch.uint8)
    tiles = transform({"pixel_values": images})["pixel_values"]  # (128, 2, 3, t, t)
    value = EvalTransform(30, 3)(images[:1])[0, :, 0, 0]  # the normalised pixel of each channel
    flat = tiles.flatten(0, 1)
    kept = torch.stack([torch.all(flat[:, c] == value[c], dim=(1, 2)) for c in range(3)], 1)
    assert kept.sum(1).tolist() == [1] * 256  # exactly one channel kept per tile
    assert set(kept.float().argmax(1).tolist()) == {0, 1, 2}
    noise = flat[~kept]
    assert abs(noise.std().item() - 0.01) < 0.001 and abs(noise.mean().item()) < 0.001


@pytest.mark.parametrize("method", PRETEXT_METHODS)
def test_two_processes_draw_what_one_process_draws_for_the_concatenated_batch(monkeypatch, method):
    model = tiny_model(method, image_size=24, channels=3)
    transform = hfssl.METHODS[method].batch_transform(model, None)
    images = torch.randint(0, 256, (8, 3, 24, 24), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(5)
    single = transform({"pixel_values": images})
    shares = []
    for rank in range(2):
        monkeypatch.setattr(hfssl.distributed, "world_size", lambda: 2)
        monkeypatch.setattr(hfssl.distributed, "rank", lambda rank=rank: rank)
        torch.manual_seed(5)
        shares.append(transform({"pixel_values": images[4 * rank : 4 * rank + 4]}))
    for key in ("pixel_values", "pretext_labels"):
        joined = torch.cat([share[key] for share in shares])
        if method == "rotation":  # rotation-major: each process's rows are [its B images] x 4 rotations
            joined = torch.cat([share[key].view(4, 4, *share[key].shape[1:]) for share in shares], 1).flatten(0, 1)
        torch.testing.assert_close(joined, single[key], rtol=0, atol=0)


# ---- models, loss, gradients -------------------------------------------------------------------------------------


def test_the_pretext_loss_and_accuracy_by_hand():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    labels = torch.tensor([0, 1])
    output = pretext_task_output(logits, labels, torch.zeros(2, 4))
    import math

    first = -(2.0 - math.log(math.exp(2) + 1 + math.exp(-1)))
    second = -(0.5 - math.log(2 * math.exp(0.5) + math.exp(3)))
    assert output.loss.item() == pytest.approx((first + second) / 2, rel=1e-6)
    assert output.pretext_accuracy.item() == 0.5
    assert pretext_task_output(logits, None, torch.zeros(2, 4), return_loss=False).loss is None
    with pytest.raises(ValueError, match="pretext_labels"):
        pretext_task_output(logits, None, torch.zeros(2, 4))


@pytest.mark.parametrize("method, classes", [("rotation", 4), ("relative_position", 8), ("jigsaw", 100)])
def test_every_part_gets_a_gradient_and_the_logits_have_the_tasks_classes(method, classes):
    model = tiny_model(method, image_size=24)
    batch = hfssl.METHODS[method].batch_transform(model, None)(
        {"pixel_values": torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)}
    )
    output = model(**batch)
    rows = {"rotation": 16, "relative_position": 4, "jigsaw": 4}[method]
    assert output.logits.shape == (rows, classes) and output.loss.ndim == 0
    assert output.loss.item() == pytest.approx(F.cross_entropy(output.logits, batch["pretext_labels"]).item())
    output.loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_a_vit_encodes_tiles_smaller_than_its_image_and_refuses_tiles_below_a_patch():
    model = RelativePositionModel(RelativePositionConfig(backbone_config=tiny_vit_config(24, 1), image_size=24))
    batch = hfssl.METHODS["relative_position"].batch_transform(model, None)(
        {"pixel_values": torch.randint(0, 256, (4, 1, 24, 24), dtype=torch.uint8)}
    )
    assert batch["pixel_values"].shape[-1] == 5 and model(**batch).loss.isfinite()
    with pytest.raises(ValueError, match="--image_size"):
        RelativePositionConfig(backbone_config={**tiny_vit_config(24, 1), "patch_size": 8}, image_size=24)


def test_configs_have_the_papers_defaults_and_check_their_ranges():
    assert (RotationConfig().min_crop_scale, RotationConfig().flip_probability) == (0.5, 0.5)
    relative = RelativePositionConfig()
    assert (relative.tile_fraction, relative.jitter, relative.channel_dropping) == (2 / 3, 0.3, True)
    jigsaw = JigsawConfig()
    assert (jigsaw.tile_fraction, jigsaw.jitter, jigsaw.num_permutations) == (0.85, 1.0, 100)
    assert (jigsaw.permutations, jigsaw.standardize_tiles) == (None, False)
    for config_class, bad in [
        (RotationConfig, dict(min_crop_scale=0)),
        (RotationConfig, dict(classifier_hidden_dim=-1)),
        (RelativePositionConfig, dict(tile_fraction=1.5)),
        (RelativePositionConfig, dict(jitter=-0.1)),
        (RelativePositionConfig, dict(channel_noise_std=-1)),
        (JigsawConfig, dict(num_permutations=1)),
        (JigsawConfig, dict(num_permutations=2, permutations=[[0, 1, 2, 3, 4, 5, 6, 7, 8]] * 2)),  # not distinct
        (JigsawConfig, dict(num_permutations=2, permutations=[list(range(9)), [0] * 9])),  # not an ordering
        (JigsawConfig, dict(num_permutations=3, permutations=[list(range(9)), list(range(8, -1, -1))])),  # too few
    ]:
        with pytest.raises(ValueError, match=config_class.__name__):
            config_class(**bad)


def test_the_jigsaw_model_writes_its_permutation_set_into_the_config_and_a_reload_keeps_it(tmp_path):
    model = tiny_model("jigsaw", num_permutations=30)
    assert model.config.permutations == [list(p) for p in hamming_permutation_set(30)]
    assert model.classifier[-1].out_features == 30
    custom = [list(range(9)), [1, 0, 2, 3, 4, 5, 6, 7, 8]]
    assert tiny_model("jigsaw", num_permutations=2, permutations=custom).config.permutations == custom
    restored = assert_save_load_round_trip(model, tmp_path / "jigsaw")
    assert restored.config.permutations == model.config.permutations
    saved = json.loads((tmp_path / "jigsaw" / "config.json").read_text())
    assert saved["permutations"][1] == list(hamming_permutation_set(30)[1])


@pytest.mark.parametrize("method", PRETEXT_METHODS)
def test_save_load_round_trip_and_the_exported_backbone_loads_without_hfssl(tmp_path, method):
    model = tiny_model(method)
    assert_save_load_round_trip(model, tmp_path / method)
    model.export_backbone(tmp_path / "backbone")
    assert_backbones_load_without_hfssl(
        {"backbone": model.backbone}, tmp_path, "embedder.embedder.convolution.weight", "ResNetModel"
    )


# ---- training: resume, logs --------------------------------------------------------------------------------------


def _pretext_trainer(method, output_dir, **overrides):
    torch.manual_seed(0)
    model = tiny_model(method, image_size=12, classifier_hidden_dim=16)
    rows = random_image_rows(count=48, size=14, channels=1)
    return SSLTrainer(
        model=model,
        args=short_run_arguments(output_dir, **overrides),
        train_dataset=rows,
        data_collator=lambda examples: {
            "pixel_values": torch.stack([torch.as_tensor(e["pixel_values"]) for e in examples])
        },
        batch_transform=hfssl.METHODS[method].batch_transform(model, None),
        feature_transform=EvalTransform(12, 1),
    )


@pytest.mark.parametrize("method", PRETEXT_METHODS)
def test_a_resumed_run_equals_the_uninterrupted_one_and_logs_the_pretext_accuracy(tmp_path, method):
    straight = _pretext_trainer(method, tmp_path / "straight", logging_steps=1)
    straight.train()
    assert all("pretext_accuracy" in entry for entry in straight.state.log_history if "loss" in entry)
    interrupted = _pretext_trainer(method, tmp_path / "interrupted", save_strategy="steps", save_steps=2)
    interrupted.add_callback(stop_after(2))
    interrupted.train()
    checkpoint = str(tmp_path / "interrupted" / "checkpoint-2")
    resumed = _pretext_trainer(
        method, tmp_path / "interrupted", save_strategy="steps", save_steps=2, resume_from_checkpoint=checkpoint
    )
    resumed.train(resume_from_checkpoint=checkpoint)  # the tiles and labels after the checkpoint are drawn as before
    expected = straight.model.state_dict()
    for name, value in resumed.model.state_dict().items():
        torch.testing.assert_close(value, expected[name], rtol=0, atol=1e-6, msg=name)


# ---- short real runs ---------------------------------------------------------------------------------------------

COMMON = ["--use_cpu", "--report_to", "none", "--disable_tqdm", "true", "--dataloader_num_workers", "0"]
# method -> (steps, asserted kNN margin over the same backbone at random init). Steps of 64 of 3,000 Fashion-MNIST
# training images at 32 px on resnet-tiny, kNN on 500 test images (one image is 0.002); the margins measured on
# cpu-2, seeds 0/1/2: rotation (100 steps) +0.142/+0.158/+0.120, relative position (300) +0.088/+0.074/+0.034,
# jigsaw (300) +0.082/+0.052/+0.084. The asserted margins leave room for each.
REAL_RUNS = {"rotation": (100, 0.05), "relative_position": (300, 0.015), "jigsaw": (300, 0.02)}


@pytest.mark.parametrize("method", PRETEXT_METHODS)
def test_a_short_fashion_mnist_run_beats_random_init(tmp_path, method):
    fashion = require_full_data("fashion-mnist", "3,000 training and 500 test images for a stable kNN margin")
    metrics = pretrain_vision.main([
        "--method", method, "--idx_dir", str(fashion), "--max_train_samples", "3000", "--max_eval_samples", "500",
        "--backbone", "resnet-tiny", "--image_size", "32", "--output_dir", str(tmp_path / method),
        "--per_device_train_batch_size", "64", "--max_steps", str(REAL_RUNS[method][0]), "--learning_rate", "3e-3", "--warmup_steps", "0.05",
        "--save_strategy", "no", "--logging_steps", "20", "--final_protocols", "knn", "--baselines", "true",
        "--per_device_eval_batch_size", "512", "--seed", "0", *COMMON,
    ])  # fmt: skip
    print(method, {key: value for key, value in metrics.items() if "knn" in key})
    assert metrics["knn_accuracy"] > metrics["random_init_knn_accuracy"] + REAL_RUNS[method][1]
    card = (tmp_path / method / "README.md").read_text()
    assert (
        PAPERS[method].title in card and "pretext_accuracy" in (tmp_path / method / "trainer_state.json").read_text()
    )
