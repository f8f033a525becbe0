"""The one-call verbs: turn a model, in place, into a line / curve / chain / simplex of networks.

Each takes the options of :func:`subspace_param.wrap` as keywords (:class:`WrapOptions`).
"""

from __future__ import annotations

import sys
from typing import TypedDict

from torch import nn

from .geometry import Bezier, Chain, Line, Simplex
from .selection import FilterFn
from .subspace import Subspace, wrap
from .vertex_init import VertexInit

if sys.version_info >= (3, 11):
    from typing import Unpack
else:  # pragma: no cover
    from typing_extensions import Unpack


class WrapOptions(TypedDict, total=False):
    """Keyword options shared by the one-call verbs (see :func:`subspace_param.wrap`)."""

    filter_fn: FilterFn | None
    init: str | VertexInit
    layerwise: bool
    seed: int | None
    backend: str | None
    fused: bool


def line(model: nn.Module, **options: Unpack[WrapOptions]) -> Subspace:
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
    return wrap(model, Line(), **options)


def curve(model: nn.Module, **options: Unpack[WrapOptions]) -> Subspace:
    """Make ``model`` a quadratic Bézier curve: w(α) = (1−α)²V0 + 2α(1−α)V1 + α²V2 (V1 = control)."""
    return wrap(model, Bezier(), **options)


def chain(model: nn.Module, bends: int = 1, **options: Unpack[WrapOptions]) -> Subspace:
    """Make ``model`` a polygonal chain V0 → V1 → … → V_{bends+1} (vertex i at α = i/(bends+1))."""
    return wrap(model, Chain(bends), **options)


def simplex(model: nn.Module, vertices: int = 3, **options: Unpack[WrapOptions]) -> Subspace:
    """Make ``model`` a simplex with ``vertices`` corners: w(t) = Σ_i t_i V_i (t barycentric).

    >>> import torch, subspace_param as sp
    >>> sub = sp.simplex(torch.nn.Linear(4, 3), vertices=3, seed=0)
    >>> [round(float(c), 4) for c in sub.coefficients]
    [0.3333, 0.3333, 0.3333]
    """
    return wrap(model, Simplex(vertices), **options)


__all__ = ["WrapOptions", "chain", "curve", "line", "simplex"]
