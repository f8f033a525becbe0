"""Loss planes through three points (Garipov et al.): w0, w1, w2 span the plane with the
Gram–Schmidt basis u = (w2 − w0)/‖w2 − w0‖, v = normalised residual of (w1 − w0) against u; the
grid is p(a, b) = w0 + a·dx·u + b·dy·v for a, b ∈ [−margin, 1 + margin] (dx = ‖w2 − w0‖, dy the
residual's norm), evaluated with BN re-estimated at every point where the model has BN."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path as FsPath
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..batchnorm import has_batchnorm, reestimate_bn
from ..io import atomic_write, save_figure, write_json
from ..subspace import Subspace
from .evaluation import loss_and_error
from .paths import State, SubspacePath


def _flatten(state: State, names: Sequence[str]) -> torch.Tensor:
    return torch.cat([state[n].detach().reshape(-1).double().cpu() for n in names])


@dataclasses.dataclass
class LossPlane:
    """Grid values (``[G, G]`` arrays, index [b, a]) and the plane coordinates of overlaid points."""

    alphas: np.ndarray
    betas: np.ndarray
    values: dict[str, np.ndarray]
    anchors: np.ndarray  # (3, 2): w0, w1, w2 in (a·dx, b·dy) plane coordinates
    curve: np.ndarray | None  # (n, 2) points of a curve, if given
    dx: float
    dy: float

    def save(self, out_dir: str | FsPath, name: str = "plane") -> dict[str, FsPath]:
        out_dir = FsPath(out_dir)
        arrays: dict[str, Any] = {
            "alphas": self.alphas,
            "betas": self.betas,
            "anchors": self.anchors,
            **self.values,
        }
        if self.curve is not None:
            arrays["curve"] = self.curve
        files = {"npz": atomic_write(out_dir / f"{name}.npz", lambda f: np.savez(f, **arrays))}
        files["json"] = write_json(
            out_dir / f"{name}.json", {k: np.asarray(v).tolist() for k, v in arrays.items()}
        )
        files["png"] = self.plot(out_dir / f"{name}.png")
        return files

    def plot(
        self, path: str | FsPath, metric: str = "train_loss", clip: float | None = 5.0, title: str = ""
    ) -> FsPath:
        """Filled contours with log-spaced levels, the curve, its bends and the chord (no LaTeX)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.colors import LogNorm

        z = np.clip(self.values[metric], 1e-8, clip if clip is not None else None)
        lo, hi = max(float(z.min()), 1e-6), float(z.max())
        levels = np.geomspace(lo, hi if hi > lo else lo * 10, 20)
        xx, yy = np.meshgrid(self.alphas * self.dx, self.betas * self.dy)
        fig, ax = plt.subplots(figsize=(5.5, 4.5))
        cs = ax.contourf(xx, yy, z, levels=levels, norm=LogNorm(), cmap="viridis")
        fig.colorbar(cs, ax=ax, label=metric)
        ax.plot(self.anchors[[0, 2], 0], self.anchors[[0, 2], 1], "w--", lw=1, label="chord")
        if self.curve is not None:
            ax.plot(self.curve[:, 0], self.curve[:, 1], "w-", lw=2, label="curve")
        ax.scatter(
            self.anchors[:, 0],
            self.anchors[:, 1],
            c=["w", "r", "w"],
            edgecolors="k",
            zorder=3,
            label="ends and bend",
        )
        ax.set(xlabel="u", ylabel="v", title=title or f"{metric} in the plane")
        ax.legend(fontsize=7, loc="upper right")
        fig.tight_layout()
        out = save_figure(fig, path)
        plt.close(fig)
        return out


def loss_plane(
    template: nn.Module,
    w0: State,
    w1: State,
    w2: State,
    train_loader: Iterable,
    test_loader: Iterable,
    *,
    grid: int = 21,
    margin: float | tuple[float, float, float, float] = 0.2,
    curve: Sequence[State] | None = None,
    bn_loader: Iterable | None = None,
    bn_batches: int | None = None,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> LossPlane:
    """Evaluate train/test loss and error on a ``grid``×``grid`` grid of the plane through w0, w1, w2
    (parameter dicts over the same names, e.g. ``path.state_at(t)``); ``margin`` is one value or
    (left, right, bottom, top). ``curve`` states are projected onto the plane for the plot."""
    names = list(w0)
    if set(w1) != set(names) or set(w2) != set(names):
        raise ValueError("w0, w1 and w2 must hold the same parameter names")
    p0, p1, p2 = (_flatten(w, names) for w in (w0, w1, w2))
    u = p2 - p0
    dx = float(u.norm())
    if dx == 0:
        raise ValueError("w0 and w2 coincide: the plane is undefined")
    u = u / dx
    r = (p1 - p0) - ((p1 - p0) @ u) * u
    dy = float(r.norm())
    if dy < 1e-12 * dx:
        raise ValueError("w1 lies on the line through w0 and w2: the plane is undefined")
    v = r / dy
    ml, mr, mb, mt = (margin,) * 4 if isinstance(margin, (int, float)) else margin
    alphas = np.linspace(-ml, 1 + mr, grid)
    betas = np.linspace(-mb, 1 + mt, grid)
    model = copy.deepcopy(template).to(device)
    params = dict(model.named_parameters())
    shapes = [(n, params[n].shape, params[n].numel()) for n in names]
    bn = has_batchnorm(model)
    values = {m: np.zeros((grid, grid)) for m in ("train_loss", "train_err", "test_loss", "test_err")}
    bar = tqdm(total=grid * grid, desc="loss plane", disable=not progress, leave=False)
    for j, b in enumerate(betas):
        for i, a in enumerate(alphas):
            point = p0 + a * dx * u + b * dy * v
            with torch.no_grad():
                offset = 0
                for n, shape, numel in shapes:
                    params[n].copy_(point[offset : offset + numel].view(shape))
                    offset += numel
            if bn:
                reestimate_bn(model, bn_loader or train_loader, num_batches=bn_batches, device=device)
            for split, loader in (("train", train_loader), ("test", test_loader)):
                loss, err = loss_and_error(model, loader, device)
                values[f"{split}_loss"][j, i] = loss
                values[f"{split}_err"][j, i] = err
            bar.update()
    bar.close()

    def coords(p: torch.Tensor) -> list[float]:
        d = p - p0
        return [float(d @ u), float(d @ v)]

    anchors = np.array([coords(p) for p in (p0, p1, p2)])
    curve_xy = np.array([coords(_flatten(s, names)) for s in curve]) if curve is not None else None
    return LossPlane(alphas, betas, values, anchors, curve_xy, dx, dy)


def curve_plane(
    curve: Subspace,
    train_loader: Iterable,
    test_loader: Iterable,
    *,
    grid: int = 21,
    margin: float | tuple[float, float, float, float] = 0.2,
    points: int = 41,
    progress: bool = True,
    **options: Any,
) -> LossPlane:
    """:func:`loss_plane` through a fitted curve's start, first bend and end, with ``points``
    points of the curve drawn on it (``curve`` from :func:`~subspace_param.connect`)."""
    path = SubspacePath(curve)
    bend = {n: v.detach() for n, v in curve.vertex(1).items()}
    return loss_plane(
        path.template,
        path.state_at(0.0),
        bend,
        path.state_at(1.0),
        train_loader,
        test_loader,
        grid=grid,
        margin=margin,
        curve=[path.state_at(t) for t in np.linspace(0, 1, points)],
        progress=progress,
        **options,
    )
