"""The engine against a hand-written float64 reference: outputs, gradients, points, layerwise."""

from __future__ import annotations

import pytest
import torch
from helpers import reference_mlp_forward, small_cnn, small_mlp
from torch import nn
from torch.func import functional_call

import subspace_param as sp

WRAPPERS = {
    "line": lambda m, **kw: sp.line(m, **kw),
    "curve": lambda m, **kw: sp.curve(m, **kw),
    "chain2": lambda m, **kw: sp.chain(m, bends=2, **kw),
    "simplex4": lambda m, **kw: sp.simplex(m, vertices=4, **kw),
}


def _clone_vertices(sub):
    return [[v.detach().clone().requires_grad_(True) for v in row] for row in sub.vertices()]


@pytest.mark.parametrize("kind", WRAPPERS)
def test_outputs_and_gradients_match_float64_reference(kind):
    model = small_mlp()
    sub = WRAPPERS[kind](model, seed=0)
    x = torch.randn(13, 7, dtype=torch.float64)
    for _ in range(3):
        point = sub.sample()
        ref_vertices = _clone_vertices(sub)
        coeffs = sub.geometry.coefficients(point.double())
        y = model(x)
        y_ref = reference_mlp_forward(x, ref_vertices, coeffs)
        torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
        g = torch.randn_like(y)
        for p in model.parameters():
            p.grad = None
        y.backward(g)
        y_ref.backward(g)
        for row, ref_row in zip(sub.vertices(), ref_vertices):
            for v, rv in zip(row, ref_row):
                torch.testing.assert_close(v.grad, rv.grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", WRAPPERS)
def test_gradcheck_through_parametrize(kind):
    model = small_mlp()
    sub = WRAPPERS[kind](model, seed=1)
    sub.sample()
    names = [n for n, _ in model.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in model.parameters())
    x = torch.randn(3, 7, dtype=torch.float64)

    def f(*ps):
        return functional_call(model, dict(zip(names, ps)), (x,))

    assert torch.autograd.gradcheck(f, params)


def test_parameters_are_the_vertices_and_the_point_starts_at_center():
    model = small_mlp()
    sub = sp.simplex(model, vertices=3, seed=0)
    assert len(list(model.parameters())) == 4 * 3
    assert {id(p) for p in model.parameters()} == {id(p) for p in sub.parameters()}
    torch.testing.assert_close(sub.point, torch.full((3,), 1 / 3, dtype=torch.float64))
    assert sub.tensor_names == ["0.weight", "0.bias", "2.weight", "2.bias"]


def test_vertex0_is_the_original_model_and_vertices_differ():
    model = small_mlp()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    sub = sp.line(model, seed=0)
    for name, v0 in sub.vertex(0).items():
        assert torch.equal(v0, before[name])
    with sub.at(0.0):
        assert torch.equal(model[0].weight, before["0.weight"])
    assert not torch.equal(sub.vertex(1)["0.weight"], before["0.weight"])


def test_at_restores_the_point_and_set_point_validates():
    model = small_mlp()
    sub = sp.line(model, seed=0)
    sub.set_point(0.25)
    with sub.at(0.9):
        assert float(sub.point) == pytest.approx(0.9)
    assert float(sub.point) == pytest.approx(0.25)
    with pytest.raises(sp.PointError, match="outside"):
        sub.set_point(1.5)
    sub.set_point(1.5, extrapolate=True)
    torch.testing.assert_close(
        model[0].weight, -0.5 * sub.vertex(0)["0.weight"] + 1.5 * sub.vertex(1)["0.weight"]
    )


def test_layerwise_draws_one_point_per_module():
    model = small_cnn()
    sub = sp.line(model, layerwise=True, seed=0)
    modules = {n.rsplit(".", 1)[0] for n in sub.tensor_names}
    assert sub.num_groups == len(modules) == 6
    p = sub.sample()
    assert p.shape == (6, 1) and len(set(p.flatten().tolist())) == 6
    # each module uses its own row
    names = sub.tensor_names
    for row_idx, (name, row) in enumerate(zip(names, sub.vertices())):
        del row_idx
        mod = model.get_submodule(name.rsplit(".", 1)[0])
        index = mod.parametrizations[name.rsplit(".", 1)[1]][0].index
        group = sub.spec["groups"][index]  # group, K and backend live in the root's spec
        a = float(p[group])
        torch.testing.assert_close(getattr(mod, name.rsplit(".", 1)[1]), torch.lerp(row[0], row[1], a))
    with sub.at(0.3):  # one point broadcast to every module
        assert torch.allclose(sub.point, torch.full((6, 1), 0.3, dtype=sub.point.dtype))
    with pytest.raises(sp.PointError, match="layerwise"):
        sub.set_point(torch.full((4, 1), 0.3))


def test_iter_samples_splits_the_batch_with_a_point_each():
    model = small_mlp()
    sub = sp.line(model, seed=0)
    x, y = torch.randn(10, 7, dtype=torch.float64), torch.arange(10)
    seen, points = [], []
    for _xc, yc in sub.iter_samples(x, y, num_samples=3):
        seen.append(yc)
        points.append(float(sub.point))
    assert torch.equal(torch.cat(seen), y)
    assert [len(s) for s in seen] == [4, 3, 3]
    assert len(set(points)) == 3
    with pytest.raises(ValueError, match="num_samples"):
        next(sub.iter_samples(x, num_samples=11))


def test_sampling_is_reproducible_with_seed():
    a = sp.line(small_mlp(), seed=5)
    b = sp.line(small_mlp(), seed=5)
    assert [float(a.sample()) for _ in range(4)] == [float(b.sample()) for _ in range(4)]


def test_filter_fn_and_frozen_and_unselected_parameters():
    model = small_cnn()
    model[1].weight.requires_grad_(False)
    sub = sp.line(model, filter_fn=lambda m, n: isinstance(m, (nn.Conv2d, nn.Linear)), seed=0)
    assert sub.tensor_names == ["0.weight", "0.bias", "3.weight", "3.bias", "9.weight", "9.bias"]
    report = sp.check_model(small_cnn(), filter_fn=lambda m, n: n.endswith("weight"))
    assert "0.bias" in dict(report.skipped) and report.ok


@pytest.mark.parametrize("init", ["copy", "perturb", sp.Perturb(0.1, seed=3), sp.Independent(seed=3)])
def test_init_strategies(init):
    model = small_cnn()
    before = model[0].weight.detach().clone()
    sub = sp.curve(model, init=init, seed=0)
    v = sub.vertex(2)["0.weight"]
    if init == "copy":
        assert torch.equal(v, before)
    else:
        assert not torch.equal(v, before) and v.shape == before.shape
    # the BN running stats are untouched by initialising vertices
    assert torch.equal(model[1].running_mean, torch.zeros(6))


def test_independent_init_uses_the_module_initialiser():
    model = nn.Sequential(nn.Linear(200, 300))
    sub = sp.line(model, seed=0)
    v0, v1 = sub.vertex(0)["0.weight"].detach(), sub.vertex(1)["0.weight"].detach()
    # a kaiming_uniform draw of nn.Linear's own reset_parameters, at V0's mean and std
    torch.testing.assert_close(v1.double().std(), v0.double().std(), rtol=1e-6, atol=0)
    torch.testing.assert_close(v1.double().mean(), v0.double().mean(), rtol=0, atol=1e-7)
    spread = float(v1.abs().max() / v1.std())  # uniform: max ≈ √3·std (a normal would reach ~4.5·std)
    assert abs(spread - 3**0.5) < 0.05, spread
    assert (
        abs(
            float(
                torch.corrcoef(
                    torch.stack([v1.detach().flatten(), sub.vertex(0)["0.weight"].detach().flatten()])
                )[0, 1]
            )
        )
        < 0.02
    )


def test_from_models_takes_vertices_and_fills_the_chord():
    a, b = small_mlp(), small_mlp()
    model = small_mlp()
    sub = sp.chain(model, bends=1, init=sp.FromModels([a, None, b]))
    torch.testing.assert_close(sub.vertex(0)["0.weight"], a[0].weight)
    torch.testing.assert_close(sub.vertex(2)["0.weight"], b[0].weight)
    torch.testing.assert_close(sub.vertex(1)["0.weight"], 0.5 * (a[0].weight + b[0].weight))


def test_float32_bf16_autocast_and_float64():
    for dtype in (torch.float32, torch.float64):
        model = small_cnn(dtype)
        sub = sp.simplex(model, 3, seed=0)
        sub.sample()
        y = model(torch.randn(2, 3, 9, 9, dtype=dtype))
        assert y.dtype == dtype
        y.sum().backward()
        assert all(p.grad is not None for p in sub.parameters())
    model = small_cnn()
    sub = sp.line(model, seed=0)
    x = torch.randn(2, 3, 9, 9)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = model(x)
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()
    model.eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        yb = model(x).float()
    torch.testing.assert_close(yb, model(x), atol=0.1, rtol=0.05)


def test_vertex_draws_differ_from_a_model_built_with_the_same_seed() -> None:
    """torch.manual_seed(s); model = Net(); sp.line(model, seed=s) must not redraw the model's own
    weights (the initialisers would run in the same order on the same random stream)."""
    for seed in (0, 3):
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(6, 9), nn.ReLU(), nn.Linear(9, 4))
        sub = sp.line(model, seed=seed)
        for name, (v0, v1) in zip(sub.tensor_names, sub.vertices()):
            assert not torch.equal(v0, v1), name
        assert float(sub.regularizer(1.0).detach()) < 0.1  # nearly orthogonal ends, not cos² = 1
        torch.manual_seed(seed)
        again = sp.line(nn.Sequential(nn.Linear(6, 9), nn.ReLU(), nn.Linear(9, 4)), seed=seed)
        assert all(torch.equal(a, b) for a, b in zip(sub.parameters(), again.parameters()))  # reproducible
