"""Vertices drawn like the model's own initialisation: per-tensor scale, constants, Rebuild, HF."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import subspace_param as sp
from subspace_param.vertex_init import vertex_seed

MODELS = {
    "resnet18": lambda: torchvision.models.resnet18(num_classes=10),
    "efficientnet_b0": lambda: torchvision.models.efficientnet_b0(num_classes=10),
    "mobilenet_v3_small": lambda: torchvision.models.mobilenet_v3_small(num_classes=10),
    "vgg11_bn": lambda: torchvision.models.vgg11_bn(num_classes=10),
}


def _timm_model():
    timm = pytest.importorskip("timm")
    return timm.create_model("convnext_atto", pretrained=False, num_classes=10)


def _check_scales(model: nn.Module) -> int:
    sub = sp.line(model, seed=0)
    checked = 0
    for name, (v0, v1) in zip(sub.tensor_names, sub.vertices()):
        flat0 = v0.detach().flatten()
        if flat0.numel() <= 1 or bool((flat0 == flat0[0]).all()):
            assert torch.equal(v0, v1), f"{name}: a constant tensor must start constant"
            continue
        ratio = float(v1.detach().double().std() / v0.detach().double().std())
        assert 0.8 <= ratio <= 1.25, f"{name}: std(V1)/std(V0) = {ratio:.2f}"
        assert not torch.equal(v0, v1), name
        checked += 1
    assert float(sub.regularizer(1.0).detach()) < 0.05  # independent draws: nearly orthogonal ends
    return checked


@pytest.mark.parametrize("name", sorted(MODELS))
def test_torchvision_vertices_start_at_the_models_own_scale(name: str) -> None:
    torch.manual_seed(0)
    assert _check_scales(MODELS[name]()) > 5


def test_timm_vertices_start_at_the_models_own_scale() -> None:
    torch.manual_seed(0)
    assert _check_scales(_timm_model()) > 5


def test_hugging_face_vertices_use_the_models_own_init_weights() -> None:
    tr = pytest.importorskip("transformers")
    tr.logging.set_verbosity_error()
    torch.manual_seed(0)
    config = tr.BertConfig(
        vocab_size=300, hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
        max_position_embeddings=64,
    )  # fmt: skip
    model = tr.BertForSequenceClassification(config)
    report = sp.check_model(model)
    assert set(report.vertex_draws.values()) == {"Hugging Face _init_weights", "constant: copied"}
    assert _check_scales(model) > 10


def test_check_model_says_how_each_tensor_is_drawn() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    model.register_parameter("free", nn.Parameter(torch.randn(5)))
    draws = sp.check_model(model).vertex_draws
    assert draws["0.weight"] == "Conv2d.reset_parameters, rescaled to V0's mean and std"
    assert draws["1.weight"] == draws["1.bias"] == "constant: copied"
    assert draws["free"] == "normal with V0's mean and std (the owner has no initialiser)"
    assert "extra vertices (init='independent')" in str(sp.check_model(model))


def test_rebuild_takes_every_vertex_from_a_fresh_build_under_its_own_seed() -> None:
    def build() -> nn.Module:
        return torchvision.models.resnet18(num_classes=10)

    torch.manual_seed(0)
    model = build()
    sub = sp.simplex(model, vertices=3, init=sp.Rebuild(build), seed=4)
    for k in (1, 2):
        torch.manual_seed((vertex_seed(4) + k) % 2**63)
        reference = dict(build().named_parameters())
        for name, v in sub.vertex(k).items():
            assert torch.equal(v, reference[name]), (k, name)
    assert not torch.equal(sub.vertex(1)["conv1.weight"], sub.vertex(2)["conv1.weight"])
    with pytest.raises(TypeError, match="builder must be callable"):
        sp.Rebuild(build())
