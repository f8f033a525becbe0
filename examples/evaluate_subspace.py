"""Evaluate a trained subspace: accuracy, NLL and ECE along a line, at its midpoint and for the
endpoint ensemble (BatchNorm re-estimated at every point). Trains a small line on mnist1d first
if the run folder holds none.

    python examples/evaluate_subspace.py [--run runs/example_line] [--epochs 20]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from subspace_param.experiments.runs import RunConfig, evaluate_points, load_run, train_run
from subspace_param.io import markdown_table


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--run", type=Path, default=Path("runs/example_line"), help="run folder (trained if empty)"
    )
    p.add_argument(
        "--dataset", default="mnist1d", help="dataset of the line trained when the folder is empty"
    )
    p.add_argument(
        "--epochs", type=int, default=20, help="epochs of the line trained when the folder is empty"
    )
    a = p.parse_args(argv)
    if not (a.run / "model.pt").exists():
        train_run(RunConfig(dataset=a.dataset, model="cnn-small", kind="line", epochs=a.epochs), a.run)
    cfg, model, line, data = load_run(a.run)
    points = {f"α={t}": t for t in (0.0, 0.25, 0.5, 0.75, 1.0)}
    results = evaluate_points(model, data, line, points, {"endpoint ensemble": ["α=0.0", "α=1.0"]})
    rows = [{"point": k, **v} for k, v in results.items()]
    print(f"{cfg.kind} on {cfg.dataset}, {cfg.epochs} epochs\n\n{markdown_table(rows)}")
    return rows


if __name__ == "__main__":
    main()
