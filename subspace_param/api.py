"""The one-call verbs: turn a model, in place, into a line / curve / chain / simplex of networks."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from .geometry import Bezier, Chain, Line, Simplex
from .selection import FilterFn
from .subspace import Subspace, wrap
from .vertex_init import VertexInit


def line(
    model: nn.Module,
    *,
    filter_fn: FilterFn | None = None,
    init: str | VertexInit = "independent",
    layerwise: bool = False,
    seed: int | None = None,
    backend: str | None = None,
) -> Subspace:
    """Make ``model`` a line of networks, in place: w(α) = (1 − α)·V0 + α·V1.

    V0 is the model's current weights; V1 is drawn by ``init`` (default: an independent
    draw of each module's own initialiser). Returns the :class:`Subspace` handle; the point
    starts at α = 0.5.

    >>> import torch, subspace_param as sp
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    >>> sub = sp.line(net, seed=0)
    >>> with sub.at(0.0):
    ...     y0 = net(torch.ones(1, 3))
    >>> sub.num_vertices, len(sub.tensor_names)
    (2, 4)
    """
    return wrap(
        model, Line(), filter_fn=filter_fn, init=init, layerwise=layerwise, seed=seed, backend=backend
    )


def curve(
    model: nn.Module,
    *,
    filter_fn: FilterFn | None = None,
    init: str | VertexInit = "independent",
    layerwise: bool = False,
    seed: int | None = None,
    backend: str | None = None,
) -> Subspace:
    """Make ``model`` a quadratic Bézier curve: w(α) = (1−α)²V0 + 2α(1−α)V1 + α²V2 (V1 = control)."""
    return wrap(
        model, Bezier(), filter_fn=filter_fn, init=init, layerwise=layerwise, seed=seed, backend=backend
    )


def chain(
    model: nn.Module,
    bends: int = 1,
    *,
    filter_fn: FilterFn | None = None,
    init: str | VertexInit = "independent",
    layerwise: bool = False,
    seed: int | None = None,
    backend: str | None = None,
) -> Subspace:
    """Make ``model`` a polygonal chain V0 → V1 → … → V_{bends+1} (vertex i at α = i/(bends+1))."""
    return wrap(
        model, Chain(bends), filter_fn=filter_fn, init=init, layerwise=layerwise, seed=seed, backend=backend
    )


def simplex(
    model: nn.Module,
    vertices: int = 3,
    *,
    filter_fn: FilterFn | None = None,
    init: str | VertexInit = "independent",
    layerwise: bool = False,
    seed: int | None = None,
    backend: str | None = None,
) -> Subspace:
    """Make ``model`` a simplex with ``vertices`` corners: w(t) = Σ_i t_i V_i (t barycentric)."""
    return wrap(
        model,
        Simplex(vertices),
        filter_fn=filter_fn,
        init=init,
        layerwise=layerwise,
        seed=seed,
        backend=backend,
    )


__all__: Sequence[str] = ["chain", "curve", "line", "simplex"]
