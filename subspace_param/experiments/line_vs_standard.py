"""The main job: a line of networks vs a standard model, same architecture and epochs.

Trains a standard model and a line on an embedded dataset, then evaluates the line at
α ∈ {0, 0.25, 0.5, 0.75, 1} (BatchNorm re-estimated at each point over the training set),
the ensemble of the two endpoints (sum of logits) and the standard model (BatchNorm
re-estimated the same way, so every row is treated alike). Writes ``results.json``,
``results.md`` and ``accuracy_vs_alpha.png`` to ``out_dir``.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Any

import torch

from .. import api
from ..batchnorm import reestimate_bn
from ..data import load_dataset
from ..io import markdown_table, save_figure, write_json, write_text
from ..models import conv_net
from ..training import TrainConfig, metrics, predict, train

ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)


@dataclasses.dataclass
class LineVsStandardConfig:
    dataset: str = "mnist1d"
    epochs: int = 60
    batch_size: int = 128
    lr: float = 0.05
    beta: float = 1.0
    width: int = 32
    seed: int = 0
    threads: int | None = None
    out_dir: str = "runs/line_vs_standard"
    progress: bool = True


def run(cfg: LineVsStandardConfig) -> dict[str, Any]:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    start = time.perf_counter()
    data = load_dataset(cfg.dataset)
    train_loader, bn_loader, test_loader = data.loaders(cfg.batch_size, seed=cfg.seed)
    tcfg = TrainConfig(epochs=cfg.epochs, lr=cfg.lr, beta=cfg.beta, progress=cfg.progress)

    torch.manual_seed(cfg.seed)
    standard = conv_net(data.input_shape, data.num_classes, cfg.width)
    hist_std = train(standard, train_loader, dataclasses.replace(tcfg, desc="standard"))

    torch.manual_seed(cfg.seed)
    model = conv_net(data.input_shape, data.num_classes, cfg.width)
    line = api.line(model, seed=cfg.seed)
    hist_line = train(model, train_loader, dataclasses.replace(tcfg, desc="line"), subspace=line)

    rows: list[dict[str, Any]] = []
    logits_at: dict[float, torch.Tensor] = {}
    labels = data.y_test
    for a in ALPHAS:
        line.update_bn(bn_loader, a)
        with line.at(a):
            logits_at[a], labels = predict(model, test_loader)
        rows.append({"model": f"line α={a:g}", **metrics(logits_at[a], labels)})
    rows.append(
        {"model": "line endpoint ensemble (α=0 + α=1)", **metrics(logits_at[0.0] + logits_at[1.0], labels)}
    )
    reestimate_bn(standard, bn_loader)
    std_logits, _ = predict(standard, test_loader)
    rows.append({"model": "standard", **metrics(std_logits, labels)})
    elapsed = time.perf_counter() - start

    out = Path(cfg.out_dir)
    result = {
        "config": dataclasses.asdict(cfg),
        "results": rows,
        "history": {"standard": hist_std, "line": hist_line},
        "seconds": elapsed,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    write_json(out / "results.json", result)
    table = markdown_table(rows)
    write_text(out / "results.md", f"# Line vs standard on {cfg.dataset} ({cfg.epochs} epochs)\n\n{table}\n")
    _plot(rows, out / "accuracy_vs_alpha.png", cfg)
    result["table"] = table
    return result


def _plot(rows: list[dict[str, Any]], path: Path, cfg: LineVsStandardConfig) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    accs = [r["acc"] for r in rows[: len(ALPHAS)]]
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.plot(ALPHAS, accs, "o-", label="line at α")
    ax.axhline(rows[-2]["acc"], color="C2", ls="--", label="endpoint ensemble")
    ax.axhline(rows[-1]["acc"], color="C3", ls=":", label="standard model")
    ax.set_xlabel("α")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"{cfg.dataset}: line vs standard ({cfg.epochs} epochs)")
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    d = LineVsStandardConfig()
    p.add_argument("--dataset", default=d.dataset, choices=["mnist1d", "digits"], help="embedded dataset")
    p.add_argument("--epochs", type=int, default=d.epochs, help="epochs for both models")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="training batch size")
    p.add_argument("--lr", type=float, default=d.lr, help="peak SGD learning rate (cosine schedule)")
    p.add_argument("--beta", type=float, default=d.beta, help="weight of the cos² regulariser")
    p.add_argument("--width", type=int, default=d.width, help="channels of the first conv layer")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed")
    p.add_argument("--threads", type=int, default=d.threads, help="torch CPU threads (default: torch's)")
    p.add_argument("--out-dir", default=d.out_dir, help="where results.json/.md and the plot go")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    a = p.parse_args(argv)
    cfg = LineVsStandardConfig(
        dataset=a.dataset,
        epochs=a.epochs,
        batch_size=a.batch_size,
        lr=a.lr,
        beta=a.beta,
        width=a.width,
        seed=a.seed,
        threads=a.threads,
        out_dir=a.out_dir,
        progress=not a.no_progress,
    )
    result = run(cfg)
    print(f"\nLine vs standard on {cfg.dataset}, {cfg.epochs} epochs, {result['seconds']:.0f} s\n")
    print(result["table"])
    print(f"\nsaved to {cfg.out_dir}/results.json, results.md, accuracy_vs_alpha.png")
    return result


if __name__ == "__main__":
    main()
