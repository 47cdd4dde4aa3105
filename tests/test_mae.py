"""MAE: the mask, the loss and its target by hand, equality with transformers' ViTMAEForPreTraining, the
reconstructions picture, the exported ViT, resume, 2 processes against 1, save/load."""

import json

import pytest
import torch
from conftest import (
    WORLD,
    assert_backbones_load_without_hfssl,
    assert_save_load_round_trip,
    collate_pixels,
    free_port,
    init_gloo,
    random_image_rows,
    register_two_process_run,
    short_run_arguments,
    spawn_processes,
    stop_after,
    tiny_resnet_config,
    tiny_vit_config,
)
from PIL import Image
from transformers import AutoModel, ViTMAEConfig, ViTMAEForPreTraining

import hfssl
from hfssl import MAEConfig, MAEModel
from hfssl.backbones import choose_auto_backbone
from hfssl.losses import masked_patch_mse
from hfssl.models.mae.configuration_mae import SMALL_IMAGE_DECODER
from hfssl.patches import (
    denormalize_patches,
    normalize_patches,
    num_masked_patches,
    patch_mask_from_noise,
    patchify,
    unpatchify,
)
from hfssl.training import SSLTrainer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DECODER = dict(
    decoder_hidden_size=16, decoder_num_hidden_layers=1, decoder_num_attention_heads=2, decoder_intermediate_size=32
)


def tiny_mae(image_size=16, channels=3, **overrides):
    """A 2-layer ViT (patch 4: a 4x4 grid of 16 patches at 16 px) and a 1-block decoder."""
    backbone = tiny_vit_config(image_size=image_size, num_channels=channels)
    return MAEModel(MAEConfig(backbone_config=backbone, image_size=image_size, **{**DECODER, **overrides}))


# ---- the mask ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "num_patches, ratio, hidden", [(16, 0.75, 12), (196, 0.75, 147), (49, 0.75, 37), (10, 0.25, 3)]
)
def test_the_mask_hides_exactly_round_ratio_times_n_patches_of_every_image(num_patches, ratio, hidden):
    assert num_masked_patches(num_patches, ratio) == hidden
    noise = torch.rand(32, num_patches, generator=torch.Generator().manual_seed(0))
    mask = patch_mask_from_noise(noise, hidden)
    assert mask.mask.sum(1).tolist() == [float(hidden)] * 32
    # the hidden patches are those of largest noise; the kept indices are the visible ones
    largest = noise.topk(hidden, dim=1).indices
    assert torch.all(mask.mask.gather(1, largest) == 1)
    assert torch.all(mask.mask.gather(1, mask.ids_keep) == 0)
    assert len({tuple(row.tolist()) for row in mask.mask}) > 1  # different per image
    # ids_restore undoes the shuffle: [visible, hidden] tokens put back in grid order are the grid
    shuffled = torch.argsort(noise, dim=1)
    torch.testing.assert_close(shuffled.gather(1, mask.ids_restore), torch.arange(num_patches).expand(32, -1))


def test_the_mask_is_vitmaes_for_the_same_noise():
    config = ViTMAEConfig(
        hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8, image_size=16, patch_size=4
    )
    reference = ViTMAEForPreTraining(config).vit.embeddings  # mask_ratio 0.75
    noise = torch.rand(5, 16, generator=torch.Generator().manual_seed(1))
    tokens = torch.randn(5, 16, 8)
    kept, mask, ids_restore = reference.random_masking(tokens, noise)
    ours = patch_mask_from_noise(noise, num_masked_patches(16, 0.75))
    torch.testing.assert_close(ours.mask, mask, rtol=0, atol=0)
    torch.testing.assert_close(ours.ids_restore, ids_restore, rtol=0, atol=0)
    torch.testing.assert_close(tokens.gather(1, ours.ids_keep.unsqueeze(-1).expand(-1, -1, 8)), kept, rtol=0, atol=0)


def test_the_batch_transform_draws_a_new_mask_per_step_reproducibly_under_a_seed():
    model = tiny_mae()
    transform = hfssl.METHODS["mae"].batch_transform(model, None)
    images = collate_pixels(random_image_rows(count=6, size=20, channels=3))

    def two_steps(seed):
        torch.manual_seed(seed)
        return [transform(images) for _ in range(2)]

    first, again = two_steps(0), two_steps(0)
    masks = [patch_mask_from_noise(step["noise"], model.num_masked).mask for step in first]
    assert first[0]["pixel_values"].shape == (6, 3, 16, 16) and first[0]["noise"].shape == (6, 16)
    assert not torch.equal(masks[0], masks[1])  # a new mask at every step
    for step, repeated in zip(first, again):  # the same under the same seed
        for key in step:
            torch.testing.assert_close(step[key], repeated[key], rtol=0, atol=0)


# ---- the loss --------------------------------------------------------------------------------------


def test_patchify_and_the_normalised_pixel_target_by_hand():
    images = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4) ** 1.5 / 10
    patches = patchify(images, 2)
    assert patches.shape == (2, 4, 12)
    for b in range(2):  # patch (row i, column j) of image b: pixels row-major, channels last
        for i in range(2):
            for j in range(2):
                expected = [
                    images[b, c, 2 * i + y, 2 * j + x].item() for y in range(2) for x in range(2) for c in range(3)
                ]
                assert patches[b, 2 * i + j].tolist() == pytest.approx(expected)
    torch.testing.assert_close(unpatchify(patches, 2, 3, 4, 4), images)
    normalised, statistics = normalize_patches(patches)
    values = patches[1, 3].tolist()
    mean = sum(values) / len(values)
    variance = sum((v - mean) ** 2 for v in values) / (len(values) - 1)  # unbiased, as MAE's code
    expected = [(v - mean) / (variance + 1e-6) ** 0.5 for v in values]
    assert normalised[1, 3].tolist() == pytest.approx(expected, rel=1e-5, abs=1e-5)
    torch.testing.assert_close(denormalize_patches(normalised, statistics), patches, rtol=1e-5, atol=1e-4)


def test_the_loss_reads_the_masked_patches_only():
    generator = torch.Generator().manual_seed(2)
    prediction, target = torch.randn(3, 6, 5, generator=generator), torch.randn(3, 6, 5, generator=generator)
    mask = torch.tensor([[1, 0, 1, 0, 0, 1], [0, 1, 1, 0, 1, 0], [1, 1, 0, 0, 0, 1]], dtype=torch.float32)
    by_hand = (
        sum(
            sum((prediction[b, n, k] - target[b, n, k]).item() ** 2 for k in range(5)) / 5
            for b in range(3)
            for n in range(6)
            if mask[b, n]
        )
        / mask.sum().item()
    )
    assert masked_patch_mse(prediction, target, mask).item() == pytest.approx(by_hand, rel=1e-6)
    changed = target.clone()
    changed[mask == 0] += 100.0  # what the visible patches should be does not matter
    assert masked_patch_mse(prediction, changed, mask).item() == pytest.approx(by_hand, rel=1e-6)
    # the model: the loss's gradient reaches the prediction of the masked patches only
    model = tiny_mae()
    noise = torch.rand(3, 16, generator=generator)
    logits = []
    model.decoder.register_forward_hook(lambda module, args, output: logits.append(output.logits))
    output = model(torch.randn(3, 3, 16, 16, generator=generator), noise=noise)
    (gradient,) = torch.autograd.grad(output.loss, logits[0])
    assert torch.all(gradient[output.mask == 0] == 0) and torch.all(gradient[output.mask == 1].abs().sum(-1) > 0)


@pytest.mark.parametrize("norm_pix_loss", [True, False])
def test_with_the_same_weights_and_mask_the_loss_is_vitmae_for_pretrainings(norm_pix_loss):
    torch.manual_seed(0)
    vit = tiny_vit_config(image_size=16)
    reference = ViTMAEForPreTraining(
        ViTMAEConfig(**{k: v for k, v in vit.items() if k != "model_type"}, **DECODER, norm_pix_loss=norm_pix_loss)
    )
    model = tiny_mae(norm_pix_loss=norm_pix_loss)
    # transformers' ViTMAEModel is our ViT backbone, key for key; the decoder is the same class
    weights = {("backbone." + k[4:] if k.startswith("vit.") else k): v for k, v in reference.state_dict().items()}
    model.load_state_dict(weights, strict=True)
    generator = torch.Generator().manual_seed(3)
    images, noise = torch.randn(4, 3, 16, 16, generator=generator), torch.rand(4, 16, generator=generator)
    expected = reference(pixel_values=images, noise=noise)
    output = model(images, noise=noise)
    torch.testing.assert_close(output.loss, expected.loss, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(output.logits, expected.logits, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(output.mask, expected.mask, rtol=0, atol=0)


def test_the_encoder_sees_the_visible_patches_only():
    model = tiny_mae().eval()
    generator = torch.Generator().manual_seed(4)
    images, noise = torch.randn(2, 3, 16, 16, generator=generator), torch.rand(2, 16, generator=generator)
    output = model(images, noise=noise)
    changed = patchify(images, 4)
    changed[output.mask == 1] = 7.0  # new pixels in the hidden patches
    changed_output = model(unpatchify(changed, 4, 3, 16, 16), noise=noise)
    torch.testing.assert_close(changed_output.features, output.features)  # the encoding did not change
    torch.testing.assert_close(changed_output.logits, output.logits)


# ---- config, backbone, fixed position embeddings ------------------------------------------------------


def test_config_defaults_are_the_papers_and_ranges_are_checked():
    config = MAEConfig()
    assert (config.mask_ratio, config.norm_pix_loss, config.min_crop_scale) == (0.75, True, 0.2)
    assert (config.decoder_hidden_size, config.decoder_num_hidden_layers, config.decoder_num_attention_heads) == (
        512,
        8,
        16,
    )
    assert config.decoder_intermediate_size == 2048
    assert MAEConfig(image_size=32).sized_for_data(60000) == SMALL_IMAGE_DECODER
    assert MAEConfig(image_size=224).sized_for_data(60000) == {}
    for bad in (dict(mask_ratio=1.0), dict(mask_ratio=0), dict(decoder_hidden_size=30, decoder_num_attention_heads=4)):
        with pytest.raises(ValueError, match="MAEConfig"):
            MAEConfig(**bad)
    with pytest.raises(ValueError, match="at least one hidden and one visible"):
        tiny_mae(mask_ratio=0.01)  # 0 of 16 patches


def test_a_non_vit_backbone_is_refused_and_auto_picks_a_vit():
    with pytest.raises(ValueError, match="ViT backbone.*--backbone vit-tiny"):
        MAEModel(MAEConfig(backbone_config=tiny_resnet_config(), image_size=16, **DECODER))
    assert choose_auto_backbone(28, 1, 60000).preset == "resnet-tiny"
    choice = choose_auto_backbone(28, 1, 60000, vit_only=True)
    assert (choice.preset, choice.image_size) == ("vit-tiny", 32) and "needs a ViT" in choice.message


def test_position_embeddings_are_fixed_sin_cos_and_stay_frozen_after_loading(tmp_path):
    model = tiny_mae()
    position = model.backbone.embeddings.position_embeddings
    assert not position.requires_grad and not model.decoder.decoder_pos_embed.requires_grad
    assert torch.all(position[0, 0] == 0)  # the CLS row
    # [sin(h w_k) | cos(h w_k) | sin(w w_k) | cos(w w_k)], w_k = 10000^(-k / (D/4))
    dim = position.shape[-1]
    omega = 1 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))
    h, w = 1, 2  # patch 6 of the 4x4 grid
    expected = torch.cat([(h * omega).sin(), (h * omega).cos(), (w * omega).sin(), (w * omega).cos()]).float()
    torch.testing.assert_close(position[0, 1 + 6], expected)
    restored = assert_save_load_round_trip(model, tmp_path / "mae")
    frozen = {name for name, parameter in restored.named_parameters() if not parameter.requires_grad}
    assert frozen == {"backbone.embeddings.position_embeddings", "decoder.decoder_pos_embed"}
    learned = tiny_mae(fixed_position_embeddings=False)
    assert learned.backbone.embeddings.position_embeddings.requires_grad


# ---- export ------------------------------------------------------------------------------------------


def test_the_exported_backbone_is_a_plain_vit_that_sees_every_patch(tmp_path):
    model = tiny_mae()
    with torch.no_grad():
        model.backbone.embeddings.cls_token.add_(0.5)  # a trained-looking CLS token
    model.export_backbone(tmp_path / "vit")
    assert_backbones_load_without_hfssl(
        {"vit": model.backbone}, tmp_path, "embeddings.position_embeddings", "ViTModel"
    )
    backbone = AutoModel.from_pretrained(tmp_path / "vit")
    images = torch.randn(2, 3, 16, 16)
    hidden = backbone(pixel_values=images).last_hidden_state
    assert hidden.shape == (2, 1 + 16, 32)  # every patch, no mask
    # with nothing hidden, MAE's encoder path is the plain ViT
    everything = torch.arange(16).expand(2, -1)
    torch.testing.assert_close(model.encode_visible(images, everything), hidden, rtol=1e-5, atol=1e-5)


# ---- the reconstructions picture -------------------------------------------------------------------------


def test_reconstruction_panels_de_normalise_each_patch_with_its_own_statistics():
    model = tiny_mae().eval()
    images = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    mean, std = torch.tensor([0.2, 0.4, 0.6]).view(1, 3, 1, 1), torch.tensor([0.5, 0.25, 0.2]).view(1, 3, 1, 1)
    normalize, denormalize = (lambda x: (x - mean) / std), (lambda x: x * std + mean)
    panels = model.reconstruction_panels(images, normalize, denormalize, torch.Generator().manual_seed(0))
    noise = torch.rand(3, 16, generator=torch.Generator().manual_seed(0))  # the same mask
    output = model(normalize(images), noise=noise)
    inputs = patchify(normalize(images), 4)
    b, n = 1, int(output.mask[1].nonzero()[0])  # a hidden patch, by hand
    values = inputs[b, n].tolist()
    patch_mean = sum(values) / len(values)
    patch_std = (sum((v - patch_mean) ** 2 for v in values) / (len(values) - 1) + 1e-6) ** 0.5
    pixels = [p * patch_std + patch_mean for p in output.logits[b, n].tolist()]
    expected = denormalize(unpatchify(torch.tensor(pixels).expand(3, 16, -1), 4, 3, 16, 16))[b].clamp(0, 1)
    row, column = divmod(n, 4)
    window = (slice(None), slice(4 * row, 4 * row + 4), slice(4 * column, 4 * column + 4))
    torch.testing.assert_close(panels["reconstruction"][b][window], expected[window], rtol=1e-5, atol=1e-5)
    pasted = panels["reconstruction + visible"][b]
    torch.testing.assert_close(pasted[window], expected[window], rtol=1e-5, atol=1e-5)
    visible = int((output.mask[b] == 0).nonzero()[0])
    row, column = divmod(visible, 4)
    window = (slice(None), slice(4 * row, 4 * row + 4), slice(4 * column, 4 * column + 4))
    torch.testing.assert_close(pasted[window], images[b][window], rtol=1e-5, atol=1e-5)  # visible: pasted back
    assert torch.all(
        panels["masked input"][b][:, 4 * (n // 4) : 4 * (n // 4) + 4, 4 * (n % 4) : 4 * (n % 4) + 4] == 0.5
    )


def _mae_trainer(output_dir, **overrides):
    torch.manual_seed(0)
    model = tiny_mae(image_size=8, channels=1)
    rows = random_image_rows(count=48, size=10, channels=1)
    return SSLTrainer(
        model=model,
        args=short_run_arguments(output_dir, **overrides),
        train_dataset=rows,
        eval_dataset=rows.select(range(8)),
        data_collator=collate_pixels,
        batch_transform=hfssl.METHODS["mae"].batch_transform(model, None),
        feature_transform=hfssl.augment.EvalTransform(8, 1),
    )


def test_each_evaluation_writes_the_reconstructions_picture(tmp_path):
    trainer = _mae_trainer(tmp_path / "run", eval_strategy="steps", eval_steps=5)
    trainer.train()
    path = tmp_path / "run" / "reconstructions.png"
    with Image.open(path) as picture:  # 4 rows of 8 images: (1.2 x 8 + 1.6) x 100 by (1.2 x 4 + 0.4) x 100 px
        assert picture.size == (1120, 520)
    before = path.read_bytes()
    trainer.draw_reconstructions()  # the same images and mask, the same weights: the same picture
    assert path.read_bytes() == before


# ---- resume ------------------------------------------------------------------------------------------------


def test_a_resumed_run_equals_the_uninterrupted_one(tmp_path):
    straight = _mae_trainer(tmp_path / "straight")
    straight.train()
    interrupted = _mae_trainer(tmp_path / "interrupted", save_strategy="steps", save_steps=2)
    interrupted.add_callback(stop_after(2))
    interrupted.train()
    checkpoint = str(tmp_path / "interrupted" / "checkpoint-2")
    resumed = _mae_trainer(
        tmp_path / "interrupted", save_strategy="steps", save_steps=2, resume_from_checkpoint=checkpoint
    )
    resumed.train(resume_from_checkpoint=checkpoint)  # the masks after the checkpoint are drawn as before
    expected = straight.model.state_dict()
    for name, value in resumed.model.state_dict().items():
        torch.testing.assert_close(value, expected[name], rtol=0, atol=1e-6, msg=name)
    config = json.loads((tmp_path / "interrupted" / "checkpoint-2" / "config.json").read_text())
    assert config["model_type"] == "hfssl_mae"


# ---- 2 processes against 1 ------------------------------------------------------------------------------


def _two_process_worker(rank: int, port: int, result_path: str):
    torch.set_num_threads(1)
    init_gloo(rank, port)
    try:
        torch.manual_seed(0)
        model = tiny_mae()
        transform = hfssl.METHODS["mae"].batch_transform(model, None)
        images = collate_pixels(random_image_rows(count=8, size=16, channels=3))["pixel_values"]
        torch.manual_seed(1)  # every process draws from the same stream and keeps its share
        inputs = transform({"pixel_values": images[rank * 4 : rank * 4 + 4]})
        output = model(**inputs)
        output.loss.backward()
        grads = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
        torch.save({"inputs": inputs, "loss": output.loss.detach(), "grads": grads}, f"{result_path}.{rank}")
    finally:
        torch.distributed.destroy_process_group()


def test_two_processes_draw_the_single_process_masks_and_give_its_gradients(tmp_path):
    spawn_processes(_two_process_worker, (free_port(), str(tmp_path / "result")))
    results = [torch.load(f"{tmp_path / 'result'}.{rank}", weights_only=True) for rank in range(WORLD)]
    torch.manual_seed(0)
    model = tiny_mae()
    transform = hfssl.METHODS["mae"].batch_transform(model, None)
    torch.manual_seed(1)
    inputs = transform(collate_pixels(random_image_rows(count=8, size=16, channels=3)))
    for key in ("pixel_values", "noise"):  # each process made its rows of the one-process batch
        torch.testing.assert_close(torch.cat([r["inputs"][key] for r in results]), inputs[key], rtol=0, atol=1e-6)
    output = model(**inputs)
    output.loss.backward()
    assert abs(sum(r["loss"] for r in results).item() / WORLD - output.loss.item()) < 1e-5
    for name, parameter in model.named_parameters():
        if parameter.grad is not None:
            averaged = sum(r["grads"][name] for r in results) / WORLD
            torch.testing.assert_close(averaged, parameter.grad, rtol=1e-4, atol=1e-6, msg=name)


TINY_VIT = "hidden_size=32,num_hidden_layers=2,num_attention_heads=2,intermediate_size=64,num_channels=1"
register_two_process_run(
    "mae",
    "pretrain_vision.py",
    lambda shared_data, output: [
        "--method", "mae", "--dataset_name", "builtin:digits", "--backbone", "vit", "--backbone_config_overrides",
        TINY_VIT + ",patch_size=4", "--config_overrides", ",".join(f"{k}={v}" for k, v in DECODER.items()),
        "--image_size", "16", "--output_dir", str(output), "--per_device_train_batch_size", "16", "--max_steps", "4",
        "--save_strategy", "no", "--logging_steps", "2", "--per_device_eval_batch_size", "64", "--final_protocols",
        "knn", "--baselines", "false", "--use_cpu", "--report_to", "none", "--disable_tqdm", "true",
        "--dataloader_num_workers", "0", "--seed", "0",
    ],
)  # fmt: skip


def test_a_two_process_launch_trains_and_writes_the_run(two_process_runs):
    output = two_process_runs["mae"]
    state = json.loads((output / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    results = json.loads((output / "all_results.json").read_text())
    assert "knn_accuracy" in results
    assert (output / "reconstructions.png").is_file()
    assert "reconstructions.png" in (output / "README.md").read_text()
    assert type(AutoModel.from_pretrained(output / "backbone")).__name__ == "ViTModel"


def test_backbones_and_sizes_mae_cannot_train_are_refused_with_the_fix():
    with pytest.raises(ValueError, match="multiple of the patch size 4"):
        MAEModel(MAEConfig(backbone_config=tiny_vit_config(image_size=18), image_size=18, **DECODER))
    vit_mae = {**tiny_vit_config(image_size=16), "model_type": "vit_mae"}
    with pytest.raises(ValueError, match="vit_mae backbone masks its input"):
        MAEModel(MAEConfig(backbone_config=vit_mae, image_size=16, **DECODER))
    one_pixel = {**tiny_vit_config(image_size=8, num_channels=1), "patch_size": 1}
    with pytest.raises(ValueError, match="1-pixel greyscale patch"):
        MAEModel(MAEConfig(backbone_config=one_pixel, image_size=8, **DECODER))
    tiny_mae(image_size=8, channels=1)  # patch 4 at 8 px: fine
