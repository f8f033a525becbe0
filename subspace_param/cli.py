"""The ``subspace-param`` command line: train, evaluate, connect, align, plane, landscape, intrinsic-dim,
bench, report.

Every subcommand writes JSON/CSV/markdown (and plots where they help) into its output folder and
shows progress bars; ``subspace-param <command> --help`` explains every option.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .errors import NonFiniteError, SubspaceError
from .experiments.runs import (
    DEFAULT_DDP_TIMEOUT,
    KINDS,
    RECIPES,
    RunConfig,
    apply_recipe,
    evaluate_points,
    load_run,
    train_run,
)
from .io import markdown_table, save_figure, write_json, write_text
from .projections import available_methods

#: Garipov et al. 2018's curve recipe (dnn-mode-connectivity README, PreResNet164 / WRN28x10):
#: SGD momentum 0.9, 200 epochs, lr 0.03, ½·wd·‖θ(t)‖² with wd 3e-4 on the point, no optimizer
#: weight decay, lr constant to 50% then linearly down to 1% by 90% of training.
CURVE_RECIPES: dict[str, dict[str, Any]] = {
    "garipov2018": {"epochs": 200, "lr": 0.03, "point_weight_decay": 3e-4, "schedule": "garipov"},
}


def _add_run_options(p: argparse.ArgumentParser) -> None:
    d = RunConfig()
    g = p.add_argument_group("data and model")
    g.add_argument(
        "--dataset",
        default=d.dataset,
        help="mnist1d | digits | digits32 (embedded) or mnist | fashion-mnist | cifar10 | cifar100 "
        "(torchvision, from --data-root)",
    )
    g.add_argument("--data-root", default=d.data_root, help="folder of the torchvision datasets")
    g.add_argument("--download", action="store_true", help="download a torchvision dataset if missing")
    g.add_argument(
        "--label-noise",
        type=float,
        default=d.label_noise,
        help="fraction p of training labels replaced by uniform random labels (fixed permutation)",
    )
    g.add_argument(
        "--model",
        default=d.model,
        help="cnn | cnn-small | mlp | mlp1 | mlp-nobias3 | cifar_resnet20 | vgg16 | vgg-small | "
        "any torchvision classifier",
    )
    g = p.add_argument_group("what to train")
    g.add_argument(
        "--kind", default=d.kind, choices=KINDS, help="standard model, a subspace, or a projection"
    )
    g.add_argument("--layerwise", action="store_true", help="an independent point per module")
    g.add_argument(
        "--beta", type=float, default=d.beta, help="weight of the cos² regulariser between vertices"
    )
    g.add_argument("--num-samples", type=int, default=d.num_samples, help="subspace points per batch")
    g.add_argument("--bends", type=int, default=d.bends, help="bends of a chain")
    g.add_argument("--vertices", type=int, default=d.vertices, help="vertices of a simplex")
    g.add_argument("--dim", type=int, default=d.dim, help="dimension d of a projection subspace")
    g.add_argument(
        "--method", default=d.method, choices=["auto", *available_methods()], help="projection method"
    )
    g.add_argument(
        "--save-trajectory",
        dest="trajectory",
        action="store_true",
        help="keep the parameters after every epoch in trajectory/ (for `landscape --directions pca`)",
    )
    g.add_argument("--swa", action="store_true", help="stochastic weight averaging (standard kind)")
    g.add_argument("--swa-start", type=float, default=d.swa_start, help="fraction of epochs before averaging")
    g.add_argument("--swa-lr", type=float, default=d.swa_lr, help="constant learning rate while averaging")
    g.add_argument(
        "--fge-cycle",
        type=int,
        default=d.fge_cycle,
        help="fast geometric ensembling: cycle length in epochs (even; 0 = off)",
    )
    g.add_argument(
        "--fge-start", type=float, default=d.fge_start, help="fraction of epochs before FGE cycles"
    )
    g = p.add_argument_group("recipe")
    g.add_argument("--epochs", type=int, default=d.epochs, help="epochs")
    g.add_argument("--batch-size", type=int, default=d.batch_size, help="batch size per process")
    g.add_argument("--lr", type=float, default=d.lr, help="peak learning rate (warm-up, then cosine)")
    g.add_argument("--optimizer", default=d.optimizer, choices=["sgd", "adam"], help="optimizer")
    g.add_argument("--weight-decay", type=float, default=d.weight_decay, help="weight decay")
    g.add_argument("--warmup-epochs", type=float, default=d.warmup_epochs, help="linear warm-up epochs")
    g.add_argument("--seed", type=int, default=d.seed, help="seed of the init, data order and points")


def _config(a: argparse.Namespace) -> RunConfig:
    names = {f.name for f in dataclasses.fields(RunConfig)}
    return RunConfig(**{k: v for k, v in vars(a).items() if k in names})


def _explicit(a: argparse.Namespace) -> set[str]:
    """The destinations of the options given on the command line (not left at their defaults)."""
    tokens = a.argv
    return {
        action.dest
        for action in a.parser._actions
        if any(t == o or t.startswith(o + "=") for o in action.option_strings for t in tokens)
    }


def cmd_train(a: argparse.Namespace) -> None:
    cfg = _config(a)
    if a.recipe:
        cfg = apply_recipe(cfg, a.recipe, keep=_explicit(a))
        print(f"[train] recipe {a.recipe}: " + ", ".join(f"{k}={getattr(cfg, k)}" for k in RECIPES[a.recipe]))
    summary = train_run(
        cfg,
        a.out,
        resume=a.resume,
        overwrite=a.overwrite,
        stop_after_epoch=a.stop_after_epoch,
        progress=not a.no_progress,
        device=a.device,
        on_nonfinite=a.on_nonfinite,
        ddp_timeout=a.ddp_timeout,
    )
    last = summary["history"][-1]
    print(
        f"{a.out}: epoch {last['epoch']}, train loss {last['train_loss']:.4f}, "
        f"train acc {last['train_acc']:.4f}, "
        f"{last['seconds']:.1f} s"
    )


def default_points(cfg: RunConfig, sub) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Named evaluation points and ensembles for a run's kind."""
    if sub is None:
        return {"model": None}, {}
    if sub.geometry.point_dim == 1:
        points = {f"α={t:.2f}": t for t in np.linspace(0, 1, 11)}
        return points, {"endpoint ensemble": ["α=0.00", "α=1.00"]}
    k = sub.num_vertices
    points = {f"vertex {i}": sub.geometry.vertex_point(i) for i in range(k)}
    points["centroid"] = sub.center()
    return points, {"vertex ensemble": [f"vertex {i}" for i in range(k)]}


def cmd_evaluate(a: argparse.Namespace) -> None:
    cfg, model, sub, data = load_run(a.run)
    points, ensembles = default_points(cfg, sub)
    if a.points:
        points = {f"p={p}": [float(v) for v in p.split(",")] if "," in p else float(p) for p in a.points}
        ensembles = {"ensemble of the points": list(points)} if len(points) > 1 else {}
    results = evaluate_points(model, data, sub, points, ensembles)
    if (Path(a.run) / "swa.pt").exists():
        _, swa, _, _ = load_run(a.run, which="swa")
        results["SWA"] = evaluate_points(swa, data, None, {"m": None})["m"]
    nonfinite = [
        f"{name} {metric}" for name, row in results.items() for metric, v in row.items() if not np.isfinite(v)
    ]
    rows = [{"point": k, **v} for k, v in results.items()]
    out = Path(a.out or a.run)
    write_json(out / "evaluation.json", {"run": str(a.run), "results": results})
    write_text(out / "evaluation.md", markdown_table(rows) + "\n")
    if sub is not None and sub.geometry.point_dim == 1 and not a.points:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.5))
        ts = [points[k] for k in points]
        ax.plot(ts, [results[k]["acc"] for k in points], marker="o", label=f"{cfg.kind} point")
        ax.axhline(results["endpoint ensemble"]["acc"], ls="--", color="k", label="endpoint ensemble")
        ax.set(xlabel="α", ylabel="test accuracy", title=f"{cfg.kind} on {cfg.dataset}")
        ax.legend()
        fig.tight_layout()
        save_figure(fig, out / "accuracy_along_path.png")
        plt.close(fig)
    print(markdown_table(rows))
    if nonfinite:
        raise NonFiniteError(
            f"{a.run}: non-finite metrics ({', '.join(nonfinite[:6])}): the model's outputs are NaN or "
            "infinite (a diverged run?); the table above and evaluation.json say where"
        )


def cmd_connect(a: argparse.Namespace) -> None:
    import torch

    from . import save
    from .connectivity import LinearPath, SubspacePath, connect, evaluate_path, plot_paths
    from .training import TrainConfig, train

    cfg_a, model_a, _, data = load_run(a.run_a)
    _, model_b, _, _ = load_run(a.run_b)
    segment = LinearPath(model_a, model_b)
    curve = connect(model_a, model_b, curve=a.curve, bends=a.bends, seed=a.seed)
    train_loader, train_eval, test_loader = data.loaders(cfg_a.batch_size, seed=a.seed)
    torch.manual_seed(a.seed)
    settings = {
        "epochs": a.epochs,
        "lr": a.lr,
        "point_weight_decay": a.point_weight_decay,
        "schedule": a.schedule,
    }
    if a.recipe:
        explicit = _explicit(a)
        settings.update({k: v for k, v in CURVE_RECIPES[a.recipe].items() if k not in explicit})
        print(f"[connect] recipe {a.recipe}: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    tcfg = TrainConfig(
        **settings,
        weight_decay=0.0,
        warmup_epochs=0.0 if settings["schedule"] == "garipov" else 1.0,
        beta=0.0,
        progress=not a.no_progress,
        desc="fit curve",
    )
    train(model_a, train_loader, tcfg, subspace=curve)
    out = Path(a.out)
    save(curve, out / "curve.pt")
    write_json(
        out / "connect.json",
        {
            "run_a": str(a.run_a),
            "run_b": str(a.run_b),
            "curve": a.curve,
            "bends": a.bends,
            "recipe": a.recipe,
            **settings,
            "seed": a.seed,
        },
    )
    ts = np.linspace(0, 1, a.points)
    evs = [
        evaluate_path(segment, train_eval, test_loader, ts, label="segment", progress=not a.no_progress),
        evaluate_path(
            SubspacePath(curve), train_eval, test_loader, ts, label=a.curve, progress=not a.no_progress
        ),
    ]
    rows = []
    for ev in evs:
        ev.save(out, ev.label)
        rows.append(
            {
                "path": ev.label,
                "barrier (train loss)": ev.barrier("train_loss"),
                "max test err": float(ev.values["test_err"].max()),
                "length": ev.length,
            }
        )
    plot_paths(evs, out / "segment_vs_curve.png")
    write_text(out / "connect.md", markdown_table(rows) + "\n")
    print(markdown_table(rows))


def cmd_align(a: argparse.Namespace) -> None:
    import shutil
    import time

    import torch

    from .connectivity import LinearPath, Repair, alignment, evaluate_path, plot_paths
    from .io import atomic_write, write_csv

    cfg_a, model_a, sub_a, data = load_run(a.run_a)
    cfg_b, model_b, sub_b, _ = load_run(a.run_b)
    if sub_a is not None or sub_b is not None or (cfg_a.model, cfg_a.dataset) != (cfg_b.model, cfg_b.dataset):
        raise SubspaceError(
            f"align needs two standard runs of one model and dataset: {a.run_a} is {cfg_a.kind} "
            f"{cfg_a.model} on {cfg_a.dataset}, {a.run_b} is {cfg_b.kind} {cfg_b.model} on {cfg_b.dataset}"
        )
    train_loader, train_eval, test_loader = data.loaders(cfg_a.batch_size, seed=a.seed)
    example = next(iter(train_eval))[0][:8]
    start = time.perf_counter()
    result = alignment(
        model_a.eval(),
        model_b.eval(),
        a.method,
        data=train_loader if a.method == "activations" else None,
        example=example,
        seed=a.seed,
    )
    seconds = time.perf_counter() - start
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(a.run_b) / "config.json", out / "config.json")  # a standard run: connect/evaluate it
    atomic_write(out / "model.pt", lambda f: torch.save(result.model.state_dict(), f))
    write_json(
        out / "alignment.json",
        {"run_a": str(a.run_a), "run_b": str(a.run_b), "method": a.method, "seconds": seconds,
         "iterations": result.iterations, "groups": result.report},
    )  # fmt: skip
    ts = np.linspace(0, 1, a.points)
    evs = [
        evaluate_path(LinearPath(model_a, model_b), train_eval, test_loader, ts, label="naive",
                      progress=not a.no_progress),
        evaluate_path(LinearPath(model_a, result.model), train_eval, test_loader, ts, label="aligned",
                      progress=not a.no_progress),
        evaluate_path(LinearPath(model_a, result.model), train_eval, test_loader, ts,
                      label="aligned + REPAIR", progress=not a.no_progress,
                      repair=Repair(model_a, result.model, train_eval)),
    ]  # fmt: skip
    rows = [
        {
            "path": ev.label,
            "barrier_train_loss": ev.barrier("train_loss"),
            "barrier_test_err": ev.barrier("test_err"),
            "max_test_err": float(ev.values["test_err"].max()),
        }
        for ev in evs
    ]
    for ev in evs:
        ev.save(out, "path_" + ev.label.replace(" + ", "_").replace(" ", "_"))
    write_json(out / "barriers.json", rows)
    write_csv(out / "barriers.csv", rows)
    plot_paths(evs, out / "naive_vs_aligned.png")
    free = sum(row["permuted"] for row in result.report)
    print(f"[align] {free} of {len(result.report)} channel groups permuted ({a.method}, {seconds:.1f} s)")
    print(markdown_table(rows))


def cmd_plane(a: argparse.Namespace) -> None:
    from . import load
    from .connectivity import curve_plane

    info = __import__("json").loads((Path(a.connect_dir) / "connect.json").read_text())
    cfg_a, model, _, data = load_run(info["run_a"])
    curve = load(Path(a.connect_dir) / "curve.pt", model)
    _, train_eval, test_loader = data.loaders(cfg_a.batch_size)
    plane = curve_plane(
        curve, train_eval, test_loader, grid=a.grid, margin=a.margin, progress=not a.no_progress
    )
    files = plane.save(a.out or a.connect_dir, "plane")
    print("wrote", ", ".join(str(f) for f in files.values()))


def cmd_landscape(a: argparse.Namespace) -> None:
    import math

    import torch.nn.functional as F

    from . import landscape
    from .experiments.runs import trajectory_files

    if len(a.runs) not in (1, 3):
        raise SystemExit(
            f"landscape: give one run (with --directions) or three runs (their plane), got {len(a.runs)}"
        )
    loaded = [load_run(r) for r in a.runs]
    cfg, model, sub, data = loaded[0]
    if sub is not None:
        raise SystemExit(
            f"landscape: {a.runs[0]} is a {cfg.kind} run; landscapes are drawn around standard runs"
        )
    _, train_eval, test_loader = data.loaders(cfg.batch_size)
    out = Path(a.out)
    span: Any = a.span
    directions = None
    if len(a.runs) == 3:
        if any(c.kind != "standard" for c, *_ in loaded):
            raise SystemExit("landscape: the three-model plane needs three standard runs")
        the_plane = landscape.plane([m for _, m, _, _ in loaded])
        print(
            f"[landscape] plane through {', '.join(a.runs)} "
            f"(|w2 - w0| = {the_plane.dx:.3f}, residual {the_plane.dy:.3f})"
        )
    elif a.directions in ("filter", "layer", "model", "none"):
        norm = None if a.directions == "none" else a.directions
        dirs = [
            landscape.random_direction(model, norm, a.seed + i, include_1d=a.include_1d) for i in range(2)
        ]
        the_plane = landscape.plane(center=model, directions=dirs)
        the_plane.info["directions"] = {
            "kind": "random",
            "normalization": norm,
            "seeds": [a.seed, a.seed + 1],
        }
    elif a.directions == "pca":
        directions = landscape.pca_directions(trajectory_files(a.runs[0]), 2, center=model)
        the_plane = landscape.plane(center=model, directions=directions)
        if span is None:  # the trajectory with a 20% margin
            xy = np.asarray(directions.info["trajectory"])
            lo, hi = xy.min(0), xy.max(0)
            pad = 0.2 * np.maximum(hi - lo, 1e-3)
            span = (lo[0] - pad[0], hi[0] + pad[0], lo[1] - pad[1], hi[1] + pad[1])
    else:  # hessian
        directions = landscape.hessian_directions(
            model, F.cross_entropy, train_eval, 2, iterations=a.hessian_iterations, max_batches=a.max_batches,
            seed=a.seed,
        )  # fmt: skip
        the_plane = landscape.plane(center=model, directions=directions)
        top = float(directions.values[0])
        if span is None:  # where the quadratic model along the top eigenvector rises by 4 nats
            span = 2 * math.sqrt(2 / top) if top > 0 else 1.0
    if directions is not None:
        write_json(out / "directions.json", directions.summary())
        print(
            f"[landscape] {directions.kind} directions, "
            f"values {[round(float(v), 6) for v in directions.values]}"
        )
    result = landscape.evaluate_plane(
        the_plane, model, train_eval, test_loader, grid=a.grid, span=span, bn_batches=a.bn_batches,
        max_batches=a.max_batches, progress=not a.no_progress,
    )  # fmt: skip
    result.info["runs"] = list(a.runs)
    result.info["directions_option"] = a.directions if len(a.runs) == 1 else "three models"
    files = result.save(out, "landscape", metric=a.metric)
    v = result.values[a.metric]
    print(f"[landscape] {a.grid}x{a.grid} grid: {a.metric} min {v.min():.4f}, max {v.max():.4f}")
    if "subsample" in result.info:
        for split, rep in result.info["subsample"].items():
            print(f"[landscape] {split}: {rep['examples_used']} of {rep['examples_total']} examples per "
                  "point; "
                  f"origin loss gap {rep['loss_gap']:.4f}, error gap {rep['err_gap']:.4f}")  # fmt: skip
    print("wrote", ", ".join(str(f) for f in files.values()))


def cmd_intrinsic_dim(a: argparse.Namespace) -> None:
    from .data import load_dataset
    from .experiments.intrinsic_dim import OMEGA_RECIPE, intrinsic_dimension
    from .models import build_model

    data = load_dataset(a.dataset, root=a.data_root, download=a.download)
    cfg = dataclasses.replace(OMEGA_RECIPE, epochs=a.epochs, lr=a.lr, progress=not a.no_progress)
    result = intrinsic_dimension(
        lambda: build_model(a.model, data.input_shape, data.num_classes),
        data,
        a.dims if a.dims is not None or a.bounds is not None else [10, 30, 100, 300, 1000],
        seeds=a.seeds,
        method=a.method,
        search=a.search,
        bounds=tuple(a.bounds) if a.bounds else None,
        rtol=a.rtol,
        cfg=cfg,
        batch_size=a.batch_size,
        baseline=a.baseline,
    )
    result.save(a.out)
    print(result.markdown())


def cmd_bench(a: argparse.Namespace) -> None:
    # the suite lives in a checkout: --suite, else ./benchmarks, else the checkout of an editable install
    candidates = (
        [Path(a.suite)]
        if a.suite
        else [Path.cwd() / "benchmarks", Path(__file__).resolve().parents[1] / "benchmarks"]
    )
    runner = next((c / "run.py" for c in candidates if (c / "run.py").exists()), None)
    if runner is None:
        raise SystemExit(
            "bench runs the benchmark suite of a source checkout; no run.py in "
            + ", ".join(str(c) for c in candidates)
            + " (run it from the checkout's root or pass --suite PATH/benchmarks)"
        )
    cmd = (
        [sys.executable, str(runner)] + (["-k", a.k] if a.k else []) + (["--json", a.json] if a.json else [])
    )
    raise SystemExit(subprocess.call(cmd))


def cmd_report(a: argparse.Namespace) -> None:
    from .experiments import report

    report.main(
        [
            *(["--quick"] if a.quick else []),
            "--out",
            str(a.out),
            *(["--no-progress"] if a.no_progress else []),
        ]
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="subspace-param", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser(
        "train",
        help="train a standard model, a subspace or a projection (torchrun for DDP)",
        description="Train one run into --out: config.json, history.csv/json, checkpoint.pt "
        "(every epoch), model.pt. Under torchrun, trains with DistributedDataParallel.",
    )
    _add_run_options(t)
    t.add_argument(
        "--recipe",
        default=None,
        choices=sorted(RECIPES),
        help="a paper's recipe (wortsman2021: SGD lr 0.1, wd 1e-4, batch 128, 160 epochs, 5 warm-up); "
        "options given explicitly override it",
    )
    t.add_argument("--out", required=True, help="output folder of the run")
    t.add_argument(
        "--resume",
        action="store_true",
        help="continue from --out/checkpoint.pt (same result as uninterrupted)",
    )
    t.add_argument(
        "--overwrite", action="store_true", help="replace a run already in --out (otherwise refused)"
    )
    t.add_argument(
        "--on-nonfinite",
        default="stop",
        choices=["stop", "skip"],
        help="a NaN/inf loss or gradient stops the run, keeping the last good checkpoint (stop), or the "
        "step is skipped and counted in the history (skip)",
    )
    t.add_argument(
        "--ddp-timeout",
        type=float,
        default=DEFAULT_DDP_TIMEOUT,
        help="seconds a DDP collective waits for a stuck peer before the run fails",
    )
    t.add_argument(
        "--sync-bn",
        action="store_true",
        help="under torchrun on CUDA: SyncBatchNorm, so 2 processes × B normalise like 1 × 2B",
    )
    t.add_argument("--stop-after-epoch", type=int, default=None, help="checkpoint and stop after this epoch")
    t.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    t.add_argument("--no-progress", action="store_true", help="hide progress bars")
    t.set_defaults(func=cmd_train, parser=t)

    e = sub.add_parser(
        "evaluate",
        help="accuracy, NLL and ECE at points of a trained run and their ensembles",
        description="BN is re-estimated at every point. Defaults: 11 points along a line/curve/chain "
        "and the endpoint ensemble; vertices, centroid and vertex ensemble of a simplex; "
        "the model (and SWA) for standard runs.",
    )
    e.add_argument("run", help="folder of a finished `train` run")
    e.add_argument(
        "--points", nargs="+", default=None, help="points to evaluate: α, or comma-separated simplex weights"
    )
    e.add_argument("--out", default=None, help="output folder (default: the run folder)")
    e.set_defaults(func=cmd_evaluate)

    c = sub.add_parser(
        "connect",
        help="fit a Bézier curve or chain between two trained standard runs",
        description="Wraps run A's model as a curve to run B's with frozen ends, trains the bends "
        "(t ~ U[0, 1] per batch), and evaluates it against the straight segment.",
    )
    c.add_argument("run_a", help="folder of the first trained standard run")
    c.add_argument("run_b", help="folder of the second trained standard run (same dataset and model)")
    c.add_argument("--curve", default="chain", choices=["bezier", "chain"], help="curve family")
    c.add_argument("--bends", type=int, default=1, help="bends of a chain")
    c.add_argument("--epochs", type=int, default=20, help="epochs to train the bends")
    c.add_argument("--lr", type=float, default=0.05, help="peak learning rate")
    c.add_argument(
        "--point-weight-decay",
        type=float,
        default=3e-4,
        help="½·wd·‖θ(t)‖² on the point (Garipov et al.'s curve objective; their PreResNet164 value)",
    )
    c.add_argument(
        "--schedule",
        default="cosine",
        choices=["cosine", "constant", "garipov"],
        help="learning-rate schedule",
    )
    c.add_argument(
        "--recipe",
        default=None,
        choices=sorted(CURVE_RECIPES),
        help="garipov2018: 200 epochs, lr 0.03, point wd 3e-4, constant then linear to 1%% (their "
        "PreResNet164/WRN curves); options given explicitly override it",
    )
    c.add_argument("--points", type=int, default=21, help="points on the path for the evaluation")
    c.add_argument("--seed", type=int, default=0, help="seed of the data order and of t")
    c.add_argument("--out", required=True, help="output folder")
    c.add_argument("--no-progress", action="store_true", help="hide progress bars")
    c.set_defaults(func=cmd_connect, parser=c)

    al = sub.add_parser(
        "align",
        help="permute run B's channels to match run A (B's function kept) and compare the barriers",
        description="Traces the model, matches B's channels to A's (weight matching, OT or activations), "
        "writes the aligned model as a standard run, the per-group permutation report, and the "
        "train-loss / test-error barriers of the straight segment before and after (JSON, CSV, plot).",
    )
    al.add_argument("run_a", help="folder of the first trained standard run")
    al.add_argument("run_b", help="folder of the second trained standard run (same dataset and model)")
    al.add_argument("--method", default="weights", choices=["weights", "ot", "activations"], help="matching")
    al.add_argument("--points", type=int, default=11, help="points on each segment for the barrier")
    al.add_argument("--seed", type=int, default=0, help="seed of the matching order and of the data order")
    al.add_argument("--out", required=True, help="output folder (a standard run of the aligned model)")
    al.add_argument("--no-progress", action="store_true", help="hide progress bars")
    al.set_defaults(func=cmd_align)

    pl = sub.add_parser("plane", help="loss and error on the plane through a fitted curve's ends and bend")
    pl.add_argument("connect_dir", help="output folder of `connect`")
    pl.add_argument("--grid", type=int, default=21, help="G for the G×G grid")
    pl.add_argument("--margin", type=float, default=0.2, help="margin around [0, 1] on both axes")
    pl.add_argument("--out", default=None, help="output folder (default: connect_dir)")
    pl.add_argument("--no-progress", action="store_true", help="hide progress bars")
    pl.set_defaults(func=cmd_plane)

    ls = sub.add_parser(
        "landscape",
        help="loss landscape around a run (filter / layer / model / PCA / Hessian directions) or through "
        "three runs",
        description="One run: the plane through its weights along two directions — random with Li et al.'s "
        "filter (default), layer or model normalisation, PCA of its trajectory (train with "
        "--save-trajectory), "
        "or the top-2 Hessian eigenvectors. Three runs: the plane through them. Writes landscape.json/.npz, "
        "a contour plot (landscape.png), a 3-D surface (landscape_surface.png) and directions.json.",
    )
    ls.add_argument("runs", nargs="+", help="one run folder, or three (the plane through them)")
    ls.add_argument(
        "--directions",
        default="filter",
        choices=["filter", "layer", "model", "none", "pca", "hessian"],
        help="directions of a one-run plane",
    )
    ls.add_argument("--grid", type=int, default=21, help="G for the G×G grid")
    ls.add_argument(
        "--span",
        type=float,
        default=None,
        help="coefficient range [-s, s] (default 1 for random directions; PCA: the trajectory + 20%%; "
        "Hessian: 2·sqrt(2/λ1)); for three runs the margin around [0, 1] (default 0.2)",
    )
    ls.add_argument("--seed", type=int, default=0, help="seed of the random directions / of Lanczos")
    ls.add_argument("--include-1d", action="store_true", help="biases and norm layers move too (d = θ there)")
    ls.add_argument(
        "--max-batches",
        type=int,
        default=None,
        help="evaluate each point on the first N batches (gap reported)",
    )
    ls.add_argument("--bn-batches", type=int, default=None, help="batches to re-estimate BN at each point")
    ls.add_argument(
        "--hessian-iterations", type=int, default=None, help="Lanczos steps (default max(4k, 30))"
    )
    ls.add_argument(
        "--metric",
        default="train_loss",
        choices=["train_loss", "train_err", "test_loss", "test_err"],
        help="plotted",
    )
    ls.add_argument("--out", required=True, help="output folder")
    ls.add_argument("--no-progress", action="store_true", help="hide progress bars")
    ls.set_defaults(func=cmd_landscape)

    i = sub.add_parser("intrinsic-dim", help="train in random subspaces of growing d and report d_int90")
    i.add_argument("--dataset", default="digits", help="dataset name (as for train)")
    i.add_argument("--data-root", default="data", help="folder of the torchvision datasets")
    i.add_argument("--download", action="store_true", help="download a torchvision dataset if missing")
    i.add_argument("--model", default="mlp", help="model name (as for train)")
    i.add_argument("--dims", nargs="+", type=int, default=None, help="grid of d (default 10 30 100 300 1000)")
    i.add_argument("--seeds", nargs="+", type=int, default=[0], help="seeds per d")
    i.add_argument(
        "--method", default="auto", choices=["auto", *available_methods()], help="projection method"
    )
    i.add_argument(
        "--search",
        default="grid",
        choices=["grid", "bisect"],
        help="train every d of --dims, or bisect (over --dims, or on log d within --bounds)",
    )
    i.add_argument("--bounds", nargs=2, type=int, default=None, help="(lo, hi) of a bisection without --dims")
    i.add_argument("--rtol", type=float, default=0.1, help="bisection on log d stops when hi/lo ≤ 1 + rtol")
    i.add_argument("--epochs", type=int, default=100, help="epochs per run")
    i.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (betas 0.9, 0.99)")
    i.add_argument("--batch-size", type=int, default=256, help="batch size")
    i.add_argument(
        "--baseline",
        type=float,
        default=None,
        help="baseline accuracy (default: train the model directly; 1.0: Li et al.'s global threshold)",
    )
    i.add_argument("--out", required=True, help="output folder")
    i.add_argument("--no-progress", action="store_true", help="hide progress bars")
    i.set_defaults(func=cmd_intrinsic_dim)

    b = sub.add_parser("bench", help="run the benchmark suite (pytest-benchmark) and print markdown tables")
    b.add_argument("-k", default=None, help="pytest -k expression selecting benchmarks")
    b.add_argument("--json", default=None, help="keep pytest-benchmark's JSON here")
    b.add_argument(
        "--suite", default=None, help="the benchmarks/ folder of a checkout (default: ./benchmarks)"
    )
    b.set_defaults(func=cmd_bench)

    r = sub.add_parser(
        "report", help="the seed-000 claims table on mnist1d and digits (≥ 3 seeds, < 30 min on 2 CPUs)"
    )
    r.add_argument("--out", type=Path, default=Path("runs/report"), help="output folder")
    r.add_argument("--quick", action="store_true", help="tiny settings (a smoke test, not a result)")
    r.add_argument("--no-progress", action="store_true", help="hide progress bars")
    r.set_defaults(func=cmd_report)
    return p


def main(argv: list[str] | None = None) -> None:
    """Run a subcommand. A library error (a bad or missing file, a diverged run, a run directory in
    use) is printed as one line and exits with status 1 (``SUBSPACE_PARAM_TRACEBACK=1``: re-raised)."""
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args.func(args)
    except (SubspaceError, ValueError) as e:
        if os.environ.get("SUBSPACE_PARAM_TRACEBACK") == "1" or argv is not None:
            raise
        print(f"subspace-param {args.command}: error: {e}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
