"""Loss landscapes: filter normalisation (against loss-landscapes), PCA and Hessian directions
(against dense float64 references), planes through a centre or three models, the grid evaluator
(batched = looped, subsample report) and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import small_cnn
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import subspace_param as sp
from subspace_param import landscape
from subspace_param.landscape.base import flatten


def _mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(7, 9), nn.Tanh(), nn.Linear(9, 5)).double()


def _data(n: int = 83, dtype=torch.float64) -> DataLoader:
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(n, 7, generator=g, dtype=dtype), torch.randint(0, 5, (n,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=30)


def test_filter_normalisation_gives_every_filter_the_models_norm_and_zeros_1d() -> None:
    net = small_cnn()
    d = landscape.random_direction(net, "filter", seed=3)
    for n, p in net.named_parameters():
        if p.dim() > 1:
            torch.testing.assert_close(d[n].flatten(1).norm(dim=1), p.detach().flatten(1).norm(dim=1))
        else:
            assert not d[n].any(), n  # BN, bias, LayerNorm: 0 (Li et al.'s ignore='biasbn')
    d1 = landscape.random_direction(net, "filter", seed=3, include_1d=True)
    assert torch.equal(d1["1.weight"], net[1].weight.detach())  # their d.copy_(w)
    assert torch.equal(landscape.random_direction(net, seed=3)["0.weight"], d["0.weight"])  # seeded
    lay = landscape.random_direction(net, "layer", seed=3)
    torch.testing.assert_close(lay["3.weight"].norm(), net[3].weight.detach().norm())
    mod = landscape.random_direction(net, "model", seed=3)
    multi = [n for n, p in net.named_parameters() if p.dim() > 1]
    torch.testing.assert_close(
        torch.sqrt(sum(mod[n].square().sum() for n in multi)),
        torch.sqrt(sum(dict(net.named_parameters())[n].detach().square().sum() for n in multi)),
    )
    with pytest.raises(ValueError, match="normalization"):
        landscape.random_direction(net, "filters")


def test_filter_normalisation_matches_loss_landscapes() -> None:
    ll = pytest.importorskip("loss_landscapes.model_interface.model_parameters")
    net = nn.Sequential(nn.Conv2d(3, 6, 3), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 9, 4, bias=False))
    params = landscape.parameter_state(net)
    gen = torch.Generator().manual_seed(0)
    raw = {n: torch.randn(t.shape, generator=gen) for n, t in params.items()}
    names = [n for n in params if params[n].dim() > 1]
    theirs = ll.ModelParameters([raw[n].clone() for n in params])
    theirs.filter_normalize_(ll.ModelParameters([params[n].clone() for n in params]))
    ours = landscape.normalize_direction(raw, params, "filter")
    for (n, t), mine in zip(params.items(), theirs.parameters):
        if n in names:  # every ≥2-D tensor: the same numbers
            torch.testing.assert_close(ours[n], mine, rtol=1e-6, atol=1e-7)
        else:  # their 3.0.6 sets each bias entry to ±|θ_f| (loss-landscapes#3); Li et al. zero it
            torch.testing.assert_close(mine.abs(), t.abs())
            assert not ours[n].any()


def test_pca_directions_match_numpy_svd_of_the_centred_trajectory() -> None:
    net = _mlp()
    base = landscape.parameter_state(net)
    g = torch.Generator().manual_seed(2)
    traj = [
        {n: p + 0.1 * k * torch.randn(p.shape, generator=g, dtype=p.dtype) for n, p in base.items()}
        for k in range(7)
    ]
    pc = landscape.pca_directions(traj, k=2)
    names = list(base)
    m = np.stack([(flatten(t, names) - flatten(traj[-1], names)).numpy() for t in traj])
    m -= m.mean(0)
    _, s, vt = np.linalg.svd(m, full_matrices=False)
    np.testing.assert_allclose(pc.values, (s**2 / (s**2).sum())[:2], rtol=1e-10)
    for j in range(2):
        u = flatten(pc[j], names).numpy()
        assert abs(abs(u @ vt[j]) - 1) < 1e-10
    assert np.asarray(pc.info["trajectory"]).shape == (7, 2) and pc.info["trajectory"][-1] == [0.0, 0.0]
    with pytest.raises(ValueError, match="k \\+ 1"):
        landscape.pca_directions(traj[:2], k=2)


def test_hessian_directions_match_the_dense_hessian_float64() -> None:
    from torch.func import functional_call

    net, loader = _mlp(), _data()
    d = landscape.hessian_directions(net, F.cross_entropy, loader, k=3, iterations=40)
    params = landscape.parameter_state(net)
    names = list(params)
    x = torch.cat([b[0] for b in loader])
    y = torch.cat([b[1] for b in loader])

    def loss(v: torch.Tensor) -> torch.Tensor:
        out, o = {}, 0
        for n, p in params.items():
            out[n] = v[o : o + p.numel()].view(p.shape)
            o += p.numel()
        return F.cross_entropy(functional_call(net, out, (x,)), y)

    h = torch.autograd.functional.hessian(loss, flatten(params, names))
    evals, evecs = torch.linalg.eigh(h)
    np.testing.assert_allclose(d.values, evals.flip(0)[:3].numpy(), rtol=1e-8)
    for i in range(3):
        assert abs(abs(float(flatten(d[i], names) @ evecs[:, -1 - i])) - 1) < 1e-8
    assert max(d.info["residuals"]) < 1e-5  # ‖H y − λ y‖, against λ ≈ 0.3


def test_lanczos_finds_the_top_of_a_known_spectrum() -> None:
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(300, 300, generator=g, dtype=torch.float64))
    spectrum = torch.cat(
        [torch.tensor([9.0, 7.5, 6.0]), torch.rand(297, generator=g, dtype=torch.float64) * 3]
    )
    a = q @ torch.diag(spectrum) @ q.T
    vals, _, res = landscape.lanczos(lambda v: a @ v, 300, k=3, iterations=60)
    torch.testing.assert_close(vals, torch.tensor([9.0, 7.5, 6.0], dtype=torch.float64))
    assert res.max() < 1e-8


def test_plane_grid_batched_equals_one_point_at_a_time_and_reports_the_subsample() -> None:
    net, loader = _mlp(), _data()
    dirs = [landscape.random_direction(net, "filter", seed=s) for s in (1, 2)]
    pl = landscape.plane(center=net, directions=dirs)
    a = landscape.evaluate_plane(pl, net, loader, loader, grid=5, progress=False)
    b = landscape.evaluate_plane(pl, net, loader, loader, grid=5, progress=False, batched=False)
    assert a.info["batched"] and not b.info["batched"]
    for k in a.values:
        np.testing.assert_allclose(a.values[k], b.values[k], rtol=1e-12, atol=1e-12)
    centre = a.values["train_loss"][2, 2]  # (0, 0) of [-1, 1]²
    x = torch.cat([bt[0] for bt in loader])
    y = torch.cat([bt[1] for bt in loader])
    assert abs(centre - float(F.cross_entropy(net(x), y))) < 1e-12
    s = landscape.evaluate_plane(pl, net, loader, None, grid=3, progress=False, max_batches=1).info[
        "subsample"
    ]
    assert s["train"]["examples_used"] == 30 and s["train"]["examples_total"] == 83
    assert s["train"]["loss_gap"] == pytest.approx(
        abs(s["train"]["origin_loss_subsample"] - s["train"]["origin_loss_full"])
    )


def test_three_model_plane_goes_through_the_models_and_bn_is_reestimated(tmp_path) -> None:
    torch.manual_seed(0)
    nets = [small_cnn() for _ in range(3)]
    x, y = torch.randn(37, 3, 9, 9), torch.randint(0, 3, (37,))
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    pl = landscape.plane(nets)
    np.testing.assert_allclose(pl.anchors[2], [pl.dx, 0.0])
    res = landscape.evaluate_plane(pl, nets[0], loader, grid=3, span=(0.0, 1.0, 0.0, 1.0), progress=False)
    assert res.info["batchnorm_reestimated"] and not res.info["batched"]
    ref = [n for n in nets]
    for r in ref:
        sp.reestimate_bn(r, loader)
    from subspace_param.connectivity import loss_and_error

    assert res.values["train_loss"][0, 0] == pytest.approx(loss_and_error(ref[0], loader)[0], rel=1e-5)
    assert res.values["train_loss"][0, 2] == pytest.approx(loss_and_error(ref[2], loader)[0], rel=1e-5)
    files = res.save(tmp_path, "three")
    assert {"npz", "json", "png", "surface"} <= set(files) and json.loads(files["json"].read_text())["info"]


def test_landscape_refuses_a_wrapped_model() -> None:
    net = _mlp()
    sp.line(net)
    with pytest.raises(sp.SubspaceError, match="export a point"):
        landscape.random_direction(net)


@pytest.mark.slow
def test_cli_landscape_every_direction_and_three_runs(tmp_path) -> None:
    from subspace_param.cli import main

    common = ["--dataset", "digits", "--model", "mlp1", "--epochs", "2", "--no-progress"]
    for s in range(3):
        main(
            [
                "train",
                *common,
                "--seed",
                str(s),
                "--out",
                str(tmp_path / f"r{s}"),
                *(["--save-trajectory"] if s == 0 else []),
            ]
        )
    assert len(list((tmp_path / "r0" / "trajectory").glob("epoch_*.pt"))) == 3
    for kind in ("filter", "pca", "hessian"):
        out = tmp_path / f"l_{kind}"
        main(
            [
                "landscape",
                str(tmp_path / "r0"),
                "--directions",
                kind,
                "--grid",
                "3",
                "--max-batches",
                "1",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        saved = json.loads((out / "landscape.json").read_text())
        assert np.isfinite(np.asarray(saved["train_loss"])).all() and (out / "landscape_surface.png").exists()
        assert saved["info"]["subsample"]["train"]["examples_used"] == 1000
    assert json.loads((tmp_path / "l_hessian" / "directions.json").read_text())["kind"] == "hessian"
    out = tmp_path / "l3"
    main(
        [
            "landscape",
            *(str(tmp_path / f"r{s}") for s in range(3)),
            "--grid",
            "3",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert json.loads((out / "landscape.json").read_text())["info"]["kind"] == "models"
    with pytest.raises(Exception, match="trajectory"):
        main(["landscape", str(tmp_path / "r1"), "--directions", "pca", "--out", str(out), "--no-progress"])
