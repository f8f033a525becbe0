"""Align two independently trained ResNets and watch the loss barrier between them fall, more so
for wider networks (Ainsworth et al. 2022, Fig. 1 in miniature): the seeds' CIFAR ResNet (one
block per stage) on digits at 32×32, widths 1× and 4×; the straight segment from A to B, then from
A to B aligned by weight matching (``sp.align``); BatchNorm statistics re-estimated at every point.

    python examples/align_resnets.py [--epochs 8] [--widths 1 4] [--out runs/align_example]

Writes ``barriers.json`` / ``barriers.csv`` (train-loss barrier and test-error barrier, naive vs
aligned, per width) and one path plot per width.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

import subspace_param as sp
from subspace_param.connectivity import LinearPath, evaluate_path, plot_paths
from subspace_param.data import load_dataset
from subspace_param.io import write_csv, write_json
from subspace_param.models import CIFARResNet
from subspace_param.training import TrainConfig, train


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=8, help="epochs for each network")
    p.add_argument(
        "--widths", type=int, nargs="+", default=[1, 4], help="width multipliers (1× = 16 channels)"
    )
    p.add_argument("--points", type=int, default=11, help="points evaluated along each segment")
    p.add_argument("--bn-batches", type=int, default=None, help="batches for BatchNorm re-estimation (all)")
    p.add_argument("--out", type=Path, default=Path("runs/align_example"), help="output folder")
    a = p.parse_args(argv)
    data = load_dataset("digits32")
    train_loader, train_eval, test_loader = data.loaders(batch_size=64)
    cfg = TrainConfig(epochs=a.epochs, lr=0.05, weight_decay=5e-4, progress=False)
    ts = np.linspace(0, 1, a.points)
    rows = []
    for width in a.widths:
        models = []
        for seed in (0, 1):
            torch.manual_seed(seed)
            models.append(
                CIFARResNet(data.num_classes, in_channels=data.input_shape[0], width=16 * width, blocks=1)
            )
            train(models[-1], train_loader, cfg)
        example = next(iter(train_eval))[0][:8]
        start = time.perf_counter()
        aligned = sp.align(models[0], models[1].eval(), example=example)
        seconds = time.perf_counter() - start
        options = {"bn_loader": train_loader, "bn_batches": a.bn_batches, "progress": False}
        naive = evaluate_path(
            LinearPath(models[0], models[1]), train_eval, test_loader, ts, label="naive", **options
        )
        matched = evaluate_path(
            LinearPath(models[0], aligned), train_eval, test_loader, ts, label="aligned", **options
        )
        plot_paths([naive, matched], a.out / f"paths_width{width}.png")
        rows.append({
            "width": width,
            "naive_barrier_train_loss": naive.barrier("train_loss"),
            "aligned_barrier_train_loss": matched.barrier("train_loss"),
            "naive_barrier_test_err": naive.barrier("test_err"),
            "aligned_barrier_test_err": matched.barrier("test_err"),
            "align_seconds": seconds,
        })  # fmt: skip
        print(f"width {width}×: train-loss barrier {rows[-1]['naive_barrier_train_loss']:.4f} naive, "
              f"{rows[-1]['aligned_barrier_train_loss']:.4f} aligned ({seconds:.1f} s to align)")  # fmt: skip
    write_json(a.out / "barriers.json", rows)
    write_csv(a.out / "barriers.csv", rows)
    return rows


if __name__ == "__main__":
    main()
