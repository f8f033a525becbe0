"""Recurrent layers (nn.RNN / nn.LSTM / nn.GRU) in subspaces and projections, against float64 references."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import subspace_param as sp
from subspace_param import selection
from subspace_param.parametrization import SubspaceParametrization


class SequenceClassifier(nn.Module):
    def __init__(self, cell: nn.RNNBase, classes: int = 3) -> None:
        super().__init__()
        self.rnn = cell
        width = (cell.proj_size or cell.hidden_size) * (2 if cell.bidirectional else 1)
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(out.mean(dim=1))


CELLS = {
    "lstm-2layer-bidirectional": lambda: nn.LSTM(5, 7, num_layers=2, batch_first=True, bidirectional=True),
    "lstm-proj": lambda: nn.LSTM(5, 7, batch_first=True, proj_size=3),
    "gru": lambda: nn.GRU(5, 9, batch_first=True),
    "rnn-tanh-no-bias": lambda: nn.RNN(5, 6, num_layers=2, bias=False),
}


def _model(name: str) -> SequenceClassifier:
    torch.manual_seed(3)
    return SequenceClassifier(CELLS[name]()).double()


def _inputs(name: str) -> torch.Tensor:
    x = torch.randn(4, 11, 5, dtype=torch.float64)
    return x if CELLS[name]().batch_first else x.transpose(0, 1)


@pytest.mark.parametrize("name", sorted(CELLS))
@pytest.mark.parametrize("fused", [False, True])
def test_line_of_recurrent_models_equals_the_exported_model_and_its_gradients(name: str, fused: bool) -> None:
    model = _model(name)
    assert not sp.check_model(model).problems
    sub = sp.line(model, seed=1, fused=fused)
    x = _inputs(name)
    alpha = 0.3
    sub.set_point(alpha)
    out = model(x)
    plain = sub.export(alpha)
    assert type(plain.rnn) is type(CELLS[name]()) and not plain.rnn._forward_pre_hooks
    torch.testing.assert_close(out, plain(x), rtol=0, atol=0)
    sub.set_point(0.9)
    assert float((model(x) - out).detach().abs().max()) > 1e-3  # the recurrence follows the point
    # float64 reference: w = (1-α)V0 + αV1, so ∂L/∂V0 = (1-α)·∂L/∂w and ∂L/∂V1 = α·∂L/∂w
    sub.set_point(alpha)
    model.zero_grad()
    model(x).square().sum().backward()
    plain(x).square().sum().backward()
    grads = dict(plain.named_parameters())
    for tensor, (v0, v1) in zip(sub.tensor_names, sub.vertices()):
        reference = grads[tensor].grad
        torch.testing.assert_close(v0.grad, (1 - alpha) * reference, rtol=1e-10, atol=1e-12, msg=tensor)
        torch.testing.assert_close(v1.grad, alpha * reference, rtol=1e-10, atol=1e-12, msg=tensor)


def test_each_weight_is_computed_once_per_forward(monkeypatch) -> None:
    calls = {"n": 0}
    forward = SubspaceParametrization.forward

    def counting(self, *vertices):
        calls["n"] += 1
        return forward(self, *vertices)

    monkeypatch.setattr(SubspaceParametrization, "forward", counting)
    model = _model("lstm-2layer-bidirectional")
    sub = sp.line(model, seed=0, fused=False)
    calls["n"] = 0
    model(_inputs("lstm-2layer-bidirectional"))
    assert calls["n"] == len(sub.tensor_names)  # 16 LSTM tensors + 2 of the head, each once


def test_simplex_layerwise_save_load_and_deepcopy_of_an_lstm(tmp_path) -> None:
    model = _model("lstm-2layer-bidirectional")
    sub = sp.simplex(model, vertices=3, layerwise=True, seed=2)
    sub.sample(torch.Generator().manual_seed(4))
    x = _inputs("lstm-2layer-bidirectional")
    expected = model(x)
    torch.testing.assert_close(copy.deepcopy(model)(x), expected, rtol=0, atol=0)
    sp.save(sub, tmp_path / "lstm.pt")
    fresh = _model("lstm-2layer-bidirectional")
    sp.load(tmp_path / "lstm.pt", fresh)
    torch.testing.assert_close(fresh(x), expected, rtol=0, atol=0)


@pytest.mark.parametrize("method", ["generated", "dense"])
def test_projection_of_a_gru(method: str) -> None:
    model = _model("gru")
    x = _inputs("gru")
    before = model(x).detach()
    sub = sp.projection(model, dim=17, method=method, seed=0)
    torch.testing.assert_close(model(x), before)  # ω = 0: θ = θ0
    with torch.no_grad():
        sub.omega.copy_(torch.randn(17, dtype=sub.omega.dtype))
    moved = model(x)
    assert float((moved - before).detach().abs().max()) > 1e-4
    torch.testing.assert_close(sub.export()(x), moved, rtol=0, atol=0)
    moved.sum().backward()
    assert sub.omega.grad is not None and float(sub.omega.grad.abs().sum()) > 0


def test_without_the_reread_mechanism_recurrent_layers_are_refused(monkeypatch) -> None:
    monkeypatch.setattr(selection, "_UNSUPPORTED_TYPES", (nn.RNNBase,))
    problems = sp.check_model(_model("gru")).problems
    assert problems and "rnn.weight_ih_l0 belongs to GRU" in problems[0]
    assert "does not re-read them (no RNNBase._weights_have_changed)" in problems[0]
