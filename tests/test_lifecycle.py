"""Export, save/load, state_dict, regulariser, BatchNorm re-estimation, torch.compile, errors."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
from helpers import small_cnn, small_mlp
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import subspace_param as sp


@pytest.mark.parametrize("kind", ["line", "curve", "chain", "simplex"])
def test_export_is_a_plain_model_with_equal_outputs(kind):
    model = small_cnn()
    sub = {"line": sp.line, "curve": sp.curve, "chain": sp.chain, "simplex": sp.simplex}[kind](model, seed=0)
    sub.sample()
    point = sub.point
    model.train()
    x = torch.randn(4, 3, 9, 9)
    plain = sub.export()
    assert type(plain) is nn.Sequential and type(plain[0]) is nn.Conv2d and type(plain[1]) is nn.BatchNorm2d
    assert not any(hasattr(m, "parametrizations") for m in plain.modules())
    assert "_subspace_point" not in plain.state_dict()
    assert [n for n, _ in plain.named_parameters()] == [n for n, _ in small_cnn().named_parameters()]
    for mode in (True, False):
        model.train(mode)
        plain.train(mode)
        torch.testing.assert_close(plain(x), model(x), rtol=0, atol=0)
    # exporting does not disturb the wrapped model
    torch.testing.assert_close(sub.point, point)
    model(x).sum().backward()


def test_export_at_a_given_point():
    model = small_mlp()
    sub = sp.line(model, seed=0)
    plain = sub.export(0.8)
    x = torch.randn(5, 7, dtype=torch.float64)
    with sub.at(0.8):
        torch.testing.assert_close(plain(x), model(x), rtol=0, atol=0)
    assert float(sub.point) == pytest.approx(0.5)


def test_save_load_round_trip(tmp_path):
    model = small_cnn()
    sub = sp.chain(model, bends=2, layerwise=True, seed=0)
    sub.sample()
    with torch.no_grad():
        model[1].running_mean.uniform_()
    path = sp.save(sub, tmp_path / "sub.pt")
    assert path.exists() and not list(tmp_path.glob(".*tmp"))
    fresh = small_cnn()
    loaded = sp.load(path, fresh)
    assert loaded.geometry == sub.geometry and loaded.layerwise
    torch.testing.assert_close(loaded.point, sub.point)
    x = torch.randn(3, 3, 9, 9)
    model.eval()
    fresh.eval()
    torch.testing.assert_close(fresh(x), model(x), rtol=0, atol=0)
    for name in sub.tensor_names:
        for k in range(4):
            assert torch.equal(loaded.vertex(k)[name], sub.vertex(k)[name])


def test_state_dict_round_trip_into_a_freshly_wrapped_model():
    a = small_cnn()
    sa = sp.simplex(a, 3, seed=0)
    sa.sample()
    b = small_cnn()
    sp.simplex(b, 3, seed=1)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 9, 9)
    a.eval()
    b.eval()
    torch.testing.assert_close(b(x), a(x), rtol=0, atol=0)


def test_load_errors(tmp_path):
    sub = sp.line(small_cnn(), seed=0)
    path = sp.save(sub, tmp_path / "sub.pt")
    other = nn.Sequential(nn.Conv2d(3, 7, 3, padding=1), nn.BatchNorm2d(7))
    with pytest.raises(sp.ArchitectureMismatchError, match=r"'0.weight' has shape \(6, 3, 3, 3\)"):
        sp.load(path, other)
    with pytest.raises(sp.ArchitectureMismatchError, match="does not have"):
        sp.load(path, nn.Sequential(nn.Conv2d(3, 6, 3, padding=1)))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(sp.SubspaceError, match=r"junk\.pt: is not a PyTorch file"):
        sp.load(junk, small_cnn())
    plain = tmp_path / "plain.pt"
    torch.save(small_cnn().state_dict(), plain)
    with pytest.raises(sp.SubspaceError, match="no 'subspace-param' header"):
        sp.load(plain, small_cnn())
    with pytest.raises(FileNotFoundError):
        sp.load(tmp_path / "missing.pt", small_cnn())
    curve_model = small_cnn()
    sp.curve(curve_model)
    with pytest.raises(sp.ArchitectureMismatchError, match="wrapped as a bezier"):
        sp.load(path, curve_model)


def _reference_cos2(vs_i, vs_j):
    dot = sum((a * b).sum() for a, b in zip(vs_i, vs_j))
    ni = sum((a * a).sum() for a in vs_i)
    nj = sum((b * b).sum() for b in vs_j)
    return dot**2 / (ni * nj)


def test_regularizer_value_and_coverage():
    model = small_cnn(torch.float64)
    sub = sp.simplex(model, 3, seed=0)
    assert sub.regularized_tensors() == ["0.weight", "3.weight", "9.weight"]
    rows = [r for n, r in zip(sub.tensor_names, sub.vertices()) if n in sub.regularized_tensors()]
    for i, j in itertools.combinations(range(3), 2):
        expected = _reference_cos2([r[i] for r in rows], [r[j] for r in rows])
        from subspace_param.regularizer import cosine_regularizer

        torch.testing.assert_close(cosine_regularizer(rows, [(i, j)]), expected)
    all_pairs = (
        sum(
            _reference_cos2([r[i] for r in rows], [r[j] for r in rows])
            for i, j in itertools.combinations(range(3), 2)
        )
        / 3
    )
    torch.testing.assert_close(sub.regularizer(2.0, pairs="all"), 2.0 * all_pairs)
    per_layer = sum(_reference_cos2([r[0]], [r[1]]) for r in rows) / 3
    from subspace_param.regularizer import cosine_regularizer

    torch.testing.assert_close(cosine_regularizer(rows, [(0, 1)], per_layer=True), per_layer)
    random_values = {round(float(sub.regularizer().detach()), 12) for _ in range(40)}
    assert len(random_values) == 3  # one random pair per call, all three pairs drawn


def test_regularizer_gradcheck():
    from subspace_param.regularizer import cosine_regularizer

    shapes = [(5, 3), (7,), (2, 3, 3)]
    flat = [torch.randn(s, dtype=torch.float64, requires_grad=True) for s in shapes for _ in range(3)]

    def f(*ts):
        rows = [list(ts[3 * L : 3 * L + 3]) for L in range(len(shapes))]
        return torch.stack(
            [
                cosine_regularizer(rows, [(0, 2)]),
                cosine_regularizer(rows, [(0, 1), (1, 2)], per_layer=True),
            ]
        )

    assert torch.autograd.gradcheck(f, tuple(flat))


def _loader(n=40, batch=8):
    return DataLoader(TensorDataset(torch.randn(n, 3, 9, 9) * 2 + 0.5), batch_size=batch)


def _full_batch_stats(plain: nn.Module, batches) -> nn.Module:
    """The exported model's BN statistics from one train-mode forward of all the batches at once."""
    for m in plain.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    plain.train()
    with torch.no_grad():
        plain(torch.cat([b[0] for b in batches]))
    return plain


def test_bn_reestimation_at_a_point_equals_the_full_data_statistics_of_the_export():
    model = small_cnn()
    sub = sp.curve(model, seed=0)
    loader = list(_loader())
    sub.update_bn(loader, 0.3)
    plain = _full_batch_stats(sub.export(0.3), loader)
    torch.testing.assert_close(model[1].running_mean, plain[1].running_mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model[1].running_var, plain[1].running_var, rtol=1e-5, atol=1e-5)
    assert model[1].momentum == 0.1 and float(sub.point) == pytest.approx(0.5)
    # num_batches: the statistics of the first two batches only
    sub.update_bn(loader, 0.3, num_batches=2)
    plain = _full_batch_stats(sub.export(0.3), loader[:2])
    torch.testing.assert_close(model[1].running_var, plain[1].running_var, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(model[1].running_var, _full_batch_stats(sub.export(0.3), loader)[1].running_var)


def test_deepcopy_keeps_an_independent_working_subspace():
    model = small_mlp()
    sub = sp.line(model, seed=0)
    twin = copy.deepcopy(model)
    tsub = sp.get_subspace(twin)
    tsub.set_point(0.1)
    assert float(sub.point) == pytest.approx(0.5)
    x = torch.randn(2, 7, dtype=torch.float64)
    with sub.at(0.1):
        torch.testing.assert_close(twin(x), model(x))


def test_compile_fullgraph_without_recompiles():
    from torch._dynamo.testing import CompileCounter

    torch._dynamo.reset()
    model = small_cnn()
    sub = sp.simplex(model, 3, seed=0)
    counter = CompileCounter()
    compiled = torch.compile(model, backend=counter, fullgraph=True)
    x = torch.randn(2, 3, 9, 9)
    for _ in range(4):
        sub.sample()
        y = compiled(x)
        torch.testing.assert_close(y, model(x))
        y.sum().backward()
    assert counter.frame_count == 1


@pytest.mark.slow
def test_compile_inductor_matches_eager():
    torch._dynamo.reset()
    model = small_mlp(torch.float32)
    sub = sp.line(model, seed=0)
    compiled = torch.compile(model, fullgraph=True)
    x = torch.randn(4, 7)
    for a in (0.1, 0.7):
        sub.set_point(a)
        y = compiled(x)
        torch.testing.assert_close(y, model(x), rtol=1e-5, atol=1e-6)
        y.sum().backward()
    assert model[0].parametrizations.weight.original1.grad is not None


def test_clear_errors():
    model = small_mlp()
    sp.line(model)
    with pytest.raises(sp.SubspaceError, match="already wrapped as a line"):
        sp.curve(model)
    inner = nn.Sequential(small_mlp())
    sp.line(inner[0])
    with pytest.raises(sp.SubspaceError, match="already part of a subspace"):
        sp.line(inner)
    with pytest.raises(sp.SubspaceError, match="no parameter of Sequential was selected"):
        sp.line(small_mlp(), filter_fn=lambda m, n: False)
    buffer_tie = nn.Linear(4, 4)
    buffer_tie.register_buffer("mirror", buffer_tie.weight)
    with pytest.raises(sp.SubspaceError, match="weight is also the buffer mirror"):
        sp.line(buffer_tie)
    assert len(sp.line(nn.LSTM(3, 4)).tensor_names) == 4  # recurrent layers wrap (tests/test_recurrent.py)
    wider = nn.Sequential(nn.Linear(7, 12), nn.Tanh(), nn.Linear(12, 5)).double()
    with pytest.raises(sp.ArchitectureMismatchError, match=r"'0.weight' has shape \(12, 7\) in model 1"):
        sp.line(small_mlp(), init=sp.FromModels([small_mlp(), wider]))
    with pytest.raises(sp.PointError, match="3 coordinate"):
        sp.simplex(small_mlp(), 3).set_point([0.5, 0.5])
    with pytest.raises(ValueError, match="SUBSPACE_PARAM_BACKEND"):
        sp.line(small_mlp(), backend="cuda")
    with pytest.raises(TypeError, match=r"nn\.Module"):
        sp.line("resnet")


def test_failed_wrap_leaves_the_model_unchanged():
    model = small_mlp()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}

    class Broken(sp.VertexInit):
        def vertices(self, refs, k):
            return [[torch.zeros(3)] * k for _ in refs]  # wrong shape: registration fails

    with pytest.raises(Exception):  # noqa: B017 - parametrize's own shape error
        sp.line(model, init=Broken())
    assert not sp.is_wrapped(model)
    assert {n: p for n, p in model.named_parameters()}.keys() == before.keys()
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n])
