"""Connect two independently trained networks: the straight segment has a loss barrier, a fitted
quadratic Bézier curve (only its bend is trained) goes around it. Plots both paths and the loss
plane through the ends and the bend.

    python examples/connect_two_models.py [--dataset digits] [--epochs 40] [--out runs/connect_example]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
from pathlib import Path

import numpy as np
import torch

import subspace_param as sp
from subspace_param.connectivity import LinearPath, curve_plane, evaluate_path, plot_paths
from subspace_param.data import load_dataset
from subspace_param.models import mlp
from subspace_param.training import TrainConfig, train


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="digits", help="embedded dataset")
    p.add_argument("--epochs", type=int, default=40, help="epochs for each model and for the bend")
    p.add_argument("--grid", type=int, default=15, help="plane grid size")
    p.add_argument("--out", type=Path, default=Path("runs/connect_example"), help="output folder")
    a = p.parse_args(argv)
    data = load_dataset(a.dataset)
    train_loader, train_eval, test_loader = data.loaders(batch_size=64)
    cfg = TrainConfig(epochs=a.epochs, lr=0.05, weight_decay=0.0, progress=False)
    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        models.append(mlp(data.input_shape, data.num_classes, hidden=(64,)))
        train(models[-1], train_loader, cfg)
    curve_model = copy.deepcopy(models[0])
    curve = sp.connect(curve_model, models[1], curve="bezier", seed=0)  # ends frozen, bend on the chord
    train(curve_model, train_loader, dataclasses.replace(cfg, beta=0.0), subspace=curve)
    ts = np.linspace(0, 1, 21)
    segment = evaluate_path(LinearPath(*models), train_eval, test_loader, ts, label="segment", progress=False)
    fitted = evaluate_path(curve, train_eval, test_loader, ts, label="Bézier curve", progress=False)
    plot_paths([segment, fitted], a.out / "segment_vs_curve.png")
    plane = curve_plane(curve, train_eval, test_loader, grid=a.grid, progress=False)
    plane.save(a.out, "plane")
    barriers = {"segment": segment.barrier(), "curve": fitted.barrier()}
    print(
        f"train-loss barrier: straight segment {barriers['segment']:.4f}, "
        f"fitted curve {barriers['curve']:.4f}"
    )
    return barriers


if __name__ == "__main__":
    main()
