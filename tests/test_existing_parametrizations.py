"""Tensors that already carry a parametrization (weight_norm, spectral_norm, orthogonal, a user's
own): the subspace goes on their originals, the user's chain runs on the interpolated original,
and export keeps the user's parametrization."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import orthogonal, spectral_norm, weight_norm

import subspace_param as sp


class Symmetric(nn.Module):
    """A user's own parametrization (PyTorch's tutorial): X ↦ triu(X) + triu(X, 1)ᵀ."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.triu() + x.triu(1).transpose(-1, -2)

    def right_inverse(self, a: torch.Tensor) -> torch.Tensor:
        return a.triu()


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    m = nn.Sequential(
        nn.Conv2d(3, 5, 3), nn.ReLU(), nn.Flatten(), nn.Linear(5 * 6 * 6, 7), nn.Tanh(),
        nn.Linear(7, 7), nn.Linear(7, 7), nn.Linear(7, 3),
    ).double()  # fmt: skip
    weight_norm(m[0])
    spectral_norm(m[3])
    orthogonal(m[5])
    parametrize.register_parametrization(m[6], "weight", Symmetric())
    return m.eval()  # eval: spectral_norm's power iteration does not move u, v between calls


X = torch.randn(2, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
ORIGINALS = {
    "0.parametrizations.weight.original0": "0.weight (_WeightNorm)",
    "0.parametrizations.weight.original1": "0.weight (_WeightNorm)",
    "3.parametrizations.weight.original": "3.weight (_SpectralNorm)",
    "5.parametrizations.weight.original": "5.weight (_Orthogonal)",
    "6.parametrizations.weight.original": "6.weight (Symmetric)",
}


def test_check_model_puts_the_originals_in_the_subspace() -> None:
    report = sp.check_model(_model())
    assert report.ok and report.under_parametrization == ORIGINALS
    assert set(ORIGINALS) <= set(report.selected) and "0.bias" in report.selected
    assert "0.parametrizations.weight.original0 feeds 0.weight (_WeightNorm)" in str(report)
    # filter_fn sees the layer that owns the parametrized tensor
    no_conv = sp.check_model(_model(), filter_fn=lambda module, name: not isinstance(module, nn.Conv2d))
    assert not any(n.startswith("0.") for n in no_conv.selected)


@pytest.mark.parametrize("fused", [False, True])
def test_the_users_chain_runs_on_the_interpolated_originals(fused: bool) -> None:
    model = _model()
    sub = sp.line(model, seed=1, fused=fused)
    alpha = 0.3
    sub.set_point(alpha)
    out = model(X)
    plain = sub.export(alpha)
    torch.testing.assert_close(plain(X), out, rtol=0, atol=0)
    for name, kind in (
        ("0", "_WeightNorm"),
        ("3", "_SpectralNorm"),
        ("5", "_Orthogonal"),
        ("6", "Symmetric"),
    ):
        layer = plain.get_submodule(name)
        assert (
            parametrize.is_parametrized(layer, "weight")
            and type(layer.parametrizations.weight[0]).__name__ == kind
        )
    # the exported originals are the interpolated vertices, as plain Parameters
    for name, (v0, v1) in zip(sub.tensor_names, sub.vertices()):
        exported = plain.get_parameter(name)
        assert type(exported) is nn.Parameter
        torch.testing.assert_close(exported, torch.lerp(v0, v1, alpha), rtol=0, atol=1e-15)
    # float64 gradients: ∂L/∂V_k = c_k ∂L/∂(original) of the exported model
    model(X).square().sum().backward()
    plain(X).square().sum().backward()
    for name, (v0, v1) in zip(sub.tensor_names, sub.vertices()):
        reference = plain.get_parameter(name).grad
        torch.testing.assert_close(v0.grad, (1 - alpha) * reference, rtol=1e-10, atol=1e-12, msg=name)
        torch.testing.assert_close(v1.grad, alpha * reference, rtol=1e-10, atol=1e-12, msg=name)
    # the wrapped model is untouched by the export (the copy got classes of its own)
    assert type(plain[0]) is not type(model[0])
    torch.testing.assert_close(model(X), out, rtol=0, atol=0)
    sub.set_point(0.9)
    assert float((model(X) - out).detach().abs().max()) > 1e-3


def test_save_load_and_projection_over_parametrized_originals(tmp_path) -> None:
    model = _model()
    sub = sp.simplex(model, vertices=3, seed=2)
    sub.set_point([0.5, 0.2, 0.3])
    expected = model(X)
    sp.save(sub, tmp_path / "wn.pt")
    fresh = _model()
    sp.load(tmp_path / "wn.pt", fresh)
    torch.testing.assert_close(fresh(X), expected, rtol=0, atol=0)
    projected = _model()
    before = projected(X).detach()
    proj = sp.projection(projected, dim=9, seed=0)
    torch.testing.assert_close(projected(X), before)
    with torch.no_grad():
        proj.omega.copy_(torch.randn(9, dtype=proj.omega.dtype))
    moved = projected(X)
    torch.testing.assert_close(proj.export()(X), moved, rtol=0, atol=0)
    assert parametrize.is_parametrized(proj.export()[0], "weight")


@pytest.mark.filterwarnings("ignore:`torch.nn.utils.weight_norm` is deprecated")
def test_the_hook_based_weight_norm_is_refused_with_the_fix() -> None:
    legacy = nn.Sequential(nn.utils.weight_norm(nn.Linear(3, 4)), nn.Linear(4, 2))
    problems = sp.check_model(legacy).problems
    assert len(problems) == 1 and "module '0' uses the hook-based torch.nn.utils.weight_norm" in problems[0]
    assert "use torch.nn.utils.parametrizations.weight_norm" in problems[0]
    with pytest.raises(sp.SubspaceError, match="hook-based"):
        sp.line(legacy)
