"""Mode connectivity: fitted curves, paths without training, alignment, evaluation, planes."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import subspace_param as sp
from subspace_param.connectivity import (
    ButterflyPath,
    LinearPath,
    NeuronPath,
    SimultaneousPath,
    StepwiseAdjustedPath,
    SubspacePath,
    WeightAdjustedPath,
    align,
    arc,
    evaluate_path,
    evaluate_states_batched,
    fit_linear,
    layer_inputs,
    lin,
    loss_plane,
    wa_ensemble,
)
from subspace_param.connectivity.evaluation import loss_and_error


def one_hidden(seed: int, bias: bool = True, act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(9, 13, bias=bias), act(), nn.Linear(13, 4, bias=bias)
    ).double()


def deep_no_bias(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(9, 17, bias=False),
        nn.ReLU(),
        nn.Linear(17, 11, bias=False),
        nn.ReLU(),
        nn.Linear(11, 4, bias=False),
    ).double()


X = torch.randn(203, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(7))


def params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach() for n, p in model.named_parameters()}


def assert_state_equals(state: dict[str, torch.Tensor], model: nn.Module, atol: float = 1e-5) -> None:
    ref = params(model)
    assert set(state) == set(ref)
    for n in ref:
        torch.testing.assert_close(state[n], ref[n], atol=atol, rtol=0, msg=n)


def assert_same_function(path, t: float, model: nn.Module) -> None:
    torch.testing.assert_close(path.model_at(t)(X), model(X), atol=1e-5, rtol=1e-5)


# -- endpoints -------------------------------------------------------------------------------
@pytest.mark.parametrize("rule", ["lin", "arc"])
def test_index_paired_paths_start_at_a_and_end_at_b(rule: str) -> None:
    a, b = one_hidden(0), one_hidden(1)
    for path in (
        LinearPath(a, b),
        SimultaneousPath(a, b, rule),
        NeuronPath(a, b, rule),
        WeightAdjustedPath(a, b, X, rule),
    ):
        assert_state_equals(path.state_at(0.0), a)
        assert_state_equals(path.state_at(path.end_time), b)
    da, db = deep_no_bias(0), deep_no_bias(1)
    for path in (ButterflyPath(da, db, X, rule), StepwiseAdjustedPath(da, db, X, rule)):
        assert_state_equals(path.state_at(0.0), da)
        assert_state_equals(path.state_at(path.end_time), db)
    assert ButterflyPath(da, db, X).end_time == 2 and StepwiseAdjustedPath(da, db, X).end_time == 3


def test_ot_paired_paths_end_at_b_up_to_a_permutation_of_neurons() -> None:
    a, b = one_hidden(0), one_hidden(1)
    da, db = deep_no_bias(0), deep_no_bias(1)
    for path, ma, mb in (
        (NeuronPath(a, b, "lin", pairing="ot"), a, b),
        (WeightAdjustedPath(a, b, X, "arc", pairing="ot"), a, b),
        (ButterflyPath(da, db, X, "lin", pairing="ot"), da, db),
        (StepwiseAdjustedPath(da, db, X, "lin", pairing="ot"), da, db),
    ):
        assert_state_equals(path.state_at(0.0), ma)
        assert_same_function(path, path.end_time, mb)


def test_butterfly_is_continuous_between_stages() -> None:
    da, db = deep_no_bias(0), deep_no_bias(1)
    path = ButterflyPath(da, db, X, "arc")
    left, right = path.state_at(1.0 - 1e-9), path.state_at(1.0)
    for n in left:
        torch.testing.assert_close(left[n], right[n], atol=1e-6, rtol=0)


def test_linear_path_extrapolates_and_validates() -> None:
    a, b = one_hidden(0), one_hidden(1)
    path = LinearPath(a, b)
    w = path.state_at(1.5)["1.weight"]
    torch.testing.assert_close(w, a[1].weight + 1.5 * (b[1].weight - a[1].weight))
    with pytest.raises(ValueError, match="outside"):
        NeuronPath(a, b).state_at(1.5)
    with pytest.raises(sp.ArchitectureMismatchError, match=r"'1\.weight'"):
        LinearPath(a, nn.Sequential(nn.Flatten(), nn.Linear(9, 12), nn.ReLU(), nn.Linear(12, 4)).double())
    with pytest.raises(sp.ArchitectureMismatchError, match="bias-free"):
        ButterflyPath(one_hidden(0), one_hidden(1), X)
    with pytest.raises(sp.ArchitectureMismatchError, match="BatchNorm1d"):
        NeuronPath(nn.Sequential(nn.Linear(9, 3), nn.BatchNorm1d(3), nn.Linear(3, 2)), a)


# -- alignment and rules ---------------------------------------------------------------------------
def test_ot_alignment_keeps_the_function_and_matches_a_permuted_copy() -> None:
    b = nn.Sequential(nn.Linear(9, 15), nn.Tanh(), nn.Linear(15, 12), nn.ReLU(), nn.Linear(12, 4)).double()
    aligned = align(b, b)
    torch.testing.assert_close(aligned(X), b(X))
    shuffled = copy.deepcopy(b)
    from subspace_param.connectivity import permute_hidden

    permute_hidden(shuffled, 0, torch.randperm(15))
    permute_hidden(shuffled, 1, torch.randperm(12))
    torch.testing.assert_close(shuffled(X), b(X))
    recovered = align(b, shuffled)
    torch.testing.assert_close(recovered(X), b(X))
    for n, p in b.named_parameters():  # OT recovers the exact permutation
        torch.testing.assert_close(dict(recovered.named_parameters())[n], p, msg=n)
    other = nn.Sequential(
        nn.Linear(9, 15), nn.Tanh(), nn.Linear(15, 12), nn.ReLU(), nn.Linear(12, 4)
    ).double()
    torch.testing.assert_close(align(b, other)(X), other(X))


def test_arc_keeps_mean_and_covariance_where_lin_shrinks_them() -> None:
    gen = torch.Generator().manual_seed(0)
    mix = torch.randn(5, 5, generator=gen, dtype=torch.float64)
    mu = torch.randn(5, generator=gen, dtype=torch.float64)
    s1 = torch.randn(20000, 5, generator=gen, dtype=torch.float64) @ mix + mu
    s2 = torch.randn(20000, 5, generator=gen, dtype=torch.float64) @ mix + mu
    cov = mix.T @ mix
    for t in (0.3, 0.5, 0.8):
        s = arc(s1, s2, t)
        m = torch.cat([s1, s2]).mean(0)
        c, si = np.cos(np.pi * t / 2), np.sin(np.pi * t / 2)
        # exact identity: mean of S(t) = m + (cos − sin)(mean1 − mean2)/2
        torch.testing.assert_close(s.mean(0), m + (c - si) * (s1.mean(0) - s2.mean(0)) / 2)
        torch.testing.assert_close(s.mean(0), mu, atol=0.05, rtol=0)
        torch.testing.assert_close(torch.cov(s.T), cov, atol=0.08 * cov.abs().max(), rtol=0)
    torch.testing.assert_close(torch.cov(lin(s1, s2, 0.5).T), cov / 2, atol=0.08 * cov.abs().max(), rtol=0)
    torch.testing.assert_close(arc(s1, s2, 0.5).mean(0), torch.cat([s1, s2]).mean(0))


# -- least squares -------------------------------------------------------------------------------
def test_fit_linear_solves_least_squares() -> None:
    f = torch.randn(101, 7, dtype=torch.float64)
    y = torch.randn(101, 3, dtype=torch.float64)
    w = fit_linear(f, y)
    torch.testing.assert_close(w, torch.linalg.lstsq(f, y).solution.T)
    w_r = fit_linear(f, y, ridge=0.7)
    torch.testing.assert_close(
        w_r, torch.linalg.solve(f.T @ f + 0.7 * torch.eye(7, dtype=f.dtype), f.T @ y).T
    )
    rank_deficient = torch.cat([f, f[:, :2]], 1)  # minimum-norm solution still fits as well
    torch.testing.assert_close(rank_deficient @ fit_linear(rank_deficient, y).T, f @ w.T)


def test_weight_adjustment_is_the_least_squares_fit_and_cached() -> None:
    a, b = one_hidden(0), one_hidden(1)
    path = WeightAdjustedPath(a, b, X, "lin")
    s = 0.4
    state = path.state_at(s)
    hidden = torch.relu(X @ state["1.weight"].T + state["1.bias"])
    target = torch.relu(X @ a[1].weight.T + a[1].bias) @ a[3].weight.T
    torch.testing.assert_close(state["3.weight"], torch.linalg.lstsq(hidden, target).solution.T.detach())
    assert s in path._fits
    cached = path._fits[s]
    path.state_at(s)
    assert path._fits[s] is cached


# -- evaluation ------------------------------------------------------------------------------
def _loaders(n: int = 96):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(n, 9, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 4, (n,), generator=gen)
    ds = TensorDataset(x, y)
    return DataLoader(ds, batch_size=32), DataLoader(ds, batch_size=50)


def test_batched_evaluation_equals_the_loop() -> None:
    a, b = one_hidden(0), one_hidden(1)
    path = LinearPath(a, b)
    loader, _ = _loaders()
    ts = np.linspace(0, 1.5, 7)
    states = [path.state_at(t) for t in ts]
    loss_b, err_b = evaluate_states_batched(a, states, loader, chunk=3)
    for i, t in enumerate(ts):
        loss, err = loss_and_error(path.model_at(t), loader)
        assert loss_b[i] == pytest.approx(loss, rel=1e-9)
        assert err_b[i] == pytest.approx(err)


def test_evaluate_path_summary_and_files(tmp_path) -> None:
    a, b = one_hidden(0), one_hidden(1)
    train, test = _loaders()
    ev = evaluate_path(LinearPath(a, b), train, test, ts=np.linspace(0, 1, 5), progress=False, label="lin")
    loss0, err0 = loss_and_error(a, train)
    assert ev.values["train_loss"][0] == pytest.approx(loss0) and ev.values["train_err"][0] == pytest.approx(
        err0
    )
    dist = float(
        torch.cat([(p - q).detach().reshape(-1) for p, q in zip(b.parameters(), a.parameters())]).norm()
    )
    assert ev.length == pytest.approx(dist)
    v = ev.values["train_loss"]
    assert ev.barrier() == pytest.approx(v.max() - (v[0] + v[-1]) / 2)
    stats = ev.stats("train_loss")
    assert stats["min"] <= stats["int"] <= stats["max"]
    files = ev.save(tmp_path, "lin")
    assert np.load(files["npz"])["train_loss"].shape == (5,)
    assert files["csv"].read_text().count("\n") == 6


def test_bn_is_reestimated_at_every_point() -> None:
    torch.manual_seed(0)
    net = lambda: nn.Sequential(nn.Linear(9, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 4)).double()  # noqa: E731
    a, b = net(), net()
    train, test = _loaders()
    ev = evaluate_path(LinearPath(a, b), train, test, ts=[0.5], progress=False)
    mid = LinearPath(a, b).model_at(0.5)
    sp.reestimate_bn(mid, train)
    assert ev.values["test_loss"][0] == pytest.approx(loss_and_error(mid, test)[0])
    with pytest.raises(ValueError, match="BatchNorm"):
        evaluate_states_batched(a, [LinearPath(a, b).state_at(0.5)], train)


# -- fitted curves -------------------------------------------------------------------------------
def _minimum(seed: int, x: torch.Tensor, y: torch.Tensor) -> nn.Sequential:
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Linear(9, 32), nn.ReLU(), nn.Linear(32, 4))
    opt = torch.optim.Adam(m.parameters(), 1e-2)
    for _ in range(300):
        opt.zero_grad()
        F.cross_entropy(m(x), y).backward()
        opt.step()
    return m


def test_connect_freezes_ends_and_fitted_curve_beats_the_segment() -> None:
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(256, 9, generator=gen)
    y = (x[:, :3] @ torch.randn(3, 4, generator=gen)).argmax(1)
    a, b = _minimum(0, x, y), _minimum(1, x, y)
    segment = LinearPath(a, b)
    model = copy.deepcopy(a)
    curve = sp.connect(model, b, curve="chain", bends=1, seed=0)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(trainable) == 4 and all(p is v for p, v in zip(trainable, curve.vertex(1).values()))
    for name, p in curve.vertex(2).items():
        torch.testing.assert_close(p, dict(b.named_parameters())[name])
    with curve.at(0.5):  # the bend starts at the chord's midpoint
        torch.testing.assert_close(model(x), segment.model_at(0.5)(x))
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(300):
        curve.sample()
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    loader = [(x, y)]
    ts = np.linspace(0, 1, 11)
    seg = evaluate_path(segment, loader, loader, ts, progress=False)
    fitted = evaluate_path(SubspacePath(curve), loader, loader, ts, progress=False)
    assert fitted.values["train_loss"][0] == pytest.approx(seg.values["train_loss"][0], rel=1e-5)
    assert fitted.values["train_loss"][-1] == pytest.approx(seg.values["train_loss"][-1], rel=1e-5)
    assert fitted.values["train_loss"].max() < seg.values["train_loss"].max()
    with pytest.raises(sp.ArchitectureMismatchError, match=r"0\.weight"):
        sp.connect(nn.Sequential(nn.Linear(9, 31), nn.ReLU(), nn.Linear(31, 4)), b)


def test_loss_plane_geometry_and_values(tmp_path) -> None:
    a, b, c = one_hidden(0), one_hidden(1), one_hidden(2)
    train, test = _loaders()
    plane = loss_plane(
        a,
        params(a),
        params(c),
        params(b),
        train,
        test,
        grid=7,
        margin=0.25,
        curve=[LinearPath(a, b).state_at(t) for t in (0, 0.5, 1)],
        progress=False,
    )
    assert plane.anchors[0] == pytest.approx([0, 0]) and plane.anchors[2] == pytest.approx([plane.dx, 0])
    assert plane.anchors[1][1] == pytest.approx(plane.dy)
    assert plane.curve[:, 1] == pytest.approx([0, 0, 0], abs=1e-9)  # the chord lies on the u axis
    i0, i1 = 1, 5  # alphas = linspace(-0.25, 1.25, 7): index 1 is 0, index 5 is 1
    assert plane.values["train_loss"][1, i0] == pytest.approx(loss_and_error(a, train)[0])
    assert plane.values["test_err"][1, i1] == pytest.approx(loss_and_error(b, test)[1])
    files = plane.save(tmp_path)
    assert files["png"].stat().st_size > 1000


def test_wa_ensemble_with_copies_reproduces_the_base() -> None:
    a = deep_no_bias(0)
    _, test = _loaders()
    result = wa_ensemble([a, copy.deepcopy(a), deep_no_bias(1)], X, test, layer=2)
    assert result["n_top_layers"] == 1
    assert result["wa_member"][1] == pytest.approx(result["member"][0])  # adapter onto itself = identity
    assert all(0 <= v <= 1 for k in ("member", "ensemble", "wa_member", "wa_ensemble") for v in result[k])
    feats = layer_inputs(a, X)
    assert len(feats) == 3 and feats[2].shape == (203, 11)


def small_vgg(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(6, 7, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(7, 5, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Dropout(),
        nn.Linear(5 * 4, 9),
        nn.ReLU(),
        nn.Linear(9, 4),
    ).double()


def test_conv_butterfly_ot_starts_at_a_ends_at_b_and_is_function_continuous() -> None:
    from subspace_param.connectivity import ConvButterflyPath

    a, b = small_vgg(0).eval(), small_vgg(1).eval()
    images = torch.randn(40, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    path = ConvButterflyPath(a, b, images, "lin", pairing="ot", max_rows=3000)
    assert path.end_time == 4
    assert_state_equals(path.state_at(0.0), a)
    end = path.model_at(path.end_time)
    torch.testing.assert_close(end(images), b(images), atol=1e-8, rtol=1e-8)  # exactly B's function
    torch.testing.assert_close(end[12].bias, b[12].bias)  # no final-bias defect
    for boundary in (1.0, 2.0, 3.0):  # stages meet: same function (weights may differ by a permutation)
        left, right = path.model_at(boundary - 1e-12), path.model_at(boundary)
        torch.testing.assert_close(left(images), right(images), atol=1e-6, rtol=1e-6)
    index = ConvButterflyPath(a, b, images, "arc", pairing="index")
    assert_state_equals(index.state_at(index.end_time), b)
    with pytest.raises(sp.ArchitectureMismatchError, match="BatchNorm2d"):
        ConvButterflyPath(
            nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2)), a, images
        )


def test_conv_patches_are_rows_of_unfold() -> None:
    from subspace_param.connectivity.conv_butterfly import _paired_rows

    conv = nn.Conv2d(3, 4, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2))
    h = torch.randn(5, 3, 9, 8, dtype=torch.float64)
    xa, xb = _paired_rows(
        conv, h, 2 * h, 100, torch.Generator().manual_seed(0)
    )  # of 5 · 5 · 6 = 150 positions
    cols = torch.nn.functional.unfold(h, conv.kernel_size, conv.dilation, conv.padding, conv.stride)
    cols = cols.transpose(1, 2).reshape(-1, 18)
    dist = torch.cdist(xa, cols, compute_mode="donot_use_mm_for_euclid_dist").min(1).values
    assert xa.shape == (100, 18) and dist.max() == 0 and torch.equal(xb, 2 * xa)
