"""A plane of parameter space and its evaluation on a grid.

Two ways to build one (:func:`plane`):

* a centre θ_c and two directions δ, η: p(a, b) = θ_c + a·δ + b·η, a, b ∈ [−span, span]
  (Li et al. 2018; δ, η from :func:`random_direction`, :func:`pca_directions` or
  :func:`hessian_directions`);
* three models w0, w1, w2: the Gram–Schmidt plane of Garipov et al., p(a, b) = w0 + a·(w2 − w0) +
  b·r with r the part of w1 − w0 orthogonal to w2 − w0, a, b ∈ [−margin, 1 + margin].

:func:`evaluate_plane` runs the grid evaluator of :func:`~subspace_param.connectivity.loss_plane`
(BN re-estimated per point, vmap batches when there is no BN, ``max_batches`` subsampling with the
gap to the full data reported).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..connectivity.plane import LossPlane, evaluate_grid, three_point_basis
from .base import Directions, State, flatten, load_state


@dataclasses.dataclass
class Plane:
    """origin + a·u + b·v over ``names`` (flat float64 vectors); ``kind`` is ``directions`` or
    ``models``; ``anchors`` are the (a, b) of the models it goes through; ``dx``, ``dy`` turn (a, b)
    into plot units (the three-model plane plots distances, a direction plane coefficients)."""

    names: list[str]
    origin: torch.Tensor
    u: torch.Tensor
    v: torch.Tensor
    kind: str
    dx: float = 1.0
    dy: float = 1.0
    anchors: np.ndarray | None = None
    overlay: np.ndarray | None = None
    info: dict[str, Any] = dataclasses.field(default_factory=dict)

    def coordinates(self, state: State) -> tuple[float, float]:
        """(a·dx, b·dy) of a parameter dict's orthogonal projection onto the plane."""
        p = flatten(state, self.names) - self.origin
        basis = torch.stack([self.u, self.v], 1)
        ab = torch.linalg.lstsq(basis, p.unsqueeze(1)).solution.squeeze(1)
        return float(ab[0]) * self.dx, float(ab[1]) * self.dy


def plane(
    models: Sequence[nn.Module | State] | None = None,
    *,
    center: nn.Module | State | None = None,
    directions: Directions | Sequence[State] | None = None,
) -> Plane:
    """The plane through three ``models`` (w0, w1, w2), or through ``center`` along two ``directions``."""
    if (models is None) == (center is None):
        raise ValueError("plane: give either three models, or center= and directions=")
    if models is not None:
        if len(models) != 3:
            raise ValueError(f"plane: a plane goes through exactly three models, got {len(models)}")
        first = load_state(models[0])
        names = list(first)
        p0, p1, p2 = (flatten(load_state(m, names), names) for m in models)
        u, v, dx, dy = three_point_basis(p0, p1, p2)
        anchors = np.array([[0.0, 0.0], [float((p1 - p0) @ u), float((p1 - p0) @ v)], [dx, 0.0]])
        return Plane(names, p0, dx * u, dy * v, "models", dx, dy, anchors, info={"dx": dx, "dy": dy})
    if directions is None or len(directions) < 2:
        raise ValueError("plane: center= needs two directions")
    centre = load_state(center)
    names = list(centre)
    dirs = list(directions.directions if isinstance(directions, Directions) else directions)[:2]
    for i, d in enumerate(dirs):
        missing = [n for n in names if n not in d]
        if missing:
            raise ValueError(f"plane: direction {i} has no tensors {missing[:5]}")
    u, v = (flatten(d, names) for d in dirs)
    cos = float(u @ v / (u.norm() * v.norm()).clamp_min(1e-300))
    info: dict[str, Any] = {"norm_u": float(u.norm()), "norm_v": float(v.norm()), "cos_uv": cos}
    overlay = None
    if isinstance(directions, Directions):
        info["directions"] = {k: val for k, val in directions.summary().items() if k != "trajectory"}
        if "trajectory" in directions.info:
            overlay = np.asarray(directions.info["trajectory"])[:, :2]
    return Plane(
        names,
        flatten(centre, names),
        u,
        v,
        "directions",
        anchors=np.zeros((1, 2)),
        overlay=overlay,
        info=info,
    )


def evaluate_plane(
    the_plane: Plane,
    template: nn.Module,
    train_loader: Iterable,
    test_loader: Iterable | None = None,
    *,
    grid: int = 21,
    span: float | tuple[float, float, float, float] | None = None,
    bn_loader: Iterable | None = None,
    bn_batches: int | None = None,
    max_batches: int | None = None,
    batched: bool | None = None,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> LossPlane:
    """Loss and error on a ``grid``×``grid`` grid of ``the_plane``. ``span``: the (a, b) range —
    one value s for [−s, s]² on a direction plane (default 1) or the margin m for
    [−m, 1 + m]² on a three-model plane (default 0.2), or (a_min, a_max, b_min, b_max)."""
    if grid < 2:
        raise ValueError(f"grid must be ≥ 2, got {grid}")
    if isinstance(span, (tuple, list)):
        a0, a1, b0, b1 = (float(s) for s in span)
    elif the_plane.kind == "models":
        m = 0.2 if span is None else float(span)
        a0, a1, b0, b1 = -m, 1 + m, -m, 1 + m
    else:
        s = 1.0 if span is None else float(span)
        a0, a1, b0, b1 = -s, s, -s, s
    alphas, betas = np.linspace(a0, a1, grid), np.linspace(b0, b1, grid)
    values, report = evaluate_grid(
        template,
        the_plane.names,
        the_plane.origin,
        the_plane.u,
        the_plane.v,
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
    directional = the_plane.kind == "directions"
    return LossPlane(
        alphas,
        betas,
        values,
        the_plane.anchors,
        the_plane.overlay,
        the_plane.dx,
        the_plane.dy,
        axis_labels=("α (direction 1)", "β (direction 2)") if directional else ("u", "v"),
        anchor_labels=("centre",) if directional else ("w0", "w1", "w2"),
        curve_label="trajectory",
        info={**the_plane.info, "kind": the_plane.kind, "span": [a0, a1, b0, b1], **report},
    )
