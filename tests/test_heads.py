import copy

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from hfssl.heads import MLP, DINOHead, PredictionHead, ProjectionHead, Prototypes, WeightNormLinear

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models (conftest.one_torch_thread)


class ReferenceProjectionHead(nn.Module):
    """hfssl's ProjectionHead before heads were built from MLP, kept verbatim: SimCLR checkpoints
    saved with it must load into the current class."""

    def __init__(
        self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int = 2, last_batch_norm: bool = False
    ):
        super().__init__()
        layers: list[nn.Module] = []
        dim = input_dim
        for _ in range(num_layers - 1):
            layers += [nn.Linear(dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True)]
            dim = hidden_dim
        layers.append(nn.Linear(dim, output_dim, bias=not last_batch_norm))
        if last_batch_norm:
            layers.append(nn.BatchNorm1d(output_dim, affine=False))
        self.layers = nn.Sequential(*layers)

    def forward(self, features):
        return self.layers(features)


class ReferenceDINOHead(nn.Module):
    """DINO's released head (facebookresearch/dino, vision_transformer.py), with torch's current
    ``parametrizations.weight_norm`` in place of the deprecated ``nn.utils.weight_norm``."""

    def __init__(
        self, in_dim, out_dim, use_bn=False, norm_last_layer=True, nlayers=3, hidden_dim=2048, bottleneck_dim=256
    ):
        super().__init__()
        layers = [nn.Linear(in_dim, hidden_dim)]
        if use_bn:
            layers.append(nn.BatchNorm1d(hidden_dim))
        layers.append(nn.GELU())
        for _ in range(nlayers - 2):
            layers.append(nn.Linear(hidden_dim, hidden_dim))
            if use_bn:
                layers.append(nn.BatchNorm1d(hidden_dim))
            layers.append(nn.GELU())
        layers.append(nn.Linear(hidden_dim, bottleneck_dim))
        self.mlp = nn.Sequential(*layers)
        self.last_layer = nn.utils.parametrizations.weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        self.last_layer.parametrizations.weight.original0.data.fill_(1)
        if norm_last_layer:
            self.last_layer.parametrizations.weight.original0.requires_grad = False

    def forward(self, x):
        x = self.mlp(x)
        x = nn.functional.normalize(x, dim=-1, p=2)
        return self.last_layer(x)


def layer_reprs(module: nn.Module) -> list[str]:
    return [repr(layer) for layer in module]


# --- MLP ---------------------------------------------------------------------------------------


def test_mlp_layer_order_biases_and_shapes():
    mlp = MLP([8, 16, 16, 4])
    assert layer_reprs(mlp) == [
        "Linear(in_features=8, out_features=16, bias=False)",
        "BatchNorm1d(16, eps=1e-05, momentum=0.1, affine=True, bias=True, track_running_stats=True)",
        "ReLU(inplace=True)",
        "Linear(in_features=16, out_features=16, bias=False)",
        "BatchNorm1d(16, eps=1e-05, momentum=0.1, affine=True, bias=True, track_running_stats=True)",
        "ReLU(inplace=True)",
        "Linear(in_features=16, out_features=4, bias=True)",
    ]
    assert mlp(torch.randn(5, 8)).shape == (5, 4)
    tail = mlp[3:]
    assert type(tail) is nn.Sequential and tail[0] is mlp[3] and len(tail) == 4

    plain = MLP([8, 16, 4], batch_norm=False, activation="gelu", last_bias=False)
    assert [type(m) for m in plain] == [nn.Linear, nn.GELU, nn.Linear]
    assert plain[0].bias is not None and plain[2].bias is None  # hidden bias defaults to "no BatchNorm follows"

    single = MLP([8, 4], last_batch_norm=True)
    assert [type(m) for m in single] == [nn.Linear, nn.BatchNorm1d]
    assert not single[1].affine
    assert MLP([8, 4], last_batch_norm=True, last_batch_norm_affine=True)[1].affine
    assert MLP([8, 16, 4], hidden_bias=True)[0].bias is not None


def test_mlp_matches_a_hand_computation_with_batch_statistics():
    torch.manual_seed(0)
    mlp = MLP([3, 5, 2], last_batch_norm=True).train()
    with torch.no_grad():
        mlp[1].weight.uniform_(0.5, 1.5)
        mlp[1].bias.uniform_(-0.5, 0.5)
    x = torch.randn(6, 3, dtype=torch.float64)
    mlp.double()
    h = x @ mlp[0].weight.T
    h = (h - h.mean(0)) / torch.sqrt(h.var(0, unbiased=False) + 1e-5) * mlp[1].weight + mlp[1].bias
    z = h.clamp_min(0) @ mlp[3].weight.T + mlp[3].bias
    z = (z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + 1e-5)
    torch.testing.assert_close(mlp(x), z, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(dims=[8]), "at least 2 widths"),
        (dict(dims=[]), "at least 2 widths"),
        (dict(dims=[8, 0, 4]), "integers >= 1"),
        (dict(dims=[8, -2]), "integers >= 1"),
        (dict(dims=[8, 2.5]), "integers >= 1"),
        (dict(dims=[8, True]), "integers >= 1"),
        (dict(dims=[8, 4], activation="tanh"), r"one of \['gelu', 'relu'\]"),
    ],
)
def test_mlp_rejects_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MLP(**kwargs)


# --- ProjectionHead ------------------------------------------------------------------------------


def test_projection_head_keeps_its_state_dict_keys_and_module_order():
    assert list(ProjectionHead(8, 16, 4).state_dict()) == [
        "layers.0.weight",
        "layers.1.weight", "layers.1.bias", "layers.1.running_mean", "layers.1.running_var",
        "layers.1.num_batches_tracked",
        "layers.3.weight", "layers.3.bias",
    ]  # fmt: skip
    assert list(ProjectionHead(8, 16, 4, num_layers=3, last_batch_norm=True).state_dict()) == [
        "layers.0.weight",
        "layers.1.weight", "layers.1.bias", "layers.1.running_mean", "layers.1.running_var",
        "layers.1.num_batches_tracked",
        "layers.3.weight",
        "layers.4.weight", "layers.4.bias", "layers.4.running_mean", "layers.4.running_var",
        "layers.4.num_batches_tracked",
        "layers.6.weight",
        "layers.7.running_mean", "layers.7.running_var", "layers.7.num_batches_tracked",
    ]  # fmt: skip
    assert list(ProjectionHead(8, 16, 4, num_layers=1).state_dict()) == ["layers.0.weight", "layers.0.bias"]


@pytest.mark.parametrize("num_layers, last_batch_norm", [(1, False), (2, False), (3, False), (2, True), (3, True)])
def test_projection_head_loads_checkpoints_of_the_previous_class(num_layers, last_batch_norm):
    torch.manual_seed(0)
    old = ReferenceProjectionHead(8, 16, 4, num_layers, last_batch_norm)
    old(torch.randn(10, 8))  # move the BatchNorm running statistics away from their initial values
    new = ProjectionHead(8, 16, 4, num_layers, last_batch_norm)
    assert layer_reprs(new.layers) == layer_reprs(old.layers)
    assert list(new.state_dict()) == list(old.state_dict())
    new.load_state_dict(old.state_dict(), strict=True)
    x = torch.randn(6, 8)
    assert torch.equal(new.eval()(x), old.eval()(x))
    assert torch.equal(new.train()(x), old.train()(x))


def test_projection_head_rejects_invalid_arguments():
    with pytest.raises(ValueError, match="num_layers >= 1"):
        ProjectionHead(8, 16, 4, num_layers=0)
    with pytest.raises(ValueError, match="integers >= 1"):
        ProjectionHead(8, 0, 4, num_layers=2)


# --- PredictionHead ------------------------------------------------------------------------------


def test_prediction_heads_of_byol_simsiam_and_mocov3():
    byol = PredictionHead(256, 4096, 256)
    assert layer_reprs(byol.layers)[::3] == [
        "Linear(in_features=256, out_features=4096, bias=False)",
        "Linear(in_features=4096, out_features=256, bias=True)",
    ]
    assert isinstance(byol.layers[1], nn.BatchNorm1d) and isinstance(byol.layers[2], nn.ReLU)
    assert byol(torch.randn(4, 256)).shape == (4, 256)

    simsiam = PredictionHead(2048, 512, 2048)
    assert (simsiam.layers[0].out_features, simsiam.layers[3].out_features) == (512, 2048)
    assert simsiam(torch.randn(4, 2048)).shape == (4, 2048)

    mocov3_vit = PredictionHead(256, 4096, 256, last_bias=False, last_batch_norm=True)
    assert mocov3_vit.layers[3].bias is None
    assert isinstance(mocov3_vit.layers[4], nn.BatchNorm1d) and not mocov3_vit.layers[4].affine
    output = mocov3_vit(torch.randn(4, 256))
    assert output.shape == (4, 256)
    output.square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in mocov3_vit.parameters())

    with pytest.raises(ValueError, match="num_layers >= 1"):
        PredictionHead(256, 4096, 256, num_layers=0)


# --- DINOHead ------------------------------------------------------------------------------------


def small_dino_head(**kwargs) -> DINOHead:
    torch.manual_seed(0)
    return DINOHead(8, **{"output_dim": 32, "hidden_dim": 16, "bottleneck_dim": 6, **kwargs})


def test_dino_head_defaults_and_shapes():
    head = DINOHead(12)
    assert [type(m) for m in head.mlp] == [nn.Linear, nn.GELU, nn.Linear, nn.GELU, nn.Linear]
    assert [m.out_features for m in head.mlp[::2]] == [2048, 2048, 256]
    assert all(m.bias is not None for m in head.mlp[::2])
    assert head.last_layer.weight.shape == (65536, 256)
    assert head(torch.randn(3, 12)).shape == (3, 65536)
    with_bn = small_dino_head(batch_norm=True, num_layers=2)
    assert [type(m) for m in with_bn.mlp] == [nn.Linear, nn.BatchNorm1d, nn.GELU, nn.Linear]
    assert with_bn(torch.randn(3, 8)).shape == (3, 32)


def test_dino_head_fixed_magnitude_gives_unit_rows_and_is_not_trainable():
    head = small_dino_head()
    assert head.last_layer.weight_g is None
    torch.testing.assert_close(head.last_layer.weight.norm(dim=1), torch.ones(32))
    trainable = {name for name, p in head.named_parameters() if p.requires_grad}
    assert trainable == {name for name, _ in head.mlp.named_parameters(prefix="mlp")} | {"last_layer.weight_v"}
    assert list(head.state_dict()) == [*head.mlp.state_dict(prefix="mlp."), "last_layer.weight_v"]

    x = torch.randn(5, 8)
    bottleneck = F.normalize(head.mlp(x), dim=1)
    v = head.last_layer.weight_v
    torch.testing.assert_close(head(x), bottleneck @ (v / v.norm(dim=1, keepdim=True)).T, rtol=1e-5, atol=1e-6)
    assert head(x).abs().max() <= 1 + 1e-6  # cosine similarities


def test_dino_head_trainable_magnitude():
    head = small_dino_head(norm_last_layer=False)
    g, v = head.last_layer.weight_g, head.last_layer.weight_v
    assert g.shape == (32, 1) and g.requires_grad and torch.equal(g, torch.ones(32, 1))
    with torch.no_grad():
        g.uniform_(0.5, 2.0)
    x = torch.randn(5, 8)
    expected = F.normalize(head.mlp(x), dim=1) @ (g * v / v.norm(dim=1, keepdim=True)).T
    torch.testing.assert_close(head(x), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(head.last_layer.weight.norm(dim=1, keepdim=True), g.detach())
    head(x).sum().backward()
    assert g.grad is not None and g.grad.abs().sum() > 0


@pytest.mark.parametrize("norm_last_layer", [True, False])
@pytest.mark.parametrize("batch_norm", [False, True])
def test_dino_head_matches_dinos_released_head(norm_last_layer, batch_norm):
    torch.manual_seed(0)
    reference = ReferenceDINOHead(8, 32, batch_norm, norm_last_layer, nlayers=3, hidden_dim=16, bottleneck_dim=6)
    with torch.no_grad():
        reference.last_layer.parametrizations.weight.original0.uniform_(0.5, 2.0)  # a learnt g (ignored when fixed)
    state = reference.state_dict()
    g = state.pop("last_layer.parametrizations.weight.original0")
    state["last_layer.weight_v"] = state.pop("last_layer.parametrizations.weight.original1")
    if not norm_last_layer:
        state["last_layer.weight_g"] = g
    else:
        with torch.no_grad():
            reference.last_layer.parametrizations.weight.original0.fill_(1)
    head = small_dino_head(batch_norm=batch_norm, norm_last_layer=norm_last_layer)
    head.load_state_dict(state, strict=True)
    x = torch.randn(5, 8)
    torch.testing.assert_close(head(x), reference(x), rtol=1e-5, atol=1e-6)
    assert {n for n, p in head.named_parameters() if p.requires_grad} == {
        n.replace("parametrizations.weight.original0", "weight_g").replace(
            "parametrizations.weight.original1", "weight_v"
        )
        for n, p in reference.named_parameters()
        if p.requires_grad
    }


@pytest.mark.parametrize("norm_last_layer", [True, False])
def test_dino_head_deepcopy_is_an_equal_independent_teacher(norm_last_layer):
    student = small_dino_head(batch_norm=True, norm_last_layer=norm_last_layer)
    teacher = copy.deepcopy(student).requires_grad_(False)
    x = torch.randn(5, 8)
    assert torch.equal(teacher(x), student(x))
    for (name, s), (_, t) in zip(student.named_parameters(), teacher.named_parameters()):
        assert s.data_ptr() != t.data_ptr(), name
        assert s.requires_grad and not t.requires_grad
    before = copy.deepcopy(teacher.state_dict())
    optimizer = torch.optim.SGD(student.parameters(), lr=1.0)
    student(x).square().sum().backward()
    optimizer.step()
    assert all(torch.equal(before[k], teacher.state_dict()[k]) for k in before)
    assert not torch.equal(student.last_layer.weight_v, teacher.last_layer.weight_v)


@pytest.mark.parametrize("norm_last_layer", [True, False])
def test_dino_head_state_dict_and_safetensors_round_trip(tmp_path, norm_last_layer):
    student = small_dino_head(batch_norm=True, norm_last_layer=norm_last_layer)
    student(torch.randn(5, 8))  # non-trivial BatchNorm statistics
    pair = nn.ModuleDict({"student": student, "teacher": copy.deepcopy(student)})
    save_file(pair.state_dict(), tmp_path / "heads.safetensors")  # refuses tensors that share storage
    restored = nn.ModuleDict(
        {
            "student": small_dino_head(batch_norm=True, norm_last_layer=norm_last_layer),
            "teacher": small_dino_head(batch_norm=True, norm_last_layer=norm_last_layer),
        }
    )
    restored.load_state_dict(load_file(tmp_path / "heads.safetensors"), strict=True)
    x = torch.randn(4, 8)
    for name in ("student", "teacher"):
        assert torch.equal(restored[name].eval()(x), pair[name].eval()(x))


@pytest.mark.parametrize("norm_last_layer", [True, False])
def test_cancel_last_layer_gradients_freezes_it_through_adamw_with_weight_decay(norm_last_layer):
    head = small_dino_head(norm_last_layer=norm_last_layer)
    optimizer = torch.optim.AdamW(head.parameters(), lr=0.1, weight_decay=0.5)
    last_before = copy.deepcopy(head.last_layer.state_dict())
    mlp_before = copy.deepcopy(head.mlp.state_dict())
    x = torch.randn(5, 8)

    head(x).square().sum().backward()
    head.cancel_last_layer_gradients()
    assert all(p.grad is None for p in head.last_layer.parameters())
    optimizer.step()
    assert all(torch.equal(last_before[k], v) for k, v in head.last_layer.state_dict().items())
    assert all(not torch.equal(mlp_before[k], v) for k, v in head.mlp.state_dict().items())

    optimizer.zero_grad()
    head(x).square().sum().backward()  # once unfrozen, the same step moves the last layer
    optimizer.step()
    assert all(not torch.equal(last_before[k], v) for k, v in head.last_layer.state_dict().items())


def test_dino_head_rejects_invalid_arguments():
    with pytest.raises(ValueError, match="num_layers >= 1"):
        DINOHead(8, num_layers=0)
    with pytest.raises(ValueError, match="integers >= 1"):
        DINOHead(8, bottleneck_dim=0)
    with pytest.raises(ValueError, match="out_features must be an integer >= 1"):
        DINOHead(8, output_dim=0, hidden_dim=16, bottleneck_dim=4)
    with pytest.raises(ValueError, match="in_features must be an integer >= 1"):
        WeightNormLinear(0, 4)


# --- Prototypes ----------------------------------------------------------------------------------


def test_prototypes_normalize_and_scores():
    torch.manual_seed(0)
    prototypes = Prototypes(6, num_prototypes=10)
    assert prototypes.weight.shape == (10, 6) and prototypes.bias is None and prototypes.num_prototypes == 10
    with torch.no_grad():
        prototypes.weight.mul_(5.0)
    prototypes.normalize_()
    assert prototypes.weight.requires_grad and prototypes.weight.grad is None and prototypes.weight.is_leaf
    torch.testing.assert_close(prototypes.weight.norm(dim=1), torch.ones(10))

    features = 100 * torch.randn(7, 6)
    scores = prototypes(features)
    assert scores.shape == (7, 10)
    assert scores.abs().max() <= 1 + 1e-6
    torch.testing.assert_close(scores, F.normalize(features, dim=1) @ prototypes.weight.T)
    torch.testing.assert_close(
        scores, F.cosine_similarity(features[:, None], prototypes.weight[None], dim=-1), rtol=1e-5, atol=1e-6
    )
    torch.testing.assert_close(prototypes(F.normalize(features, dim=1)), scores)  # idempotent on unit inputs


def test_prototypes_cancel_gradients_freezes_them():
    prototypes = Prototypes(6, num_prototypes=10)
    optimizer = torch.optim.AdamW(prototypes.parameters(), lr=0.1, weight_decay=0.5)
    before = prototypes.weight.detach().clone()
    prototypes(torch.randn(4, 6)).square().sum().backward()
    assert prototypes.weight.grad.abs().sum() > 0
    prototypes.cancel_gradients()
    optimizer.step()
    assert torch.equal(prototypes.weight, before)


@pytest.mark.parametrize("num_prototypes", [0, -3, 2.5, True])
def test_prototypes_reject_invalid_counts(num_prototypes):
    with pytest.raises(ValueError, match="num_prototypes must be an integer >= 1"):
        Prototypes(6, num_prototypes=num_prototypes)
    with pytest.raises(ValueError, match="dim must be an integer >= 1"):
        Prototypes(0, num_prototypes=4)
