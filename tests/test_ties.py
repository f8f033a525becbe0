"""Tied parameters: one Parameter under several names is one set of vertices (float64 references)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import subspace_param as sp
from subspace_param import ties


class TiedLM(nn.Module):
    """Embedding and output projection share one Parameter, like a language model's tied embeddings."""

    def __init__(self, vocab: int = 13, width: int = 7) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.mid = nn.Linear(width, width)
        self.out = nn.Linear(width, vocab, bias=False)
        self.out.weight = self.embed.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.mid(self.embed(tokens))))


def _model() -> TiedLM:
    torch.manual_seed(0)
    return TiedLM().double()


TOKENS = torch.randint(0, 13, (3, 5), generator=torch.Generator().manual_seed(1))


def test_check_model_reports_ties_as_shared() -> None:
    report = sp.check_model(_model())
    assert report.ok and report.shared == {"out.weight": "embed.weight"}
    assert report.selected == ["embed.weight", "mid.weight", "mid.bias"]
    assert "out.weight is embed.weight" in str(report)
    excluded = sp.check_model(_model(), filter_fn=lambda m, n: n != "embed.weight")
    assert ("out.weight", "tied to embed.weight, which is not in the subspace") in excluded.skipped


def test_a_module_reused_under_two_names_is_not_a_tie() -> None:
    block = nn.Linear(4, 4)
    model = nn.Sequential(block, nn.Tanh(), block).double()
    report = sp.check_model(model)
    assert report.ok and not report.shared and report.selected == ["0.weight", "0.bias"]


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("geometry", ["line", "simplex"])
def test_tied_vertices_are_stored_once_and_get_both_gradients(fused: bool, geometry: str) -> None:
    model = _model()
    sub = (
        sp.line(model, seed=2, fused=fused)
        if geometry == "line"
        else sp.simplex(model, vertices=3, seed=2, fused=fused)
    )
    point = 0.3 if geometry == "line" else [0.2, 0.5, 0.3]
    sub.set_point(point)
    k = sub.num_vertices
    assert len(list(model.parameters())) == 3 * k  # embed/out weight once, mid weight and bias
    assert model.out.parametrizations.weight is model.embed.parametrizations.weight
    assert sub.regularized_tensors() == ["embed.weight", "mid.weight"]
    model(TOKENS).square().sum().backward()
    # float64 reference: the plain model at the point, whose tied weight collects both uses
    plain = sub.export(point)
    assert plain.out.weight is plain.embed.weight
    torch.testing.assert_close(plain(TOKENS), model(TOKENS), rtol=0, atol=0)
    plain(TOKENS).square().sum().backward()
    c = sub.coefficients.reshape(-1, k)[0]
    for name, row in zip(sub.tensor_names, sub.vertices()):
        reference = plain.get_parameter(name).grad
        for j, v in enumerate(row):
            torch.testing.assert_close(v.grad, c[j] * reference, rtol=1e-10, atol=1e-12, msg=f"{name}[{j}]")


def test_save_load_state_dict_and_deepcopy_keep_the_tie(tmp_path) -> None:
    model = _model()
    sub = sp.line(model, seed=3)
    sub.set_point(0.8)
    expected = model(TOKENS)
    sp.save(sub, tmp_path / "tied.pt")
    fresh = _model()
    loaded = sp.load(tmp_path / "tied.pt", fresh)
    assert loaded.spec["ties"] == {"out.weight": "embed.weight"}
    torch.testing.assert_close(fresh(TOKENS), expected, rtol=0, atol=0)
    assert fresh.out.parametrizations.weight is fresh.embed.parametrizations.weight
    other = _model()
    sp.line(other, seed=9).set_point(0.8)
    other.load_state_dict(model.state_dict())
    torch.testing.assert_close(other(TOKENS), expected, rtol=0, atol=0)
    twin = copy.deepcopy(model)
    assert twin.out.parametrizations.weight is twin.embed.parametrizations.weight
    torch.testing.assert_close(twin(TOKENS), expected, rtol=0, atol=0)


def test_a_projection_counts_a_tied_tensor_once_and_export_reties() -> None:
    model = _model()
    sub = sp.projection(model, dim=11, seed=0)
    assert sub.num_params == 13 * 7 + 7 * 7 + 7
    with torch.no_grad():
        sub.omega.copy_(torch.randn(11, dtype=sub.omega.dtype))
    out = model(TOKENS)
    plain = sub.export()
    assert plain.out.weight is plain.embed.weight
    torch.testing.assert_close(plain(TOKENS), out, rtol=0, atol=0)


def test_a_failed_wrap_restores_the_tie(monkeypatch) -> None:
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    objects = {n: p for n, p in model.named_parameters()}

    def broken(primary, secondary):
        raise RuntimeError("injected failure while sharing")

    monkeypatch.setattr(ties, "share", broken)
    with pytest.raises(RuntimeError, match="injected failure"):
        sp.line(model, seed=0)
    assert not sp.is_wrapped(model) and model.out.weight is model.embed.weight
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # the very same Parameter objects (an optimizer built before the failed wrap still works)
    assert {n: p for n, p in model.named_parameters()}.keys() == objects.keys()
    assert all(model.get_parameter(n) is p for n, p in objects.items())
    assert type(model.mid) is nn.Linear and type(model.embed) is nn.Embedding
