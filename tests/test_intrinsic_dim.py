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
