"""Anokhin & Yarotsky's distribution-based connections (seed 001) on embedded data: the Table 1
analogue (one-hidden-layer nets), the Table 2 analogue (a 3-layer bias-free MLP) and WA(n)
ensembling. Every path is evaluated at 21 points per unit of end_time in one batched pass
(``torch.func``); each cell is the mean ± std over endpoint pairs of the maximum along the path.

    python examples/distribution_connectivity.py [--dataset digits] [--widths 100 500] [--pairs 3]

Writes ``runs/distribution_connectivity/<dataset>/`` ``table1.md``, ``table2.md``, ``wa_ensemble.md``
and ``results.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
from pathlib import Path

import numpy as np
import torch

from subspace_param.connectivity import (
    ButterflyPath,
    ConvButterflyPath,
    NeuronPath,
    SimultaneousPath,
    StepwiseAdjustedPath,
    WeightAdjustedPath,
    evaluate_states_batched,
    wa_ensemble,
)
from subspace_param.data import load_dataset
from subspace_param.io import markdown_table, write_json, write_text
from subspace_param.models import build_model, mlp
from subspace_param.training import TrainConfig, train

TABLE1 = {
    "Linear": lambda a, b, x: NeuronPath(a, b, "lin"),
    "Arc": lambda a, b, x: NeuronPath(a, b, "arc"),
    "Linear + WA": lambda a, b, x: WeightAdjustedPath(a, b, x, "lin"),
    "Arc + WA": lambda a, b, x: WeightAdjustedPath(a, b, x, "arc"),
    "OT": lambda a, b, x: NeuronPath(a, b, "lin", pairing="ot"),
    "OT + WA": lambda a, b, x: WeightAdjustedPath(a, b, x, "lin", pairing="ot"),
}
TABLE2 = {
    "Linear": lambda a, b, x: SimultaneousPath(a, b, "lin"),
    "Arc": lambda a, b, x: SimultaneousPath(a, b, "arc"),
    "Linear + B-fly": lambda a, b, x: ButterflyPath(a, b, x, "lin"),
    "Arc + B-fly": lambda a, b, x: ButterflyPath(a, b, x, "arc"),
    "Linear + WA": lambda a, b, x: StepwiseAdjustedPath(a, b, x, "lin"),
    "Arc + WA": lambda a, b, x: StepwiseAdjustedPath(a, b, x, "arc"),
    "OT + B-fly": lambda a, b, x: ButterflyPath(a, b, x, "lin", pairing="ot"),
    "OT + WA": lambda a, b, x: StepwiseAdjustedPath(a, b, x, "lin", pairing="ot"),
}


VGG = {
    "Linear": lambda a, b, x: SimultaneousPath(a, b, "lin"),
    "Arc": lambda a, b, x: SimultaneousPath(a, b, "arc"),
    "Linear + B-fly": lambda a, b, x: ConvButterflyPath(a, b, x, "lin", pairing="index"),
    "OT + B-fly": lambda a, b, x: ConvButterflyPath(a, b, x, "lin", pairing="ot"),
}


def path_maxima(
    path, template, train_eval, test_loader, per_unit: int = 20, chunk: int = 64
) -> tuple[float, float]:
    ts = np.linspace(0, path.end_time, int(per_unit * path.end_time) + 1)
    states = [path.state_at(t) for t in ts]
    train_loss, _ = evaluate_states_batched(template, states, train_eval, chunk=chunk)
    _, test_err = evaluate_states_batched(template, states, test_loader, chunk=chunk)
    return float(train_loss.max()), float(test_err.max())


def table(
    models, methods, x_train, train_eval, test_loader, label: str, **eval_options
) -> tuple[list[dict], dict]:
    raw: dict[str, list[tuple[float, float]]] = {m: [] for m in methods}
    pairs = list(itertools.pairwise(models))
    for a, b in pairs:
        for name, make in methods.items():
            raw[name].append(path_maxima(make(a, b, x_train), a, train_eval, test_loader, **eval_options))
    rows = []
    for name, vals in raw.items():
        arr = np.array(vals)
        rows.append(
            {
                label: name,
                "max train loss": f"{arr[:, 0].mean():.3f} ± {arr[:, 0].std():.3f}",
                "max test error (%)": f"{100 * arr[:, 1].mean():.1f} ± {100 * arr[:, 1].std():.1f}",
            }
        )
    ends = [
        (
            float(evaluate_states_batched(m, [dict(m.named_parameters())], train_eval)[0][0]),
            float(evaluate_states_batched(m, [dict(m.named_parameters())], test_loader)[1][0]),
        )
        for m in models
    ]
    e = np.array(ends)
    rows.append(
        {
            label: "endpoints",
            "max train loss": f"{e[:, 0].mean():.3f} ± {e[:, 0].std():.3f}",
            "max test error (%)": f"{100 * e[:, 1].mean():.1f} ± {100 * e[:, 1].std():.1f}",
        }
    )
    return rows, {k: v for k, v in raw.items()}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="digits", help="embedded dataset: digits or mnist1d")
    p.add_argument("--widths", nargs="+", type=int, default=[100, 500], help="hidden widths for Table 1")
    p.add_argument("--deep", nargs=2, type=int, default=[512, 256], help="hidden widths of the bias-free MLP")
    p.add_argument("--pairs", type=int, default=3, help="endpoint pairs (consecutive models) per cell")
    p.add_argument("--epochs", type=int, default=60, help="epochs per endpoint")
    p.add_argument(
        "--vgg-epochs",
        type=int,
        default=20,
        help="epochs per VGG-style endpoint, Adam lr 1e-3 (0: skip that table)",
    )
    p.add_argument("--vgg-points", type=int, default=10, help="points per unit of end_time on the VGG paths")
    p.add_argument("--out", type=Path, default=Path("runs/distribution_connectivity"), help="output folder")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    a = p.parse_args(argv)
    data = load_dataset(a.dataset)
    train_loader, train_eval, test_loader = data.loaders(batch_size=128, seed=0)
    x_train = data.x_train.reshape(len(data.x_train), -1)
    cfg = TrainConfig(epochs=a.epochs, lr=0.05, weight_decay=1e-4, progress=not a.no_progress)
    print(
        f"settings: dataset={a.dataset} widths={a.widths} deep={a.deep} pairs={a.pairs} epochs={a.epochs} "
        "(SGD lr 0.05, momentum 0.9, wd 1e-4, cosine, batch 128); 21 points per unit of end_time"
    )

    def endpoints(hidden, bias):
        models = []
        for seed in range(a.pairs + 1):
            torch.manual_seed(seed)
            m = mlp(data.input_shape, data.num_classes, hidden=hidden, bias=bias)
            train(m, train_loader, dataclasses.replace(cfg, desc=f"{hidden} seed {seed}"))
            models.append(m.eval())
        return models

    out = a.out / a.dataset
    results: dict = {"settings": {k: str(v) for k, v in vars(a).items()}}
    text = [f"# Distribution-based connectivity on {a.dataset}\n"]
    for width in a.widths:
        models = endpoints((width,), True)
        rows, raw = table(models, TABLE1, x_train, train_eval, test_loader, f"one hidden layer, {width}")
        results[f"table1_{width}"] = {"rows": rows, "raw": raw}
        text.append(f"## Table 1 analogue: one hidden layer of {width}\n\n{markdown_table(rows)}\n")
    deep = endpoints(tuple(a.deep), False)
    rows, raw = table(deep, TABLE2, x_train, train_eval, test_loader, f"bias-free {a.deep}")
    results["table2"] = {"rows": rows, "raw": raw}
    text.append(
        f"## Table 2 analogue: bias-free MLP {data.input_shape} → {a.deep} → 10\n\n{markdown_table(rows)}\n"
    )
    wa_rows = []
    for layer in (2, 1):
        r = wa_ensemble(deep, x_train, test_loader, layer=layer)
        results[f"wa_{r['n_top_layers']}"] = r
        for n in range(len(deep)):
            wa_rows.append(
                {
                    "WA(n)": f"WA({r['n_top_layers']})",
                    "members": n + 1,
                    "member acc": r["member"][n],
                    "ensemble acc": r["ensemble"][n],
                    "WA member acc": r["wa_member"][n],
                    "WA ensemble acc": r["wa_ensemble"][n],
                }
            )
    text.append(f"## WA(n) ensembling (bias-free MLP, softmax averaging)\n\n{markdown_table(wa_rows)}\n")
    if (
        a.vgg_epochs > 0
    ):  # Table 2's VGG column: a small VGG-style net (no BN) on the digits upscaled to 32×32×3
        images = load_dataset("digits32")
        img_train, img_eval, img_test = images.loaders(batch_size=128, seed=0, eval_batch_size=500)
        vggs = []
        for seed in range(a.pairs + 1):
            torch.manual_seed(seed)
            m = build_model("vgg-small", images.input_shape, images.num_classes)
            train(
                m,
                img_train,
                dataclasses.replace(
                    cfg,
                    epochs=a.vgg_epochs,
                    lr=1e-3,
                    optimizer="adam",
                    weight_decay=0.0,
                    warmup_epochs=0.5,
                    desc=f"vgg seed {seed}",
                ),
            )
            vggs.append(m.eval())
        rows, raw = table(
            vggs,
            VGG,
            images.x_train,
            img_eval,
            img_test,
            "VGG-style (vgg-small)",
            per_unit=a.vgg_points,
            chunk=4,
        )
        results["table2_vgg"] = {"rows": rows, "raw": raw}
        text.append(
            f"## Table 2 analogue, VGG-style conv net (digits at 32×32×3)\n\n{markdown_table(rows)}\n"
        )
    write_text(out / "tables.md", "\n".join(text))
    write_json(out / "results.json", results)
    print("\n".join(text))
    return results


if __name__ == "__main__":
    main()
