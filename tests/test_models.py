import json

import pytest
import torch
from conftest import run_without_hfssl, tiny_convnext_config, tiny_resnet_config, tiny_vit_config
from transformers import AutoConfig, AutoModel

import hfssl
from hfssl import SimCLRConfig, SimCLRModel
from hfssl.backbones import build_backbone_config, parse_config_overrides
from hfssl.models.builder import build_vision_ssl_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models (conftest.one_torch_thread)


def tiny_simclr(backbone: dict) -> SimCLRModel:
    torch.manual_seed(0)
    return SimCLRModel(SimCLRConfig(backbone_config=backbone, projection_hidden_dim=32, projection_dim=16))


BACKBONES = {"vit": tiny_vit_config(), "resnet": tiny_resnet_config(), "convnext": tiny_convnext_config()}


def test_methods_registry_and_auto_classes():
    assert hfssl.METHODS["simclr"].config_class is SimCLRConfig
    assert hfssl.METHODS["simclr"].model_class is SimCLRModel
    config = AutoConfig.for_model("hfssl_simclr", backbone_config=tiny_resnet_config())
    assert isinstance(config, SimCLRConfig)
    assert isinstance(AutoModel.from_config(config), SimCLRModel)


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_features_shapes_and_loss_gradients(name):
    model = tiny_simclr(BACKBONES[name])
    views = [torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16)]
    output = model(views=views)
    expected_dim = 32 if name == "vit" else 16
    assert model.get_image_features(views[0]).shape == (4, expected_dim)
    assert output.features.shape == (8, expected_dim)
    assert output.embeddings.shape == (8, 16)
    output.loss.backward()
    assert all(
        p.grad is not None and torch.isfinite(p.grad).all()
        for n, p in model.named_parameters()
        if p.requires_grad and "pooler" not in n
    )


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_save_load_round_trip_is_exact(tmp_path, name):
    model = tiny_simclr(BACKBONES[name]).eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists() and not list(tmp_path.glob("*.bin"))
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, SimCLRModel)
    original, restored = model.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    assert all(torch.equal(original[key], restored[key]) for key in original)
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(model.get_image_features(x), loaded.get_image_features(x))


def test_exported_backbone_loads_without_hfssl(tmp_path):
    model = tiny_simclr(BACKBONES["vit"]).eval()
    model.export_backbone(tmp_path)
    x = torch.randn(2, 3, 16, 16)
    torch.save(x, tmp_path / "x.pt")
    expected = model.backbone(pixel_values=x).last_hidden_state
    script = f"""
import sys, torch
from transformers import AutoModel
model = AutoModel.from_pretrained({str(tmp_path)!r}).eval()
assert "hfssl" not in sys.modules
x = torch.load({str(tmp_path / "x.pt")!r}, weights_only=True)
torch.save(model(pixel_values=x).last_hidden_state, {str(tmp_path / "y.pt")!r})
print(type(model).__name__)
"""
    assert run_without_hfssl(script).strip().endswith("ViTModel")
    torch.testing.assert_close(torch.load(tmp_path / "y.pt", weights_only=True), expected)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "vit"


def test_single_channel_backbone_and_overrides(tmp_path):
    config = build_backbone_config(
        "resnet", "num_channels=1,embedding_size=8,hidden_sizes=[8,16],depths=[1,1],layer_type=basic"
    )
    assert config.num_channels == 1 and config.hidden_sizes == [8, 16]
    model = build_vision_ssl_model(
        hfssl.METHODS["simclr"],
        "resnet",
        "num_channels=1,embedding_size=8,hidden_sizes=[8,16],depths=[1,1]",
        "projection_dim=8,tau=0.2",
    )
    assert model.config.tau == 0.2 and model.config.projection_dim == 8
    assert model.get_image_features(torch.randn(3, 1, 16, 16)).shape == (3, 16)
    # overrides that change the number of stages keep the derived fields consistent, so it reloads
    model.save_pretrained(tmp_path)
    assert AutoConfig.from_pretrained(tmp_path).backbone_config.stage_names == ["stem", "stage1", "stage2"]


def test_backbone_from_checkpoint_keeps_its_weights(tmp_path):
    source = tiny_simclr(BACKBONES["resnet"])
    source.export_backbone(tmp_path)
    model = build_vision_ssl_model(
        hfssl.METHODS["simclr"], str(tmp_path), config_overrides="projection_hidden_dim=32,projection_dim=16"
    )
    for key, value in source.backbone.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[key], value)


def test_a_model_type_is_not_mistaken_for_a_folder_of_that_name(tmp_path, monkeypatch):
    from hfssl.backbones import is_checkpoint

    (tmp_path / "resnet").mkdir()  # e.g. a run's output folder named after its model type
    monkeypatch.chdir(tmp_path)
    assert not is_checkpoint("resnet") and is_checkpoint("./resnet") and is_checkpoint("org/model")
    assert (
        build_vision_ssl_model(
            hfssl.METHODS["simclr"], "resnet", "embedding_size=8,hidden_sizes=[8],depths=[1]"
        ).config.backbone_config.model_type
        == "resnet"
    )


def test_vit_pooling_rules_and_interpolation():
    model = tiny_simclr(BACKBONES["vit"]).eval()
    x = torch.randn(2, 3, 16, 16)
    hidden = model.backbone(pixel_values=x).last_hidden_state
    torch.testing.assert_close(model.get_image_features(x), hidden[:, 0])
    model.config.pooling = "mean"
    torch.testing.assert_close(model.get_image_features(x), hidden.mean(dim=1))
    assert model.get_image_features(torch.randn(2, 3, 24, 24)).shape == (2, 32)  # position embeddings interpolated


def test_auto_pooling_of_beit_follows_its_mean_pooling_setting():
    # BEiT with use_mean_pooling (its default) has no final layer norm on the CLS token: the norm sits
    # in the pooler, which averages the patch tokens; "auto" must take that pooler, not the raw CLS.
    overrides = (
        "hidden_size=32,num_hidden_layers=1,num_attention_heads=2,intermediate_size=64,image_size=16,patch_size=8"
    )
    for use_mean_pooling, rule in ((True, "pooler"), (False, "cls")):
        model = build_vision_ssl_model(
            hfssl.METHODS["simclr"], "beit", f"{overrides},use_mean_pooling={use_mean_pooling}"
        ).eval()
        x = torch.randn(2, 3, 16, 16)
        outputs = model.backbone(pixel_values=x)
        expected = outputs.pooler_output if rule == "pooler" else outputs.last_hidden_state[:, 0]
        torch.testing.assert_close(model.get_image_features(x), expected)
        assert (model.backbone.pooler is not None) == (rule == "pooler")


def test_bad_configs_get_clear_errors():
    with pytest.raises(ValueError, match="no attribute 'hiden_size'"):
        build_backbone_config("vit", "hiden_size=64")
    with pytest.raises(ValueError, match="Unknown backbone 'not_a_model'"):
        build_backbone_config("not_a_model")
    with pytest.raises(ValueError, match="key=value"):
        parse_config_overrides("hidden_size")
    with pytest.raises(ValueError, match="pooling must be one of"):
        SimCLRConfig(backbone_config=tiny_resnet_config(), pooling="max")
    with pytest.raises(ValueError, match="exactly 2 views"):
        tiny_simclr(BACKBONES["resnet"])(views=[torch.randn(2, 3, 16, 16)])
