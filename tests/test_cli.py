"""The command line and the experiment runs: every subcommand, resume, ECE, label noise, DDP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from subspace_param.cli import build_parser, main
from subspace_param.data import load_digits, with_label_noise
from subspace_param.metrics import expected_calibration_error

TINY = ["--dataset", "digits", "--model", "mlp1", "--epochs", "2", "--batch-size", "64", "--no-progress"]


def _model_state(run: Path) -> dict[str, torch.Tensor]:
    blob = torch.load(run / "model.pt", weights_only=True)
    return blob.get("state_dict", blob)


def test_every_subcommand_has_help(capsys) -> None:
    parser = build_parser()
    for cmd in (
        "train",
        "evaluate",
        "connect",
        "align",
        "plane",
        "landscape",
        "intrinsic-dim",
        "bench",
        "report",
    ):
        with pytest.raises(SystemExit) as e:
            parser.parse_args([cmd, "--help"])
        assert e.value.code == 0
        text = capsys.readouterr().out
        assert "usage: subspace-param " + cmd in text
        # every option is explained
        assert text.count("--") <= 2 * text.count("  ") and "help" in text


def test_train_evaluate_connect_plane(tmp_path, capsys) -> None:
    for kind in ("standard", "line", "simplex"):
        main(["train", "--kind", kind, "--out", str(tmp_path / kind), *TINY])
        hist = json.loads((tmp_path / kind / "history.json").read_text())
        assert [h["epoch"] for h in hist] == [1, 2]
        assert (tmp_path / kind / "history.csv").read_text().startswith("epoch,step,lr,train_loss")
    main(["train", "--kind", "standard", "--seed", "1", "--swa", "--out", str(tmp_path / "standard1"), *TINY])
    main(["evaluate", str(tmp_path / "line")])
    ev = json.loads((tmp_path / "line" / "evaluation.json").read_text())["results"]
    assert {"α=0.50", "endpoint ensemble"} <= set(ev) and all(0 <= v["ece"] <= 1 for v in ev.values())
    assert (tmp_path / "line" / "accuracy_along_path.png").exists()
    main(["evaluate", str(tmp_path / "simplex"), "--points", "0.2,0.3,0.5", "1,0,0"])
    ev = json.loads((tmp_path / "simplex" / "evaluation.json").read_text())["results"]
    assert set(ev) == {"p=0.2,0.3,0.5", "p=1,0,0", "ensemble of the points"}
    main(["evaluate", str(tmp_path / "standard1")])
    assert "SWA" in json.loads((tmp_path / "standard1" / "evaluation.json").read_text())["results"]
    out = tmp_path / "connect"
    main(
        [
            "connect",
            str(tmp_path / "standard"),
            str(tmp_path / "standard1"),
            "--epochs",
            "1",
            "--points",
            "5",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert {p.name for p in out.iterdir()} >= {"curve.pt", "segment.json", "chain.json", "connect.md"}
    main(["plane", str(out), "--grid", "3", "--no-progress"])
    assert (out / "plane.npz").exists() and (out / "plane.png").stat().st_size > 1000
    aligned = tmp_path / "aligned"
    runs = [str(tmp_path / "standard"), str(tmp_path / "standard1")]
    main(["align", *runs, "--points", "3", "--out", str(aligned), "--no-progress"])
    barriers = json.loads((aligned / "barriers.json").read_text())
    assert [r["path"] for r in barriers] == ["naive", "aligned", "aligned + REPAIR"]
    assert (aligned / "barriers.csv").exists() and (aligned / "naive_vs_aligned.png").exists()
    report = json.loads((aligned / "alignment.json").read_text())["groups"]
    assert any(g["permuted"] for g in report) and any(not g["permuted"] for g in report)
    main(["evaluate", str(aligned)])  # the aligned model is a standard run


def test_projection_and_intrinsic_dim(tmp_path) -> None:
    main(
        [
            "train",
            "--kind",
            "projection",
            "--dim",
            "50",
            "--optimizer",
            "adam",
            "--lr",
            "0.003",
            "--out",
            str(tmp_path / "proj"),
            *TINY,
        ]
    )
    assert json.loads((tmp_path / "proj" / "config.json").read_text())["dim"] == 50
    main(["evaluate", str(tmp_path / "proj")])
    main(
        [
            "intrinsic-dim",
            "--dims",
            "5",
            "40",
            "--epochs",
            "1",
            "--model",
            "mlp1",
            "--out",
            str(tmp_path / "id"),
            "--no-progress",
        ]
    )
    saved = json.loads((tmp_path / "id" / "intrinsic_dim.json").read_text())
    assert [r["d"] for r in saved["summary"]] == [5, 40, "full"]


def test_report_quick(tmp_path) -> None:
    main(["report", "--quick", "--out", str(tmp_path), "--no-progress"])
    text = (tmp_path / "report.md").read_text()
    assert "## digits, label noise 0%" in text and "## digits, label noise 20%" in text
    assert text.count("- line midpoint more accurate than standard training: ") == 2
    assert (tmp_path / "simplex_digits.png").exists() and (
        tmp_path / "accuracy_along_paths_digits.png"
    ).exists()


def test_bench_runs_a_selected_benchmark(tmp_path) -> None:
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "subspace_param.cli",
            "bench",
            "-k",
            "projection_step and cnn1d and (plain or sparse-100)",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=root,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "| proj-sparse-100 |" in out.stdout and "| plain |" in out.stdout


@pytest.mark.parametrize("kind", ["standard", "line"])
def test_resume_gives_the_uninterrupted_result(tmp_path, kind) -> None:
    args = ["train", "--kind", kind, "--epochs", "3", *TINY[:4], "--batch-size", "64", "--no-progress"]
    main([*args, "--out", str(tmp_path / "full")])
    main([*args, "--out", str(tmp_path / "split"), "--stop-after-epoch", "1"])
    assert not (tmp_path / "split" / "model.pt").exists()
    main([*args, "--out", str(tmp_path / "split"), "--resume"])
    a, b = _model_state(tmp_path / "full"), _model_state(tmp_path / "split")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_ece_matches_a_direct_loop() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(517, 7, generator=gen) * 3
    labels = torch.randint(0, 7, (517,), generator=gen)
    probs = logits.double().softmax(-1)
    bins = [[] for _ in range(20)]
    for p, y in zip(probs, labels):
        conf, pred = float(p.max()), int(p.argmax())
        b = min(19, max(0, int(-(-conf * 20 // 1)) - 1))  # ceil(conf·20) − 1
        bins[b].append((float(pred == int(y)), conf))
    loop = sum(abs(sum(c for c, _ in b) - sum(p for _, p in b)) for b in bins) / len(labels)
    assert expected_calibration_error(logits, labels) == pytest.approx(loop, abs=1e-12)


def test_label_noise_fraction_is_exact() -> None:
    clean = load_digits()
    noisy = with_label_noise(clean, 0.2, seed=3)
    n = len(clean.y_train)
    gen = torch.Generator().manual_seed(3)
    chosen = torch.randperm(n, generator=gen)[: int(0.2 * n)]
    untouched = torch.ones(n, dtype=torch.bool)
    untouched[chosen] = False
    assert torch.equal(noisy.y_train[untouched], clean.y_train[untouched])  # exactly ⌊0.2 N⌋ relabelled
    changed = int((noisy.y_train != clean.y_train).sum())
    assert 0.8 * 0.9 * len(chosen) < changed <= len(chosen)  # uniform labels keep ≈ 1/10 of them
    assert torch.equal(with_label_noise(clean, 0.2, seed=3).y_train, noisy.y_train)
    with pytest.raises(ValueError, match="label-noise fraction"):
        with_label_noise(clean, 1.5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("kind", ["line"])
def test_ddp_two_processes_equal_single_process(tmp_path, kind) -> None:
    common = ["--kind", kind, "--dataset", "digits", "--model", "mlp1", "--epochs", "2", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(_free_port()),
        "-m",
        "subspace_param.cli",
        "train",
        *common,
        "--batch-size",
        "32",
        "--out",
        str(tmp_path / "ddp"),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    main(["train", *common, "--batch-size", "64", "--out", str(tmp_path / "single")])
    ddp, single = _model_state(tmp_path / "ddp"), _model_state(tmp_path / "single")
    assert json.loads((tmp_path / "ddp" / "summary.json").read_text())["world_size"] == 2
    for k in single:
        torch.testing.assert_close(ddp[k], single[k], rtol=1e-4, atol=1e-5, msg=k)


def test_bench_materialise_table_and_launch_counts(tmp_path) -> None:
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-m", "subspace_param.cli", "bench", "-k",
         "materialize and cnn1d and line and not compile"],
        capture_output=True, text=True, timeout=600, cwd=root,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "| eager parametrize |" in out.stdout and "| fused torch |" in out.stdout
    counts = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "launches.py"), "--models", "cnn1d", "--out",
         str(tmp_path / "launches.json")],
        capture_output=True, text=True, timeout=600, cwd=root,
    )  # fmt: skip
    assert counts.returncode == 0, counts.stderr[-2000:]
    rows = {r["contender"]: r for r in json.loads((tmp_path / "launches.json").read_text())}
    tensors = rows["fused triton"]["tensors"]
    assert rows["fused triton"]["triton_launches"] == 2  # one forward, one backward, for all tensors
    assert rows["per-tensor triton"]["triton_launches"] >= 2 * tensors
    assert rows["eager parametrize"]["aten_ops"] > 3 * tensors  # a combine and K gradients per tensor
    assert rows["fused triton"]["aten_ops"] < rows["eager parametrize"]["aten_ops"]
