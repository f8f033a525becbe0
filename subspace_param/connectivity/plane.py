"""Loss planes: a generic grid evaluator p(a, b) = origin + a·U + b·V, and the plane through three
points (Garipov et al.): w0, w1, w2 span it with the Gram–Schmidt basis u = (w2 − w0)/‖w2 − w0‖,
v = normalised residual of (w1 − w0) against u; U = dx·u, V = dy·v (dx = ‖w2 − w0‖, dy the
residual's norm) and a, b ∈ [−margin, 1 + margin]. Every point is evaluated with BN re-estimated
there where the model has BN, otherwise in batched passes (``torch.func.functional_call`` + ``vmap``)."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import warnings
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
from .evaluation import evaluate_states_batched, loss_and_error
from .paths import State, SubspacePath

#: bytes of stacked parameter copies one batched (vmap) pass may hold
BATCHED_BYTES = 2**28
#: grid points per batched pass (16 measured fastest on a digits MLP, 2 CPU cores: 2.6 s at 64)
BATCHED_POINTS = 16


def _flatten(state: State, names: Sequence[str]) -> torch.Tensor:
    return torch.cat([state[n].detach().reshape(-1).double().cpu() for n in names])


@dataclasses.dataclass
class LossPlane:
    """Grid values (``[G, G]`` arrays, index [b, a]) at p(a, b) = origin + a·U + b·V, with the plane
    coordinates (a·dx, b·dy) of overlaid points: ``anchors`` (models the plane goes through) and
    ``curve`` (a curve or a training trajectory). ``info`` holds what the plane was built from and
    the subsample report of ``max_batches``."""

    alphas: np.ndarray
    betas: np.ndarray
    values: dict[str, np.ndarray]
    anchors: np.ndarray | None
    curve: np.ndarray | None
    dx: float
    dy: float
    axis_labels: tuple[str, str] = ("u", "v")
    anchor_labels: tuple[str, ...] = ("w0", "w1", "w2")
    curve_label: str = "curve"
    info: dict[str, Any] = dataclasses.field(default_factory=dict)

    def save(
        self, out_dir: str | FsPath, name: str = "plane", metric: str = "train_loss"
    ) -> dict[str, FsPath]:
        """``name.npz`` and ``name.json`` (grid, values, overlays, info), the contour plot
        ``name.png`` and the 3-D surface ``name_surface.png`` of ``metric``."""
        out_dir = FsPath(out_dir)
        arrays: dict[str, Any] = {"alphas": self.alphas, "betas": self.betas, **self.values}
        if self.anchors is not None:
            arrays["anchors"] = self.anchors
        if self.curve is not None:
            arrays["curve"] = self.curve
        files = {"npz": atomic_write(out_dir / f"{name}.npz", lambda f: np.savez(f, **arrays))}
        files["json"] = write_json(
            out_dir / f"{name}.json",
            {
                **{k: np.asarray(v).tolist() for k, v in arrays.items()},
                "dx": self.dx,
                "dy": self.dy,
                "axis_labels": list(self.axis_labels),
                "anchor_labels": list(self.anchor_labels),
                "info": self.info,
            },
        )
        files["png"] = self.plot(out_dir / f"{name}.png", metric=metric)
        files["surface"] = self.plot_surface(out_dir / f"{name}_surface.png", metric=metric)
        return files

    def _mesh(self) -> tuple[np.ndarray, np.ndarray]:
        return np.meshgrid(self.alphas * self.dx, self.betas * self.dy)

    def plot(
        self, path: str | FsPath, metric: str = "train_loss", clip: float | None = 5.0, title: str = ""
    ) -> FsPath:
        """Filled contours with log-spaced levels and the overlays (no LaTeX)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.colors import LogNorm

        z = np.clip(self.values[metric], 1e-8, clip if clip is not None else None)
        lo, hi = max(float(z.min()), 1e-6), float(z.max())
        levels = np.geomspace(lo, hi if hi > lo else lo * 10, 20)
        xx, yy = self._mesh()
        fig, ax = plt.subplots(figsize=(5.5, 4.5))
        cs = ax.contourf(xx, yy, z, levels=levels, norm=LogNorm(), cmap="viridis")
        fig.colorbar(cs, ax=ax, label=metric, format="%.3g")
        if self.anchors is not None and len(self.anchors) == 3:
            ax.plot(self.anchors[[0, 2], 0], self.anchors[[0, 2], 1], "w--", lw=1, label="chord")
        if self.curve is not None:
            ax.plot(self.curve[:, 0], self.curve[:, 1], "w-", lw=2, marker=".", label=self.curve_label)
        if self.anchors is not None:
            ax.scatter(
                self.anchors[:, 0],
                self.anchors[:, 1],
                c=["w", "r", "w"][: len(self.anchors)] if len(self.anchors) == 3 else "w",
                edgecolors="k",
                zorder=3,
                label=", ".join(self.anchor_labels),
            )
        ax.set(
            xlabel=self.axis_labels[0], ylabel=self.axis_labels[1], title=title or f"{metric} in the plane"
        )
        ax.legend(fontsize=7, loc="upper right")
        fig.tight_layout()
        out = save_figure(fig, path)
        plt.close(fig)
        return out

    def plot_surface(
        self, path: str | FsPath, metric: str = "train_loss", clip: float | None = 5.0
    ) -> FsPath:
        """The 3-D surface of ``metric`` over the plane (values clipped at ``clip``)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        z = np.clip(self.values[metric], None, clip) if clip is not None else self.values[metric]
        xx, yy = self._mesh()
        fig = plt.figure(figsize=(6, 4.8))
        ax = fig.add_subplot(projection="3d")
        ax.plot_surface(xx, yy, z, cmap="viridis", linewidth=0, antialiased=True)
        ax.set(xlabel=self.axis_labels[0], ylabel=self.axis_labels[1], zlabel=metric)
        fig.tight_layout()
        out = save_figure(fig, path)
        plt.close(fig)
        return out


def _fixed_batches(loader: Iterable, max_batches: int | None) -> list[Any]:
    return list(loader if max_batches is None else itertools.islice(loader, max_batches))


def _examples(batches: Sequence[Any]) -> int:
    return sum(len(b[1]) for b in batches)


def evaluate_grid(
    template: nn.Module,
    names: Sequence[str],
    origin: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    alphas: np.ndarray,
    betas: np.ndarray,
    train_loader: Iterable,
    test_loader: Iterable | None = None,
    *,
    bn_loader: Iterable | None = None,
    bn_batches: int | None = None,
    max_batches: int | None = None,
    batched: bool | None = None,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Loss and error at every p(a, b) = origin + a·u + b·v (flat float64 vectors over ``names``,
    the template's parameters in that order); values indexed [b, a].

    ``max_batches``: every point sees the same first ``max_batches`` batches of each loader; the
    report then gives the origin's metrics on that subsample and on the full data and their gap.
    ``batched``: vmap the grid in chunks (default: whenever the model has no BatchNorm; a model
    vmap cannot run falls back to one point at a time, with the reason in the report).
    """
    model = copy.deepcopy(template).to(device)
    params = dict(model.named_parameters())
    missing = [n for n in names if n not in params]
    if missing:
        raise ValueError(f"{type(template).__name__} has no parameters {missing[:5]}")
    shapes = [(n, params[n].shape, params[n].numel()) for n in names]
    if origin.numel() != sum(s[2] for s in shapes):
        raise ValueError(
            f"origin has {origin.numel():,} entries, the {len(names)} tensors {sum(s[2] for s in shapes):,}"
        )
    bn = has_batchnorm(model)
    splits = {"train": _fixed_batches(train_loader, max_batches)}
    if test_loader is not None:
        splits["test"] = _fixed_batches(test_loader, max_batches)
    grid_ab = [(j, i, float(b), float(a)) for j, b in enumerate(betas) for i, a in enumerate(alphas)]
    values = {f"{s}_{m}": np.zeros((len(betas), len(alphas))) for s in splits for m in ("loss", "err")}
    report: dict[str, Any] = {"points": len(grid_ab), "batchnorm_reestimated": bn}

    def state(a: float, b: float) -> State:
        point = origin + a * u + b * v
        out, offset = {}, 0
        for n, shape, numel in shapes:
            out[n] = point[offset : offset + numel].view(shape).to(params[n].dtype)
            offset += numel
        return out

    use_batched = (not bn) if batched is None else batched
    if use_batched and bn:
        raise ValueError(
            f"{type(template).__name__} has BatchNorm: batched=True cannot re-estimate it per point"
        )
    bar = tqdm(total=len(grid_ab), desc="loss plane", disable=not progress, leave=False)
    if use_batched:
        chunk = max(1, min(BATCHED_POINTS, BATCHED_BYTES // max(1, 4 * origin.numel())))
        try:
            for lo in range(0, len(grid_ab), chunk):
                group = grid_ab[lo : lo + chunk]
                states = [state(a, b) for _, _, b, a in group]
                for split, batches in splits.items():
                    loss, err = evaluate_states_batched(model, states, batches, device, chunk=chunk)
                    for (j, i, _, _), lv, ev in zip(group, loss, err):
                        values[f"{split}_loss"][j, i] = lv
                        values[f"{split}_err"][j, i] = ev
                bar.update(len(group))
            report["batched"] = True
        except RuntimeError as e:  # vmap cannot run this model (data-dependent control flow, in-place ops)
            warnings.warn(
                f"{type(template).__name__}: batched evaluation failed ({e}); one point at a time",
                stacklevel=2,
            )
            report["batched"] = False
            report["batched_failure"] = str(e).splitlines()[0][:300]
            bar.reset()
            use_batched = False
    if not use_batched:
        report.setdefault("batched", False)
        for j, i, b, a in grid_ab:
            with torch.no_grad():
                for n, t in state(a, b).items():
                    params[n].copy_(t)
            if bn:
                reestimate_bn(
                    model,
                    bn_loader if bn_loader is not None else splits["train"],
                    num_batches=bn_batches,
                    device=device,
                )
            for split, batches in splits.items():
                loss, err = loss_and_error(model, batches, device)
                values[f"{split}_loss"][j, i] = loss
                values[f"{split}_err"][j, i] = err
            bar.update()
    bar.close()
    if max_batches is not None:
        report["subsample"] = _subsample_report(
            model,
            params,
            state(0.0, 0.0),
            splits,
            train_loader,
            test_loader,
            bn,
            bn_loader,
            bn_batches,
            device,
        )
    return values, report


def _subsample_report(
    model, params, origin_state, splits, train_loader, test_loader, bn, bn_loader, bn_batches, device
):  # type: ignore[no-untyped-def]
    """The origin's metrics on the fixed subsample and on the full data, and their absolute gap."""
    with torch.no_grad():
        for n, t in origin_state.items():
            params[n].copy_(t)
    if bn:
        reestimate_bn(
            model,
            bn_loader if bn_loader is not None else splits["train"],
            num_batches=bn_batches,
            device=device,
        )
    out: dict[str, Any] = {}
    full = {"train": train_loader, "test": test_loader}
    for split, batches in splits.items():
        sub_loss, sub_err = loss_and_error(model, batches, device)
        full_batches = list(full[split])
        full_loss, full_err = loss_and_error(model, full_batches, device)
        out[split] = {
            "examples_used": _examples(batches),
            "examples_total": _examples(full_batches),
            "origin_loss_subsample": sub_loss,
            "origin_loss_full": full_loss,
            "origin_err_subsample": sub_err,
            "origin_err_full": full_err,
            "loss_gap": abs(sub_loss - full_loss),
            "err_gap": abs(sub_err - full_err),
        }
    return out


def three_point_basis(
    p0: torch.Tensor, p1: torch.Tensor, p2: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, float, float]:
    """(u, v, dx, dy): u = (p2 − p0)/dx, v = the normalised residual of p1 − p0 against u."""
    u = p2 - p0
    dx = float(u.norm())
    if dx == 0:
        raise ValueError("w0 and w2 coincide: the plane is undefined")
    u = u / dx
    r = (p1 - p0) - ((p1 - p0) @ u) * u
    dy = float(r.norm())
    if dy < 1e-12 * dx:
        raise ValueError("w1 lies on the line through w0 and w2: the plane is undefined")
    return u, r / dy, dx, dy


def loss_plane(
    template: nn.Module,
    w0: State,
    w1: State,
    w2: State,
    train_loader: Iterable,
    test_loader: Iterable | None,
    *,
    grid: int = 21,
    margin: float | tuple[float, float, float, float] = 0.2,
    curve: Sequence[State] | None = None,
    bn_loader: Iterable | None = None,
    bn_batches: int | None = None,
    max_batches: int | None = None,
    batched: bool | None = None,
    device: torch.device | str = "cpu",
    progress: bool = True,
    labels: tuple[str, str, str] = ("w0", "w1", "w2"),
) -> LossPlane:
    """Evaluate train/test loss and error on a ``grid``×``grid`` grid of the plane through w0, w1, w2
    (parameter dicts over the same names, e.g. ``path.state_at(t)``); ``margin`` is one value or
    (left, right, bottom, top). ``curve`` states are projected onto the plane for the plot."""
    names = list(w0)
    if set(w1) != set(names) or set(w2) != set(names):
        raise ValueError("w0, w1 and w2 must hold the same parameter names")
    p0, p1, p2 = (_flatten(w, names) for w in (w0, w1, w2))
    u, v, dx, dy = three_point_basis(p0, p1, p2)
    ml, mr, mb, mt = (margin,) * 4 if isinstance(margin, (int, float)) else margin
    alphas = np.linspace(-ml, 1 + mr, grid)
    betas = np.linspace(-mb, 1 + mt, grid)
    values, report = evaluate_grid(
        template,
        names,
        p0,
        dx * u,
        dy * v,
        alphas,
        betas,
        train_loader,
        test_loader,
        bn_loader=bn_loader,
        bn_batches=bn_batches,
        max_batches=max_batches,
        batched=batched,
        device=device,
        progress=progress,
    )

    def coords(p: torch.Tensor) -> list[float]:
        d = p - p0
        return [float(d @ u), float(d @ v)]

    anchors = np.array([coords(p) for p in (p0, p1, p2)])
    curve_xy = np.array([coords(_flatten(s, names)) for s in curve]) if curve is not None else None
    return LossPlane(alphas, betas, values, anchors, curve_xy, dx, dy, anchor_labels=labels, info=report)


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
