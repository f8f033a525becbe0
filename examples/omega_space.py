"""Train an MLP in ω-spaces of dimension 3 … 1000 and in full space (seed 003, Greydanus's
"subspace-nn" notebook), on scikit-learn digits and mnist1d; plot loss and accuracy curves and
report d_int90 (Li et al.).

The notebook's model is 784-200-200-10 with θ = P ω, P = QR([θ_init | random]) ("orthonormal");
here the input size follows the data (64 for digits, 40 for mnist1d). Adam, lr 3e-3, betas
(0.9, 0.99), batch 256, as in the notebook.

    python examples/omega_space.py [--steps 2300] [--method orthonormal] [--dims 3 10 30 100 300 1000]

Each run takes ≈ ``--steps`` optimizer steps (the notebook's 10 MNIST epochs are ≈ 2.3k steps).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path

from subspace_param.data import load_dataset
from subspace_param.experiments.intrinsic_dim import OMEGA_RECIPE, intrinsic_dimension
from subspace_param.io import save_figure
from subspace_param.models import mlp
from subspace_param.projections import available_methods

BATCH = 256


def plot_curves(result, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
    for run in result.runs:
        if run["seed"] != result.runs[0]["seed"]:
            continue
        label = "full" if run["dim"] is None else f"d = {run['dim']}"
        steps = [h["step"] for h in run["history"]]
        ax_loss.plot(steps, [h["loss"] for h in run["history"]], label=label)
        ax_acc.plot(steps, [h["test_acc"] for h in run["history"]], label=label)
    ax_loss.set(xlabel="train step", ylabel="train loss", yscale="log", title=f"{title}: loss")
    ax_acc.set(xlabel="train step", ylabel="test accuracy", title=f"{title}: accuracy")
    ax_acc.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=["digits", "mnist1d"], help="embedded datasets to run")
    p.add_argument(
        "--dims", nargs="+", type=int, default=[3, 10, 30, 100, 300, 1000], help="subspace dimensions"
    )
    p.add_argument("--seeds", nargs="+", type=int, default=[0], help="one run per seed and dimension")
    p.add_argument("--steps", type=int, default=2300, help="optimizer steps per run (rounded up to epochs)")
    p.add_argument("--hidden", nargs="+", type=int, default=[200, 200], help="hidden widths of the MLP")
    p.add_argument("--method", default="orthonormal", choices=available_methods(), help="projection method")
    p.add_argument("--out", type=Path, default=Path("runs/omega_space"), help="output folder")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    a = p.parse_args(argv)
    cfg = dataclasses.replace(OMEGA_RECIPE, progress=not a.no_progress)
    print(
        f"settings: datasets={a.datasets} dims={a.dims} seeds={a.seeds} steps={a.steps} "
        f"hidden={a.hidden} method={a.method} recipe=Adam lr {cfg.lr} betas {cfg.betas} batch 256"
    )
    for name in a.datasets:
        data = load_dataset(name)
        epochs = math.ceil(a.steps / max(1, len(data.y_train) // BATCH))  # the loader drops the last batch
        print(f"{name}: {epochs} epochs of batch {BATCH}")
        result = intrinsic_dimension(
            lambda data=data: mlp(data.input_shape, data.num_classes, hidden=a.hidden),
            data,
            a.dims,
            seeds=a.seeds,
            method=a.method,
            cfg=dataclasses.replace(cfg, epochs=epochs),
            batch_size=BATCH,
        )
        files = result.save(a.out, name=name)
        plot_curves(result, a.out / f"{name}_curves.png", name)
        print(f"\n## {name}\n\n{result.markdown()}\n\nwrote {', '.join(str(f) for f in files.values())}")


if __name__ == "__main__":
    main()
