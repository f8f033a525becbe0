"""Reference recipes by name (wortsman2021 for subspaces, garipov2018 for curves) and their schedule."""

from __future__ import annotations

import json

import pytest

from subspace_param.cli import CURVE_RECIPES, main
from subspace_param.experiments.runs import RECIPES, RunConfig, apply_recipe
from subspace_param.training import lr_at


def test_garipov_schedule_is_constant_then_linear_to_one_percent() -> None:
    total = 1000
    assert lr_at(0, total, 0, 0.03, "garipov") == 0.03
    assert lr_at(500, total, 0, 0.03, "garipov") == 0.03
    assert lr_at(700, total, 0, 0.03, "garipov") == pytest.approx(0.03 * (1 - 0.99 * 0.5))
    assert lr_at(900, total, 0, 0.03, "garipov") == pytest.approx(0.0003)
    assert lr_at(999, total, 0, 0.03, "garipov") == pytest.approx(0.0003)
    with pytest.raises(ValueError, match="schedule must be one of"):
        lr_at(1, 10, 0, 0.1, "step")


def test_apply_recipe_keeps_what_was_set_explicitly() -> None:
    cfg = apply_recipe(RunConfig(epochs=3, lr=0.5), "wortsman2021", keep={"epochs"})
    assert (cfg.epochs, cfg.lr, cfg.weight_decay) == (3, 0.1, 1e-4)
    assert (cfg.warmup_epochs, cfg.batch_size) == (5.0, 128)
    with pytest.raises(ValueError, match="unknown recipe 'nope'"):
        apply_recipe(RunConfig(), "nope")
    assert set(RECIPES) == {"wortsman2021"} and set(CURVE_RECIPES) == {"garipov2018"}


def test_cli_recipes_for_train_and_connect(tmp_path) -> None:
    common = ["--dataset", "digits", "--model", "mlp1", "--no-progress"]
    for name in ("a", "b"):
        main(["train", "--kind", "standard", *common, "--epochs", "1", "--out", str(tmp_path / name)])
    main(["train", "--kind", "line", *common, "--recipe", "wortsman2021", "--epochs", "1",
          "--batch-size", "256", "--out", str(tmp_path / "line")])  # fmt: skip
    cfg = json.loads((tmp_path / "line" / "config.json").read_text())
    assert (cfg["lr"], cfg["weight_decay"], cfg["warmup_epochs"]) == (0.1, 1e-4, 5.0)
    assert (cfg["epochs"], cfg["batch_size"]) == (1, 256)  # given explicitly: kept
    main(["connect", str(tmp_path / "a"), str(tmp_path / "b"), "--recipe", "garipov2018",
          "--epochs", "1", "--points", "3", "--no-progress", "--out", str(tmp_path / "ab")])  # fmt: skip
    record = json.loads((tmp_path / "ab" / "connect.json").read_text())
    assert record["recipe"] == "garipov2018" and record["epochs"] == 1
    assert (record["lr"], record["point_weight_decay"], record["schedule"]) == (0.03, 3e-4, "garipov")
