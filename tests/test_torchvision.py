"""Any torchvision classifier is wrapped in one call: forward/backward on tiny inputs, vertex 0
reproduces the original network exactly, export equals the wrapped model."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torchvision.models.vision_transformer import VisionTransformer

import subspace_param as sp

ARCHITECTURES = {
    "resnet18": lambda: torchvision.models.resnet18(num_classes=10),  # BatchNorm
    "mobilenet_v3_small": lambda: torchvision.models.mobilenet_v3_small(num_classes=10),  # depthwise, SE
    "efficientnet_b0": lambda: torchvision.models.efficientnet_b0(
        num_classes=10
    ),  # depthwise, stochastic depth
    "shufflenet_v2_x0_5": lambda: torchvision.models.shufflenet_v2_x0_5(num_classes=10),
    "squeezenet1_1": lambda: torchvision.models.squeezenet1_1(num_classes=10),
    "regnet_y_400mf": lambda: torchvision.models.regnet_y_400mf(num_classes=10),
    "convnext_tiny": lambda: torchvision.models.convnext_tiny(num_classes=10),  # LayerNorm, layer scale
    # torchvision's VisionTransformer class, at a size that runs on CPU in CI
    "vit": lambda: VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=10
    ),
}


@pytest.mark.parametrize("name", ARCHITECTURES)
@pytest.mark.parametrize("kind", ["line", "simplex"])
def test_wrap_any_torchvision_classifier(name, kind):
    model = ARCHITECTURES[name]()
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        original = model(x)
    n_params = sum(1 for p in model.parameters())
    sub = sp.line(model, seed=0) if kind == "line" else sp.simplex(model, vertices=3, seed=0)
    assert len(sub.tensor_names) == n_params  # every floating parameter is covered
    with torch.no_grad(), sub.at(sub.geometry.vertex_point(0)):
        torch.testing.assert_close(model(x), original, rtol=0, atol=0)
    sub.sample()
    model.train()
    y = model(x)
    assert y.shape == (2, 10) and torch.isfinite(y).all()
    (y.square().mean() + sub.regularizer()).backward()
    missing = [n for n, row in zip(sub.tensor_names, sub.vertices()) for v in row if v.grad is None]
    assert not missing, missing[:5]
    model.eval()
    plain = sub.export()
    assert type(plain) is type(ARCHITECTURES[name]())
    with torch.no_grad():
        torch.testing.assert_close(plain(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize("method", ["generated", "fastfood", "sparse", "dense", "orthonormal"])
@pytest.mark.parametrize("name", ["squeezenet1_1", "vit"])
def test_projection_trains_torchvision_classifiers(name, method):
    model = ARCHITECTURES[name]()
    model.eval()  # a fixed forward (no dropout) to compare outputs
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    with torch.no_grad():
        original = model(x)
    sub = sp.projection(model, dim=16, method=method, seed=0)
    torch.testing.assert_close(model(x), original, rtol=1e-4, atol=1e-5)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    assert sub.omega.grad is not None and sub.omega.grad.abs().sum() > 0
    opt.step()
    assert torch.nn.functional.cross_entropy(model(x), y) < loss  # one step in ω lowers the loss
    torch.testing.assert_close(sub.export()(x), model(x))
