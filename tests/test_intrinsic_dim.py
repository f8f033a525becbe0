"""The intrinsic-dimension sweep: d_int90 definition, a tiny sweep end to end."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from subspace_param.data import load_digits
from subspace_param.experiments.intrinsic_dim import OMEGA_RECIPE, d_int, intrinsic_dimension
from subspace_param.models import mlp


def test_d_int_is_the_first_grid_point_over_the_threshold() -> None:
    assert d_int([100, 10, 1000], [0.87, 0.2, 0.99], baseline=0.96) == 100  # 0.87 ≥ 0.864, sorted order
    assert d_int([10, 100], [0.2, 0.5], baseline=0.96) is None
    assert d_int([10, 100], [0.95, 0.96], baseline=1.0, fraction=0.95) == 10


def test_sweep_trains_saves_and_reports(tmp_path) -> None:
    data = load_digits()
    cfg = dataclasses.replace(OMEGA_RECIPE, epochs=3, lr=1e-2, progress=False)
    result = intrinsic_dimension(
        lambda: mlp(data.input_shape, data.num_classes, hidden=(32,)), data, [2, 300], seeds=[0, 1], cfg=cfg
    )
    summary = {r["d"]: r for r in result.summary()}
    assert set(summary) == {2, 300, "full"} and all(r["seeds"] == 2 for r in summary.values())
    # more dimensions train better; the baseline is the directly trained model
    assert summary[300]["test_acc"] > summary[2]["test_acc"] + 0.2
    assert result.baseline == pytest.approx(summary["full"]["test_acc"])
    expected = d_int([2, 300], [summary[2]["test_acc"], summary[300]["test_acc"]], result.baseline)
    assert result.d_int90 == expected
    files = result.save(tmp_path)
    saved = json.loads(files["json"].read_text())
    assert saved["d_int90"] == expected and len(saved["runs"]) == 6
    assert files["png"].stat().st_size > 1000


def test_bad_grid() -> None:
    with pytest.raises(ValueError, match="dims must be"):
        intrinsic_dimension(lambda: torch.nn.Linear(2, 2), load_digits(), [])


def _fake_training(monkeypatch, accuracy):
    """Replace the training by a known accuracy curve (the search logic, not the training, is tested)."""
    import subspace_param.experiments.intrinsic_dim as idim

    calls = []

    def fake(build_model, data, dim, *, seed, **kw):
        calls.append(dim)
        acc = 0.96 if dim is None else accuracy(dim) + 0.001 * seed
        return {"dim": dim, "seed": seed, "method": "dense", "num_params": 1000, "test_acc": acc}

    monkeypatch.setattr(idim, "train_in_subspace", fake)
    return calls


def test_bisection_over_the_grid_gives_the_grid_answer_with_fewer_sizes(monkeypatch) -> None:
    import math

    dims = [3, 7, 20, 50, 130, 333, 900, 2500, 7000]
    for knee in (3, 4, 60, 900, 7000, 9000):  # every position of the threshold, and none reached
        calls = _fake_training(
            monkeypatch, lambda d, knee=knee: 0.95 if d >= knee else 0.5 + 0.01 * math.log(d)
        )
        grid = intrinsic_dimension(None, load_digits(), dims, seeds=[0, 1])
        n_grid = len({c for c in calls if c is not None})
        calls.clear()
        bis = intrinsic_dimension(None, load_digits(), dims, seeds=[0, 1], search="bisect")
        n_bis = len({c for c in calls if c is not None})
        assert bis.d_int90 == grid.d_int90 == next((d for d in dims if d >= knee), None)
        assert n_bis <= math.ceil(math.log2(len(dims))) + 1 < n_grid
        assert bis.settings["search"] == "bisect" and bis.settings["bisection_trace"]


def test_bisection_on_log_d_brackets_the_threshold_within_rtol(monkeypatch) -> None:
    _fake_training(monkeypatch, lambda d: 0.95 if d >= 437 else 0.3)
    r = intrinsic_dimension(None, load_digits(), bounds=(10, 10_000), search="bisect", rtol=0.05, seeds=[0])
    trace = r.settings["bisection_trace"]
    failing = max(t["d"] for t in trace if not t["reaches"])
    assert (r.d_int90 >= 437 > failing and r.d_int90 / failing <= 1.05) or r.d_int90 - failing <= 1
    assert len(trace) <= 2 + 9  # hi, lo, then ≈ log2(log(1000)/log(1.05)) ≈ 7 halvings
    _fake_training(monkeypatch, lambda d: 0.3)
    assert intrinsic_dimension(None, load_digits(), bounds=(10, 100), search="bisect").d_int90 is None
    with pytest.raises(ValueError, match="bounds"):
        intrinsic_dimension(None, load_digits(), search="bisect")
