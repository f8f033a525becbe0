"""The mode-connectivity lab (seed 004) end to end on embedded data.

For each network variant (default: one hidden layer of 64 ReLU units; deeper: 3 hidden layers;
wider: 256 units; sigmoid activations):

1. train two minima from two random initialisations (to 100% train accuracy where the data allow);
2. evaluate the four straight segments of the lab, t ∈ [0, 1.5]: minimum ↔ minimum, minimum ↔ its
   own initialisation, minimum ↔ another random point, random ↔ random;
3. fit a one-bend chain between the minima (``sp.connect``; t ~ U[0, 1] per batch) and compare its
   barrier with the straight segment's;
4. draw the train loss on the plane through the two minima and the bend, with the chain and chord.

    python examples/mode_connectivity_lab.py [--dataset digits] [--variants default deeper wider sigmoid]

Writes ``runs/lab/<dataset>/``: ``summary.md`` (the table), ``summary.json``, per-variant
``segments.png``, ``chain_vs_segment.png`` and the plane (``plane.png``, ``plane.npz``).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
from pathlib import Path

import numpy as np
import torch
from torch import nn

import subspace_param as sp
from subspace_param.connectivity import LinearPath, SubspacePath, curve_plane, evaluate_path, plot_paths
from subspace_param.data import load_dataset
from subspace_param.io import markdown_table, write_json, write_text
from subspace_param.models import mlp
from subspace_param.training import TrainConfig, train

VARIANTS = {
    "default": {"hidden": (64,), "activation": nn.ReLU},
    "deeper": {"hidden": (64, 64, 64), "activation": nn.ReLU},
    "wider": {"hidden": (256,), "activation": nn.ReLU},
    "sigmoid": {"hidden": (64,), "activation": nn.Sigmoid},
}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="digits", help="embedded dataset: digits or mnist1d")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS), help="networks")
    p.add_argument("--epochs", type=int, default=100, help="epochs to train each minimum")
    p.add_argument("--curve-epochs", type=int, default=60, help="epochs to fit the chain's bend")
    p.add_argument("--points", type=int, default=31, help="points on each segment (t up to 1.5)")
    p.add_argument("--grid", type=int, default=21, help="plane grid size (G × G)")
    p.add_argument("--out", type=Path, default=Path("runs/lab"), help="output folder")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    a = p.parse_args(argv)
    progress = not a.no_progress
    data = load_dataset(a.dataset)
    train_loader, train_eval, test_loader = data.loaders(batch_size=64, seed=0)
    out = a.out / a.dataset
    cfg = TrainConfig(epochs=a.epochs, lr=0.05, weight_decay=0.0, progress=progress)
    print(
        f"settings: dataset={a.dataset} variants={a.variants} epochs={a.epochs} "
        f"curve_epochs={a.curve_epochs} "
        f"SGD lr 0.05 momentum 0.9 cosine, batch 64, points={a.points}, grid={a.grid}"
    )
    rows, details = [], {}
    for name in a.variants:
        spec = VARIANTS[name]
        build = lambda spec=spec: mlp(data.input_shape, data.num_classes, **spec)  # noqa: E731
        inits, minima = [], []
        for seed in (0, 1):
            torch.manual_seed(seed)
            model = build()
            inits.append(copy.deepcopy(model))
            hist = train(model, train_loader, dataclasses.replace(cfg, desc=f"{name} minimum {seed}"))
            minima.append(model)
            print(f"{name}: minimum {seed} train accuracy {hist[-1]['train_acc']:.4f}")
        torch.manual_seed(2)
        random_point = build()
        ts = np.linspace(0, 1.5, a.points)
        scenarios = {
            "minimum ↔ minimum": LinearPath(minima[0], minima[1]),
            "minimum ↔ its init": LinearPath(minima[0], inits[0]),
            "minimum ↔ random": LinearPath(minima[0], random_point),
            "random ↔ random": LinearPath(inits[0], inits[1]),
        }
        segs = {
            k: evaluate_path(pth, train_eval, test_loader, ts, label=k, progress=progress)
            for k, pth in scenarios.items()
        }
        plot_paths(list(segs.values()), out / name / "segments.png", title=f"{name}: straight segments")

        model = copy.deepcopy(minima[0])
        chain = sp.connect(model, minima[1], curve="chain", bends=1, seed=0)
        curve_cfg = dataclasses.replace(cfg, epochs=a.curve_epochs, beta=0.0, desc=f"{name} chain")
        train(model, train_loader, curve_cfg, subspace=chain)
        t01 = np.linspace(0, 1, 21)
        seg01 = evaluate_path(
            scenarios["minimum ↔ minimum"], train_eval, test_loader, t01, label="segment", progress=progress
        )
        fitted = evaluate_path(
            SubspacePath(chain), train_eval, test_loader, t01, label="1-bend chain", progress=progress
        )
        plot_paths(
            [seg01, fitted], out / name / "chain_vs_segment.png", title=f"{name}: segment vs fitted chain"
        )
        for ev in (seg01, fitted):
            ev.save(out / name, ev.label.replace(" ", "_"))
        row = {
            "variant": name,
            "train acc A/B": "{:.4f} / {:.4f}".format(*(1 - seg01.values["train_err"][[0, -1]])),
            "segment barrier (train loss)": seg01.barrier("train_loss"),
            "chain barrier (train loss)": fitted.barrier("train_loss"),
            "segment max test err": float(seg01.values["test_err"].max()),
            "chain max test err": float(fitted.values["test_err"].max()),
            "min↔init max train loss": float(segs["minimum ↔ its init"].values["train_loss"][ts <= 1].max()),
            "rand↔rand max train loss": float(segs["random ↔ random"].values["train_loss"].max()),
        }
        rows.append(row)
        details[name] = {
            "segments": {k: v.summary() for k, v in segs.items()},
            "segment": seg01.summary(),
            "chain": fitted.summary(),
        }
        if name == a.variants[0]:
            plane = curve_plane(chain, train_eval, test_loader, grid=a.grid, progress=progress)
            plane.save(out / name, "plane")
    table = markdown_table(rows)
    text = f"# Mode-connectivity lab on {a.dataset}\n\n{table}\n"
    write_text(out / "summary.md", text)
    write_json(
        out / "summary.json", {"rows": rows, "details": details, "settings": vars(a) | {"out": str(a.out)}}
    )
    print(text)
    return {"rows": rows, "details": details}


if __name__ == "__main__":
    main()
