"""The results report: seed 000's claims, checked on mnist1d and digits with ≥ 3 seeds.

For each dataset and label-noise level (0% and 20%) and each seed, with one recipe (SGD, momentum
0.9, warm-up + cosine, same epochs for every method): standard training, a second standard model
(the standard ensemble of two), SWA, a line, a Bézier curve and a simplex of 3 vertices. Every
point is evaluated with BatchNorm re-estimated there; ensembles sum logits; ECE uses 20 bins.
Writes ``report.md`` (tables, mean ± std over seeds, and a claim-by-claim verdict), ``report.json``,
``accuracy_along_paths_<dataset>.png`` and ``simplex_<dataset>.png``.

    python -m subspace_param.experiments.report [--quick] [--out runs/report]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..io import markdown_table, save_figure, write_json, write_text
from .runs import RunConfig, evaluate_points, load_run, logits_at, train_run

METHODS = [
    "standard",
    "standard ensemble of 2",
    "SWA",
    "line midpoint",
    "line endpoint ensemble",
    "curve midpoint",
    "curve endpoint ensemble",
    "simplex centroid",
    "simplex vertex ensemble",
]


#: the training runs each method consumes (its budget: epochs × runs, and their wall time)
COST = {
    "standard": ["standard"],
    "standard ensemble of 2": ["standard", "standard2"],
    "SWA": ["swa"],
    "line midpoint": ["line"],
    "line endpoint ensemble": ["line"],
    "curve midpoint": ["curve"],
    "curve endpoint ensemble": ["curve"],
    "simplex centroid": ["simplex"],
    "simplex vertex ensemble": ["simplex"],
}


@dataclasses.dataclass
class ReportSettings:
    datasets: tuple[str, ...] = ("mnist1d", "digits")
    noise: tuple[float, ...] = (0.0, 0.2)
    seeds: tuple[int, ...] = (0, 1, 2)
    model: str = "cnn-small"
    # the reference recipe (wortsman2021: SGD lr 0.1, momentum 0.9, wd 1e-4, batch 128, 5 warm-up
    # epochs, cosine) at a CPU budget: 60 epochs on mnist1d, 30 on digits, instead of 160
    epochs: dict[str, int] = dataclasses.field(default_factory=lambda: {"mnist1d": 60, "digits": 30})
    batch_size: int = 128
    lr: float = 0.1
    weight_decay: float = 1e-4
    warmup_epochs: float = 5.0


def _runs(
    settings: ReportSettings, dataset: str, noise: float, seed: int, root: Path, progress: bool
) -> dict:
    base = RunConfig(
        dataset=dataset,
        model=settings.model,
        epochs=settings.epochs[dataset],
        lr=settings.lr,
        batch_size=settings.batch_size,
        label_noise=noise,
        seed=seed,
        weight_decay=settings.weight_decay,
        warmup_epochs=settings.warmup_epochs,
    )
    specs = {
        "standard": base,
        "standard2": dataclasses.replace(base, seed=seed + 1000),
        "swa": dataclasses.replace(base, swa=True, swa_start=0.75, swa_lr=settings.lr / 5),
        "line": dataclasses.replace(base, kind="line"),
        "curve": dataclasses.replace(base, kind="curve"),
        "simplex": dataclasses.replace(base, kind="simplex", vertices=3),
    }
    dirs, trained = {}, 0
    for name, cfg in specs.items():
        d = root / dataset / f"noise{noise:g}" / f"seed{seed}" / name
        if not (d / "summary.json").exists():  # finished runs are reused: the report can be resumed
            train_run(cfg, d, resume=(d / "checkpoint.pt").exists(), progress=progress)
            trained += 1
        dirs[name] = d
    return dirs, trained


def _evaluate(dirs: dict[str, Path]) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    out: dict[str, dict[str, float]] = {}
    _, m1, _, data = load_run(dirs["standard"])
    _, m2, _, _ = load_run(dirs["standard2"])
    l1, labels = logits_at(m1, data)
    l2, _ = logits_at(m2, data)
    from ..training import metrics

    out["standard"] = metrics(l1, labels)
    out["standard ensemble of 2"] = metrics(l1 + l2, labels)
    _, swa, _, _ = load_run(dirs["swa"], which="swa")
    out["SWA"] = evaluate_points(swa, data, None, {"m": None})["m"]
    along: dict[str, Any] = {}
    for kind in ("line", "curve"):
        _, model, sub, _ = load_run(dirs[kind])
        ts = np.linspace(0, 1, 11)
        res = evaluate_points(model, data, sub, {f"{t:.1f}": float(t) for t in ts}, {"ens": ["0.0", "1.0"]})
        out[f"{kind} midpoint"] = res["0.5"]
        out[f"{kind} endpoint ensemble"] = res["ens"]
        along[kind] = [res[f"{t:.1f}"]["acc"] for t in ts]
    _, model, sub, _ = load_run(dirs["simplex"])
    pts = {f"v{i}": sub.geometry.vertex_point(i) for i in range(3)} | {"c": sub.center()}
    res = evaluate_points(model, data, sub, pts, {"ens": ["v0", "v1", "v2"]})
    out["simplex centroid"] = res["c"]
    out["simplex vertex ensemble"] = res["ens"]
    return out, along


def simplex_heatmap(run_dir: Path, path: Path, steps: int = 6) -> Path:
    """Test accuracy on a barycentric grid of a 3-vertex simplex (BN re-estimated at every point)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _, model, sub, data = load_run(run_dir)
    xs, ys, accs = [], [], []
    corners = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, np.sqrt(3) / 2]])
    for i in range(steps + 1):
        for j in range(steps + 1 - i):
            w = np.array([i, j, steps - i - j], dtype=np.float64) / steps
            res = evaluate_points(model, data, sub, {"p": torch.tensor(w)})[
                "p"
            ]  # a simplex point = its weights
            x, y = w @ corners
            xs.append(x)
            ys.append(y)
            accs.append(res["acc"])
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    sc = ax.tricontourf(xs, ys, accs, levels=12, cmap="viridis")
    ax.scatter(xs, ys, c="w", s=6)
    fig.colorbar(sc, ax=ax, label="test accuracy")
    ax.set(title="accuracy over the simplex", xticks=[], yticks=[])
    ax.set_aspect("equal")
    fig.tight_layout()
    out = save_figure(fig, path)
    plt.close(fig)
    return out


def _fmt(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    a = np.asarray(values) * scale
    return f"{a.mean():.{digits}f} ± {a.std(ddof=1) if len(a) > 1 else 0.0:.{digits}f}"


def _claims(stats: dict[str, dict[str, list[float]]]) -> list[str]:
    """Seed 000's claims, each checked against the mean ± std over seeds."""

    def cmp(a: str, b: str, metric: str, higher_better: bool) -> str:
        va, vb = np.asarray(stats[a][metric]), np.asarray(stats[b][metric])
        diff = (va - vb).mean() * (1 if higher_better else -1)
        spread = np.std(va - vb, ddof=1) if len(va) > 1 else 0.0
        verdict = "holds" if diff > spread else "does not hold" if diff < -spread else "within seed noise"
        return (
            f"{verdict} ({metric} {va.mean():.4f} vs {vb.mean():.4f}; paired diff {diff:+.4f} ± {spread:.4f})"
        )

    return [
        "- line midpoint more accurate than standard training: "
        f"{cmp('line midpoint', 'standard', 'acc', True)}",
        "- line midpoint better calibrated than standard training: "
        f"{cmp('line midpoint', 'standard', 'ece', False)}",
        f"- line midpoint more accurate than SWA: {cmp('line midpoint', 'SWA', 'acc', True)}",
        f"- line midpoint better calibrated than SWA: {cmp('line midpoint', 'SWA', 'ece', False)}",
        "- line endpoint ensemble as accurate as the standard ensemble of 2 (claim: approaches it): "
        f"{cmp('line endpoint ensemble', 'standard ensemble of 2', 'acc', True)}",
        f"- simplex vertex ensemble vs standard ensemble of 2: "
        f"{cmp('simplex vertex ensemble', 'standard ensemble of 2', 'acc', True)}",
    ]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/report"), help="output folder")
    p.add_argument("--quick", action="store_true", help="tiny settings (a smoke test, not a result)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    a = p.parse_args(argv)
    settings = ReportSettings()
    if a.quick:
        settings = ReportSettings(
            datasets=("digits",), seeds=(0, 1), epochs={"digits": 2}, model="mlp1", warmup_epochs=1.0
        )
    start = time.perf_counter()
    header = (
        f"settings: datasets={list(settings.datasets)} label noise={list(settings.noise)} "
        f"seeds={list(settings.seeds)} model={settings.model} epochs={settings.epochs} "
        f"batch={settings.batch_size} lr={settings.lr} (SGD momentum 0.9, wd {settings.weight_decay}, "
        f"{settings.warmup_epochs:g} warm-up epochs, cosine: the wortsman2021 recipe at a CPU budget "
        "of epochs; "
        f"SWA over the last 25% at lr/5; β = 1)"
    )
    print(header)
    md = [
        "# Results report: subspace midpoints, ensembles, SWA and label noise (seed 000's claims)\n",
        header + "\n",
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads.\n",
    ]
    results: dict[str, Any] = {"settings": dataclasses.asdict(settings), "tables": {}}
    trained_now = 0
    for dataset in settings.datasets:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.8))
        for noise in settings.noise:
            stats: dict[str, dict[str, list[float]]] = {m: {"acc": [], "nll": [], "ece": []} for m in METHODS}
            along_all: dict[str, list[list[float]]] = {"line": [], "curve": []}
            for seed in settings.seeds:
                dirs, trained = _runs(settings, dataset, noise, seed, a.out / "runs", not a.no_progress)
                trained_now += trained
                res, along = _evaluate(dirs)
                for m in METHODS:
                    for k in ("acc", "nll", "ece"):
                        stats[m][k].append(res[m][k])
                    seconds = sum(
                        json.loads((dirs[r] / "summary.json").read_text())["seconds"] for r in COST[m]
                    )
                    stats[m].setdefault("train_seconds", []).append(seconds)
                for k in along_all:
                    along_all[k].append(along[k])
            rows = [
                {
                    "method": m,
                    "test acc (%)": _fmt(stats[m]["acc"], 100),
                    "NLL": _fmt(stats[m]["nll"], 1, 3),
                    "ECE (%)": _fmt(stats[m]["ece"], 100),
                    "training": f"{len(COST[m])} × {settings.epochs[dataset]} epochs, "
                    f"{np.mean(stats[m]['train_seconds']):.0f} s",
                }
                for m in METHODS
            ]
            key = f"{dataset} noise {noise:g}"
            results["tables"][key] = {"rows": rows, "raw": stats, "along": along_all}
            md += [
                f"## {dataset}, label noise {noise:.0%}\n",
                markdown_table(rows) + "\n",
                "Claims:\n",
                *_claims(stats),
                "",
            ]
            for kind, style in (("line", "-"), ("curve", "--")):
                acc = np.asarray(along_all[kind]).mean(0)
                ax.plot(np.linspace(0, 1, 11), acc, style, marker=".", label=f"{kind}, noise {noise:.0%}")
        ax.set(xlabel="α (position on the path)", ylabel="test accuracy (mean over seeds)", title=dataset)
        ax.legend(fontsize=8)
        fig.tight_layout()
        save_figure(fig, a.out / f"accuracy_along_paths_{dataset}.png")
        plt.close(fig)
        simplex_heatmap(
            a.out / "runs" / dataset / "noise0" / f"seed{settings.seeds[0]}" / "simplex",
            a.out / f"simplex_{dataset}.png",
            steps=3 if a.quick else 6,
        )
    minutes = (time.perf_counter() - start) / 60
    total = len(settings.datasets) * len(settings.noise) * len(settings.seeds) * 6
    md.append(
        f"Wall time: {minutes:.1f} min ({trained_now} of the {total} runs trained by this invocation, "
        "the others reused from the output folder).\n"
    )
    results["minutes"] = minutes
    write_text(a.out / "report.md", "\n".join(md))
    write_json(a.out / "report.json", results)
    print("\n".join(md))
    return results


if __name__ == "__main__":
    main()
