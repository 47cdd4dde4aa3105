"""Backbone presets, the ViT patch-size rule, and the ``auto`` backbone choice."""

import pytest
import torch
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

import hfssl
from hfssl.backbones import (
    BACKBONE_PRESETS,
    build_backbone,
    build_backbone_config,
    choose_auto_backbone,
    is_checkpoint,
    pooled_features,
    vit_patch_size,
)
from hfssl.models.builder import build_vision_ssl_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models (conftest.one_torch_thread)

# What the module docstring documents for each preset.
DOCUMENTED_SIZES = {
    "resnet-tiny": dict(
        model_type="resnet", embedding_size=16, hidden_sizes=[32, 64], depths=[1, 1], layer_type="basic"
    ),
    "vit-tiny": dict(
        model_type="vit", hidden_size=192, num_hidden_layers=12, num_attention_heads=3, intermediate_size=768
    ),
    "vit-small": dict(
        model_type="vit", hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536
    ),
    "vit-base": dict(
        model_type="vit", hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072
    ),
    "resnet50": dict(
        model_type="resnet",
        embedding_size=64,
        hidden_sizes=[256, 512, 1024, 2048],
        depths=[3, 4, 6, 3],
        layer_type="bottleneck",
    ),
}


def test_every_preset_is_documented_and_none_is_a_model_type():
    assert set(BACKBONE_PRESETS) == set(DOCUMENTED_SIZES)
    assert not set(BACKBONE_PRESETS) & set(CONFIG_MAPPING)
    assert "auto" not in CONFIG_MAPPING


@pytest.mark.parametrize("name", sorted(DOCUMENTED_SIZES))
def test_preset_configs_have_the_documented_sizes(name):
    config = build_backbone_config(name)
    for key, value in DOCUMENTED_SIZES[name].items():
        assert getattr(config, key) == value, key
    if config.model_type == "vit":  # at its own 224 px: ViT-*/16
        assert (config.image_size, config.patch_size) == (224, 16)


def test_resnet50_preset_is_transformers_default_resnet():
    default = build_backbone_config("resnet").to_dict()
    preset = build_backbone_config("resnet50").to_dict()
    assert {k: v for k, v in preset.items() if k != "_name_or_path"} == {
        k: v for k, v in default.items() if k != "_name_or_path"
    }


@pytest.mark.parametrize(
    "name, image_size, num_channels, parameters, feature_dim",
    [("resnet-tiny", 16, 1, 73_072, 64), ("resnet-tiny", 32, 3, 74_640, 64), ("vit-tiny", 32, 3, 5_360_832, 192)],
)
def test_tiny_presets_build_run_and_train(name, image_size, num_channels, parameters, feature_dim):
    torch.manual_seed(0)
    config = build_backbone_config(name, image_size=image_size, num_channels=num_channels)
    backbone = build_backbone(config)
    assert sum(p.numel() for p in backbone.parameters()) == parameters
    x = torch.randn(4, num_channels, image_size, image_size)
    features = pooled_features(backbone, x)
    assert features.shape == (4, feature_dim)
    outputs = backbone(pixel_values=x)
    expected = outputs.last_hidden_state[:, 0] if name.startswith("vit") else outputs.pooler_output.flatten(1)
    torch.testing.assert_close(features, expected)  # the pooling rule: CLS for ViT, pooler for ResNet
    features.pow(2).mean().backward()
    assert all(p.grad is not None for p in backbone.parameters())  # no unused layer (DDP would refuse it)


def test_vit_tiny_at_224_has_the_documented_parameter_count():
    assert sum(p.numel() for p in build_backbone(build_backbone_config("vit-tiny")).parameters()) == 5_524_416


def test_overrides_apply_on_top_of_a_preset():
    config = build_backbone_config("resnet-tiny", "hidden_sizes=[16,32,64],depths=[1,1,1]", num_channels=1)
    assert config.hidden_sizes == [16, 32, 64] and config.embedding_size == 16 and config.layer_type == "basic"
    assert config.stage_names == ["stem", "stage1", "stage2", "stage3"] and config.num_channels == 1
    vit = build_backbone_config("vit-small", {"num_hidden_layers": 4, "num_channels": 3}, 32, num_channels=1)
    assert (vit.hidden_size, vit.num_hidden_layers, vit.num_attention_heads) == (384, 4, 6)
    assert vit.num_channels == 3  # overrides win over the num_channels argument
    with pytest.raises(ValueError, match="no attribute 'hiden_size'"):
        build_backbone_config("vit-tiny", "hiden_size=64")


@pytest.mark.parametrize(
    "image_size, patch_size",
    [(8, 1), (13, 1), (14, 2), (16, 2), (28, 4), (32, 4), (55, 4), (56, 8), (64, 8), (96, 8), (112, 16), (224, 16)],
)
def test_vit_patch_size_keeps_at_least_a_7x7_grid_with_patches_up_to_16(image_size, patch_size):
    assert vit_patch_size(image_size) == patch_size
    assert image_size // patch_size >= 7 or patch_size == 1
    assert patch_size == 16 or image_size // (patch_size * 2) < 7  # the largest such patch


def test_vit_presets_follow_the_image_size_and_model_types_do_not():
    small = build_backbone_config("vit-tiny", image_size=32)
    assert (small.image_size, small.patch_size, small.encoder_stride) == (32, 4, 4)
    assert build_backbone_config("vit-base", image_size=224).patch_size == 16
    assert build_backbone_config("vit-tiny", "image_size=64").patch_size == 8  # a size given as override counts
    assert build_backbone_config("vit-tiny", "patch_size=8", image_size=32).patch_size == 8  # an explicit patch wins
    plain = build_backbone_config("vit", image_size=32)  # a model type keeps its own patch, as before
    assert (plain.image_size, plain.patch_size) == (32, 16)
    assert not hasattr(build_backbone_config("resnet-tiny", image_size=32), "image_size")
    with pytest.raises(ValueError, match="positive"):
        vit_patch_size(0)


def test_a_preset_is_not_mistaken_for_a_folder_of_that_name(tmp_path, monkeypatch):
    for name in ("resnet-tiny", "vit-tiny", "auto"):
        (tmp_path / name).mkdir()  # an empty folder: loading it as a checkpoint would fail
    monkeypatch.chdir(tmp_path)
    assert not is_checkpoint("resnet-tiny") and not is_checkpoint("vit-tiny") and not is_checkpoint("auto")
    assert is_checkpoint("./resnet-tiny")
    assert build_backbone_config("vit-tiny", image_size=32).hidden_size == 192
    model = build_vision_ssl_model(hfssl.METHODS["simclr"], "resnet-tiny", "num_channels=1", image_size=16)
    assert model.config.backbone_config.hidden_sizes == [32, 64]
    assert model.get_image_features(torch.randn(2, 1, 16, 16)).shape == (2, 64)


def test_unknown_backbone_error_lists_the_presets_and_model_types():
    with pytest.raises(ValueError, match="Unknown backbone 'vit-tinyest'") as error:
        build_backbone_config("vit-tinyest")
    assert all(name in str(error.value) for name in BACKBONE_PRESETS)
    assert "model type" in str(error.value) and "checkpoint" in str(error.value)


def test_auto_must_be_resolved_from_the_data_first():
    with pytest.raises(ValueError, match="choose_auto_backbone"):
        build_backbone_config("auto")


@pytest.mark.parametrize(
    "native, channels, images, preset, image_size",
    [
        (8, 1, 1_797, "resnet-tiny", 16),  # builtin:digits
        (28, 1, 60_000, "resnet-tiny", 32),  # Fashion-MNIST
        (32, 3, 50_000, "resnet-tiny", 32),  # CIFAR-10
        (96, 3, 105_000, "vit-tiny", 96),  # STL-10
        (96, 3, 5_000, "resnet-tiny", 96),  # few medium images: one size down
        (375, 3, None, "vit-small", 224),  # ImageNet-like photos, size of the data set unknown
        (375, 3, 1_281_167, "vit-small", 224),
        (375, 3, 2_000, "vit-tiny", 224),  # few large images: one size down
    ],
)
def test_choose_auto_backbone_follows_the_documented_rule(native, channels, images, preset, image_size):
    choice = choose_auto_backbone(native, channels, images)
    assert (choice.preset, choice.image_size, choice.num_channels) == (preset, image_size, channels)
    message = choice.message
    assert preset in message and f"{image_size} px" in message and f"{native} px" in message
    assert "--backbone <preset or model type>" in message and "--image_size N" in message
    assert f"{channels} input channel" in message and "\n" not in message
    if images is not None and images < 10_000 and native > 64:
        assert "one model size smaller" in message


def test_the_auto_choice_for_digits_builds_a_greyscale_backbone_at_16_px():
    choice = choose_auto_backbone(8, 1, 1_797)
    config = build_backbone_config(choice.preset, image_size=choice.image_size, num_channels=choice.num_channels)
    features = pooled_features(build_backbone(config), torch.randn(3, 1, choice.image_size, choice.image_size))
    assert config.num_channels == 1 and features.shape == (3, 64)
    assert "greyscale" in choice.message


@pytest.mark.parametrize("args", [(0, 3), (32, 0), (32, 3, 0)])
def test_choose_auto_backbone_rejects_bad_inputs(args):
    with pytest.raises(ValueError, match="must be"):
        choose_auto_backbone(*args)
