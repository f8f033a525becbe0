"""The README's Python snippets and the docstring examples run; the main job and examples run."""

from __future__ import annotations

import doctest
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import subspace_param
import subspace_param.api
import subspace_param.experiments.intrinsic_dim
import subspace_param.projections.engine
import subspace_param.vertex_init

ROOT = Path(__file__).resolve().parents[1]


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    blocks = _python_blocks((ROOT / "README.md").read_text())
    assert blocks, "README has no python example"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(
            compile(block.replace("/tmp/line.pt", str(tmp_path / "line.pt")), "README.md", "exec"), namespace
        )
    assert (tmp_path / "line.pt").exists()
    assert type(namespace["midpoint"]).__name__ == "ResNet"


@pytest.mark.parametrize(
    "module",
    [
        subspace_param,
        subspace_param.api,
        subspace_param.projections.engine,
        subspace_param.experiments.intrinsic_dim,
        subspace_param.vertex_init,
    ],
)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_main_job_smoke(tmp_path):
    from subspace_param.experiments import line_vs_standard

    result = line_vs_standard.main(
        ["--epochs", "2", "--dataset", "digits", "--out-dir", str(tmp_path), "--no-progress"]
    )
    rows = {r["model"]: r for r in result["results"]}
    assert {"line α=0.5", "line endpoint ensemble (α=0 + α=1)", "standard"} <= set(rows)
    assert all(0.0 <= r["acc"] <= 1.0 for r in rows.values())
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["results"] == result["results"]
    assert (tmp_path / "accuracy_vs_alpha.png").stat().st_size > 1000
    # 2 epochs on digits already learn something: far above the 10% of chance
    assert rows["standard"]["acc"] > 0.3


def test_example_train_line_runs():
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "train_line.py"),
            "--epochs",
            "1",
            "--model",
            "squeezenet1_1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    assert out.stdout.count("test accuracy") == 3


def test_example_omega_space_runs(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "omega_space.py"),
            "--datasets",
            "digits",
            "--dims",
            "3",
            "100",
            "--steps",
            "10",
            "--hidden",
            "32",
            "--no-progress",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    saved = json.loads((tmp_path / "digits.json").read_text())
    assert [r["d"] for r in saved["summary"]] == [3, 100, "full"]
    assert saved["d_int90"] in (None, 3, 100)
    assert len(saved["runs"][0]["history"]) == 2 and "test_acc" in saved["runs"][0]["history"][0]
    for name in ("digits.png", "digits_curves.png", "digits.md"):
        assert (tmp_path / name).stat().st_size > 100
    assert "d_int90" in out.stdout


def _example(name: str):
    return _example_from("examples", name)


def _example_from(folder: str, name: str):
    sys.path.insert(0, str(ROOT / folder))
    try:
        return __import__(name)
    finally:
        sys.path.pop(0)


def test_example_mode_connectivity_lab_runs(tmp_path):
    mode_connectivity_lab = _example("mode_connectivity_lab")
    result = mode_connectivity_lab.main(
        [
            "--variants",
            "default",
            "--epochs",
            "2",
            "--curve-epochs",
            "1",
            "--points",
            "4",
            "--grid",
            "3",
            "--no-progress",
            "--out",
            str(tmp_path),
        ]
    )
    row = result["rows"][0]
    assert row["variant"] == "default" and row["segment barrier (train loss)"] >= 0
    assert set(result["details"]["default"]["segments"]) == {
        "minimum ↔ minimum",
        "minimum ↔ its init",
        "minimum ↔ random",
        "random ↔ random",
    }
    for name in ("summary.md", "default/plane.png", "default/segments.png", "default/1-bend_chain.npz"):
        assert (tmp_path / "digits" / name).stat().st_size > 100


def test_example_distribution_connectivity_runs(tmp_path):
    distribution_connectivity = _example("distribution_connectivity")
    results = distribution_connectivity.main(
        [
            "--widths",
            "12",
            "--deep",
            "16",
            "12",
            "--pairs",
            "1",
            "--epochs",
            "1",
            "--vgg-epochs",
            "1",
            "--vgg-points",
            "1",
            "--no-progress",
            "--out",
            str(tmp_path),
        ]
    )
    methods = [r["one hidden layer, 12"] for r in results["table1_12"]["rows"]]
    assert methods == ["Linear", "Arc", "Linear + WA", "Arc + WA", "OT", "OT + WA", "endpoints"]
    assert len(results["table2"]["rows"]) == 9 and results["wa_1"]["n_top_layers"] == 1
    assert [r["VGG-style (vgg-small)"] for r in results["table2_vgg"]["rows"]][-2:] == [
        "OT + B-fly",
        "endpoints",
    ]
    assert "Table 2 analogue" in (tmp_path / "digits" / "tables.md").read_text()


def test_example_evaluate_subspace_runs(tmp_path):
    rows = _example("evaluate_subspace").main(
        ["--run", str(tmp_path / "run"), "--dataset", "digits", "--epochs", "1"]
    )
    assert [r["point"] for r in rows][-1] == "endpoint ensemble" and all("ece" in r for r in rows)


def test_example_connect_two_models_runs(tmp_path):
    barriers = _example("connect_two_models").main(["--epochs", "2", "--grid", "3", "--out", str(tmp_path)])
    assert set(barriers) == {"segment", "curve"}
    assert (tmp_path / "plane.png").exists() and (tmp_path / "segment_vs_curve.png").exists()


def test_example_align_resnets_runs(tmp_path):
    args = ["--epochs", "1", "--widths", "1", "--points", "3", "--bn-batches", "2", "--out", str(tmp_path)]
    rows = _example("align_resnets").main(args)
    assert len(rows) == 1 and rows[0]["model"] == "cifar_resnet 1x"
    assert rows[0]["ours_output_change"] < 1e-4
    numbers = [v for k, v in rows[0].items() if k != "model"]
    assert len(numbers) == 8 and all(np.isfinite(v) for v in numbers)
    assert (tmp_path / "barriers.csv").exists() and (tmp_path / "paths_cifar_resnet_1x.png").exists()


def test_example_ddp_script_runs(tmp_path):
    env = {**__import__("os").environ, "EPOCHS": "1", "OUT": str(tmp_path / "ddp"), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        ["bash", str(ROOT / "examples" / "ddp_line.sh")], capture_output=True, text=True, timeout=600, env=env
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "endpoint ensemble" in out.stdout
    assert json.loads((tmp_path / "ddp" / "summary.json").read_text())["world_size"] == 2


def test_example_intrinsic_dim_methods_runs(tmp_path):
    args = [
        "--epochs",
        "1",
        "--seeds",
        "0",
        "--dims",
        "10",
        "40",
        "--methods",
        "hashed",
        "dense",
        "--hidden",
        "16",
    ]
    summary = _example("intrinsic_dim_methods").main([*args, "--out", str(tmp_path), "--no-progress"])
    assert [(r["method"], r["search"]) for r in summary["rows"]] == [
        ("hashed", "grid"), ("hashed", "bisect"), ("dense", "grid"), ("dense", "bisect"),
    ]  # fmt: skip
    assert summary["rows"][1]["sizes trained"] <= summary["rows"][0]["sizes trained"]
    assert (tmp_path / "methods.md").exists() and (tmp_path / "hashed_grid.png").exists()


def test_landscape_peer_matches_loss_landscapes():
    pytest.importorskip("loss_landscapes")
    result = _example_from("benchmarks", "landscape_peer").main(["--steps", "5", "--train-steps", "20"])
    assert result["filter_direction_max_rel_diff"] < 1e-5 and result["loss_max_abs_diff"] < 1e-5
