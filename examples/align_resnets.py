"""Align two independently trained ResNets and watch the loss barrier between them fall, more so
for wider networks (Ainsworth et al. 2022, Fig. 1 in miniature): the seeds' CIFAR ResNet (one
block per stage) on digits at 32×32, widths 1× and 4×, and torchvision's resnet18 (``--resnet18``).
The straight segment from A to B, from A to B aligned by weight matching (``sp.align``), and the
aligned segment with REPAIR (Jordan et al. 2022); BatchNorm statistics re-estimated at every point.
With ``--rebasin`` (the PyPI package, if installed) its weight matching runs on the same pair:
the time to align, whether B's function is kept, and its barrier.

    python examples/align_resnets.py [--epochs 8] [--widths 1 4] [--resnet18] [--rebasin]
        [--out runs/align_example]

Writes ``barriers.json`` / ``barriers.csv`` (train-loss and test-error barriers per model) and one
path plot per model.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np
import torch

import subspace_param as sp
from subspace_param.connectivity import LinearPath, Repair, evaluate_path, plot_paths
from subspace_param.data import load_dataset
from subspace_param.io import markdown_table, write_csv, write_json
from subspace_param.models import CIFARResNet, build_model
from subspace_param.training import TrainConfig, train


@torch.no_grad()
def _max_output_change(before: torch.nn.Module, after: torch.nn.Module, x: torch.Tensor) -> float:
    return float((before.eval()(x) - after.eval()(x)).abs().max())


def _rebasin(model_a, model_b, x: torch.Tensor) -> tuple[torch.nn.Module, float]:
    from rebasin import PermutationCoordinateDescent

    b = copy.deepcopy(model_b).eval()
    start = time.perf_counter()
    PermutationCoordinateDescent(copy.deepcopy(model_a).eval(), b, x).rebasin()
    return b, time.perf_counter() - start


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=8, help="epochs for each network")
    p.add_argument(
        "--widths", type=int, nargs="*", default=[1, 4], help="width multipliers (1× = 16 channels)"
    )
    p.add_argument("--resnet18", action="store_true", help="also a pair of torchvision resnet18")
    p.add_argument("--rebasin", action="store_true", help="also align with the rebasin package")
    p.add_argument("--points", type=int, default=11, help="points evaluated along each segment")
    p.add_argument("--bn-batches", type=int, default=None, help="batches for BatchNorm re-estimation (all)")
    p.add_argument("--out", type=Path, default=Path("runs/align_example"), help="output folder")
    a = p.parse_args(argv)
    data = load_dataset("digits32")
    train_loader, train_eval, test_loader = data.loaders(batch_size=64)
    cfg = TrainConfig(epochs=a.epochs, lr=0.05, weight_decay=5e-4, progress=False)
    ts = np.linspace(0, 1, a.points)
    shape, classes = data.input_shape, data.num_classes
    builders = [
        (f"cifar_resnet {w}x", lambda w=w: CIFARResNet(classes, in_channels=shape[0], width=16 * w, blocks=1))
        for w in a.widths
    ]
    if a.resnet18:
        builders.append(("resnet18", lambda: build_model("resnet18", shape, classes)))
    rows = []
    for label, build in builders:
        models = []
        for seed in (0, 1):
            torch.manual_seed(seed)
            models.append(build())
            train(models[-1], train_loader, cfg)
        example = next(iter(train_eval))[0][:8]
        start = time.perf_counter()
        aligned = sp.align(models[0], models[1].eval(), example=example)
        seconds = time.perf_counter() - start
        options = {"bn_loader": train_loader, "bn_batches": a.bn_batches, "progress": False}
        segments = {
            "naive": (LinearPath(models[0], models[1]), None),
            "aligned": (LinearPath(models[0], aligned), None),
            "aligned + REPAIR": (
                LinearPath(models[0], aligned),
                Repair(models[0], aligned, train_loader, num_batches=a.bn_batches),
            ),
        }
        row: dict[str, object] = {"model": label, "align_seconds": seconds}
        if a.rebasin:
            theirs, rb_seconds = _rebasin(models[0], models[1], example)
            segments["rebasin"] = (LinearPath(models[0], theirs), None)
            row["rebasin_seconds"] = rb_seconds
            row["rebasin_output_change"] = _max_output_change(models[1], theirs, example)
        row["ours_output_change"] = _max_output_change(models[1], aligned, example)
        evs = [
            evaluate_path(path, train_eval, test_loader, ts, label=name, repair=repair, **options)
            for name, (path, repair) in segments.items()
        ]
        plot_paths(evs, a.out / f"paths_{label.replace(' ', '_')}.png")
        for ev in evs:
            key = ev.label.replace(" + ", "_").replace(" ", "_")
            row[f"{key}_barrier_train_loss"] = ev.barrier("train_loss")
            row[f"{key}_barrier_test_err"] = ev.barrier("test_err")
        rows.append(row)
        barriers = ", ".join(f"{ev.label} {ev.barrier('train_loss'):.4f}" for ev in evs)
        print(f"{label}: train-loss barrier {barriers} ({seconds:.1f} s to align)", flush=True)
    write_json(a.out / "barriers.json", rows)
    write_csv(a.out / "barriers.csv", rows)
    print(markdown_table(rows))
    return rows


if __name__ == "__main__":
    main()
