"""Evaluate a path (or a one-parameter subspace) at many t: train/test loss and error, with
BatchNorm re-estimated at every point when the model has BN, the path length and the summary
(start, end, min, max, mean, length-weighted integral, barrier height). Results are saved as
JSON, CSV and npz and plotted. BN-free models can be evaluated at many points in one batched
pass (``torch.func.functional_call`` + ``vmap``)."""

from __future__ import annotations

import copy
import csv
import dataclasses
import io
from collections.abc import Iterable, Sequence
from pathlib import Path as FsPath
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..batchnorm import has_batchnorm, reestimate_bn
from ..io import atomic_write, save_figure, write_json, write_text
from ..subspace import Subspace
from .paths import Path, State, SubspacePath
from .repair import Repair

METRICS = ("train_loss", "train_err", "test_loss", "test_err")


def _upcast(logits: torch.Tensor) -> torch.Tensor:
    return logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits


@torch.no_grad()
def loss_and_error(
    model: nn.Module, loader: Iterable, device: torch.device | str = "cpu"
) -> tuple[float, float]:
    """Mean cross-entropy and error rate of ``model`` (eval mode) over ``loader``."""
    model.eval()
    total, loss, wrong = 0, 0.0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        logits = model(x)
        loss += float(F.cross_entropy(_upcast(logits), y, reduction="sum"))
        wrong += int((logits.argmax(1) != y).sum())
        total += len(y)
    return loss / total, wrong / total


@dataclasses.dataclass
class PathEvaluation:
    """Per-t metrics of a path: ``ts``, ``dl`` (distance from the previous point) and :data:`METRICS`."""

    ts: np.ndarray
    dl: np.ndarray
    values: dict[str, np.ndarray]
    label: str = "path"

    @property
    def length(self) -> float:
        return float(self.dl.sum())

    def stats(self, metric: str) -> dict[str, float]:
        """start, end, min, max, mean and int (the dl-weighted trapezoid average over the path)."""
        v = self.values[metric]
        if self.length > 0:
            integral = float(np.sum(self.dl[1:] * (v[1:] + v[:-1]) / 2) / self.length)
        else:
            integral = float(v.mean())
        return {
            "start": float(v[0]),
            "end": float(v[-1]),
            "min": float(v.min()),
            "max": float(v.max()),
            "mean": float(v.mean()),
            "int": integral,
        }

    def barrier(self, metric: str = "train_loss") -> float:
        """max over the path minus the mean of the two end values."""
        v = self.values[metric]
        return float(v.max() - (v[0] + v[-1]) / 2)

    def summary(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "length": self.length,
            "barrier_train_loss": self.barrier("train_loss"),
            "barrier_test_err": self.barrier("test_err"),
            **{m: self.stats(m) for m in METRICS if m in self.values},
        }

    def rows(self) -> list[dict[str, float]]:
        return [
            {"t": float(t), "dl": float(d), **{m: float(self.values[m][i]) for m in self.values}}
            for i, (t, d) in enumerate(zip(self.ts, self.dl))
        ]

    def save(self, out_dir: str | FsPath, name: str = "path") -> dict[str, FsPath]:
        """``name.json`` (summary + rows), ``name.csv``, ``name.npz`` and ``name.png``, atomically."""
        out_dir = FsPath(out_dir)
        files = {
            "json": write_json(out_dir / f"{name}.json", {"summary": self.summary(), "points": self.rows()})
        }
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(self.rows()[0]))
        writer.writeheader()
        writer.writerows(self.rows())
        files["csv"] = write_text(out_dir / f"{name}.csv", buf.getvalue())
        arrays = {"ts": self.ts, "dl": self.dl, **self.values}
        files["npz"] = atomic_write(out_dir / f"{name}.npz", lambda f: np.savez(f, **arrays))
        files["png"] = plot_paths([self], out_dir / f"{name}.png")
        return files


def plot_paths(evaluations: Sequence[PathEvaluation], path: str | FsPath, title: str = "") -> FsPath:
    """Train loss and test error along each path (t normalised by each path's end_time)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_l, ax_e) = plt.subplots(1, 2, figsize=(10, 3.6))
    for ev in evaluations:
        ax_l.plot(ev.ts, ev.values["train_loss"], marker=".", label=ev.label)
        ax_e.plot(ev.ts, 100 * ev.values["test_err"], marker=".", label=ev.label)
    ax_l.set(xlabel="t", ylabel="train loss", yscale="log", title=title or "train loss along the path")
    ax_e.set(xlabel="t", ylabel="test error (%)", title="test error along the path")
    ax_e.legend(fontsize=8)
    fig.tight_layout()
    out = save_figure(fig, path)
    plt.close(fig)
    return out


def default_ts(end_time: float) -> np.ndarray:
    """21 points per unit of end_time up to 2, 31 for 3, 61 beyond (the references' choices)."""
    n = 21 if end_time <= 2 else 31 if end_time <= 3 else 61
    return np.linspace(0.0, end_time, n)


def evaluate_path(
    path: Path | Subspace,
    train_loader: Iterable,
    test_loader: Iterable,
    ts: Sequence[float] | None = None,
    *,
    bn_loader: Iterable | None = None,
    bn_batches: int | None = None,
    device: torch.device | str = "cpu",
    label: str = "path",
    progress: bool = True,
    repair: Repair | None = None,
) -> PathEvaluation:
    """Train and test loss/error at each t (default :func:`default_ts`). Models with BatchNorm get
    their running statistics re-estimated at every t on ``bn_loader`` (default: ``train_loader``).
    ``repair`` (a :class:`~subspace_param.connectivity.Repair` of the path's ends): every point is
    REPAIRed first (channel statistics reset to the interpolation of the ends'; BN re-estimated on
    the repair's batches)."""
    if isinstance(path, Subspace):
        path = SubspacePath(path)
    ts = default_ts(path.end_time) if ts is None else np.asarray(ts, dtype=np.float64)
    model = copy.deepcopy(path.template).to(device)
    bn = has_batchnorm(model)
    values: dict[str, list[float]] = {m: [] for m in METRICS}
    dl, prev = [], None
    for t in tqdm(ts, desc=f"evaluate {label}", disable=not progress, leave=False):
        path.load_into(model, float(t))
        vec = path.vector_at(float(t))
        dl.append(0.0 if prev is None else float((vec - prev).norm()))
        prev = vec
        if repair is not None:
            repair.apply(model, float(t))
        elif bn:
            reestimate_bn(
                model,
                bn_loader if bn_loader is not None else train_loader,
                num_batches=bn_batches,
                device=device,
            )
        for split, loader in (("train", train_loader), ("test", test_loader)):
            loss, err = loss_and_error(model, loader, device)
            values[f"{split}_loss"].append(loss)
            values[f"{split}_err"].append(err)
    return PathEvaluation(
        np.asarray(ts), np.asarray(dl), {k: np.asarray(v) for k, v in values.items()}, label
    )


@torch.no_grad()
def evaluate_states_batched(
    template: nn.Module,
    states: Sequence[State],
    loader: Iterable,
    device: torch.device | str = "cpu",
    chunk: int = 64,
) -> tuple[np.ndarray, np.ndarray]:
    """Loss and error of many parameter states of one BN-free model in batched passes:
    ``torch.func.functional_call`` vmapped over the stacked states (``chunk`` states at a time).
    Gives the numbers of evaluating each state in turn."""
    from torch.func import functional_call, vmap

    model = copy.deepcopy(template).to(device).eval()
    if has_batchnorm(model):
        raise ValueError(
            f"{type(model).__name__} has BatchNorm: its statistics must be re-estimated per point, "
            "which a batched pass cannot do; use evaluate_path"
        )
    base = {n: p.detach() for n, p in model.named_parameters()}
    buffers = {n: b for n, b in model.named_buffers()}
    names = list(states[0])
    losses = np.zeros(len(states))
    wrong = np.zeros(len(states))
    total = 0
    batches = [(x.to(device), y.to(device)) for x, y in loader]
    for lo in range(0, len(states), chunk):
        group = states[lo : lo + chunk]
        stacked = {n: torch.stack([s[n].to(device) for s in group]) for n in names}
        fixed = {n: v for n, v in base.items() if n not in stacked}

        def run(params: dict[str, torch.Tensor], x: torch.Tensor, fixed=fixed) -> torch.Tensor:
            return functional_call(model, {**fixed, **params, **buffers}, (x,))

        batched = vmap(run, in_dims=(0, None))
        for x, y in batches:
            logits = batched(stacked, x)  # [S, B, C]
            ce = F.cross_entropy(_upcast(logits.flatten(0, 1)), y.repeat(len(group)), reduction="none")
            losses[lo : lo + len(group)] += ce.view(len(group), -1).sum(1).double().cpu().numpy()
            wrong[lo : lo + len(group)] += (logits.argmax(-1) != y).sum(1).double().cpu().numpy()
            if lo == 0:
                total += len(y)
    return losses / total, wrong / total
