"""The parametrization is a function of the vertices and the root's point buffer, nothing else:
functional_call / vmap over points, parametrize.cached(), state_dict loading and the hook order."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call, vmap
from torch.nn.utils import parametrize

import subspace_param as sp
from subspace_param.names import LEGACY_COEFFICIENTS_KEY, POINT_BUFFER


def _mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 9), nn.Tanh(), nn.Linear(9, 3)).double()


X = torch.randn(6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("geometry", ["line", "bezier", "simplex", "line-layerwise"])
def test_functional_call_with_a_point_gives_the_model_at_that_point(geometry: str, fused: bool) -> None:
    model = _mlp()
    if geometry == "simplex":
        sub, point = sp.simplex(model, vertices=4, seed=1, fused=fused), torch.tensor([0.1, 0.2, 0.3, 0.4])
    elif geometry == "bezier":
        sub, point = sp.curve(model, seed=1, fused=fused), torch.tensor([0.7])
    elif geometry == "line":
        sub, point = sp.line(model, seed=1, fused=fused), torch.tensor([0.7])
    else:
        sub, point = sp.line(model, seed=1, layerwise=True, fused=fused), torch.tensor([[0.2], [0.9]])
    sub.set_point(sub.center())
    rows = point.reshape(sub.num_groups, -1).to(torch.float64)
    out = functional_call(model, {POINT_BUFFER: rows}, (X,))
    with sub.at(point):
        expected = model(X)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    assert torch.equal(sub.point, sub.center().to(sub.point.dtype).expand_as(sub.point))  # unchanged


def test_vmap_over_points_equals_a_loop() -> None:
    model = _mlp()
    sub = sp.line(model, seed=2)
    alphas = torch.tensor([0.0, 0.25, 0.6, 1.0], dtype=torch.float64).reshape(4, 1, 1)
    batched = vmap(lambda p: functional_call(model, {POINT_BUFFER: p}, (X,)))(alphas)
    for a, out in zip(alphas.flatten().tolist(), batched):
        with sub.at(a):
            torch.testing.assert_close(out, model(X), rtol=1e-12, atol=1e-12)


def test_set_point_inside_parametrize_cached_takes_effect() -> None:
    model = _mlp()
    sub = sp.line(model, seed=3)
    v0, v1 = sub.vertices()[0]
    with parametrize.cached():
        sub.set_point(0.2)
        torch.testing.assert_close(model[0].weight, torch.lerp(v0, v1, 0.2))
        sub.set_point(0.8)  # the cached weight of 0.2 must not be returned
        torch.testing.assert_close(model[0].weight, torch.lerp(v0, v1, 0.8))
        with sub.at(0.5):
            torch.testing.assert_close(model[0].weight, torch.lerp(v0, v1, 0.5))
        torch.testing.assert_close(model[0].weight, torch.lerp(v0, v1, 0.8))


def test_loading_only_the_point_moves_the_model(tmp_path) -> None:
    model = _mlp()
    sub = sp.line(model, seed=4)
    sub.set_point(0.1)
    model.load_state_dict({POINT_BUFFER: torch.tensor([[0.9]], dtype=torch.float64)}, strict=False)
    with sub.at(0.9):
        expected = model(X)
    sub.set_point(0.9)
    torch.testing.assert_close(model(X), expected, rtol=0, atol=0)
    assert LEGACY_COEFFICIENTS_KEY not in model.state_dict()  # the point is stored once
    # a file written when the coefficients were a second buffer still loads
    path = sp.save(sub, tmp_path / "s.pt")
    payload = torch.load(path, weights_only=True)
    payload["state_dict"][LEGACY_COEFFICIENTS_KEY] = torch.tensor([[0.5, 0.5]], dtype=torch.float64)
    torch.save(payload, path)
    fresh = _mlp()
    sp.load(path, fresh)
    torch.testing.assert_close(fresh(X), expected, rtol=0, atol=0)


def test_group_k_and_backend_live_in_the_root_spec() -> None:
    model = _mlp()
    sub = sp.line(model, seed=5, layerwise=True)
    p = model[2].parametrizations.weight[0]
    assert not hasattr(p, "group") and not hasattr(p, "backend") and not hasattr(p, "num_vertices")
    assert sub.spec["groups"] == [0, 0, 1, 1] and sub.spec["backend"] in ("auto", "torch", "triton")


@pytest.mark.parametrize("fused", [False, True])
def test_hook_order_a_point_chosen_in_a_prepended_pre_hook_is_used(fused: bool) -> None:
    """The contract: hooks that choose the point register with ``prepend=True`` and so run before
    the fused path's pre-hook (which materialises every weight at the point it finds)."""
    model = _mlp()
    sub = sp.line(model, seed=6, fused=fused)
    ours = list(model._forward_pre_hooks.values())
    handle = model.register_forward_pre_hook(lambda module, args: sub.set_point(0.75), prepend=True)
    assert list(model._forward_pre_hooks.values())[1:] == ours
    sub.set_point(0.1)
    out = model(X)
    handle.remove()
    with sub.at(0.75):
        torch.testing.assert_close(out, model(X), rtol=0, atol=0)
