"""Fitted curves between two trained networks (Garipov et al. 2018) through the subspace engine."""

from __future__ import annotations

from typing import Literal

from torch import nn

from ..geometry import Bezier, Chain
from ..selection import FilterFn
from ..subspace import Subspace, wrap
from ..vertex_init import FromModels


def connect(
    model_a: nn.Module,
    model_b: nn.Module,
    curve: Literal["bezier", "chain"] = "bezier",
    bends: int = 1,
    *,
    filter_fn: FilterFn | None = None,
    seed: int | None = None,
    backend: str | None = None,
) -> Subspace:
    """Wrap ``model_a`` in place as a curve from A (t = 0) to B (t = 1); ``model_b`` is untouched.

    The end vertices are frozen copies of the two models (``requires_grad=False``); the bends —
    one control point for ``"bezier"`` (quadratic), ``bends`` for ``"chain"`` — start on the
    chord (the midpoint for one bend) and are the only trainable tensors of
    ``model_a.parameters()``. Train it with the ordinary subspace loop (``sub.sample()`` per batch;
    β = 0: no cos² regulariser is needed between bends). Raises
    :class:`~subspace_param.ArchitectureMismatchError` naming the first tensor that differs.

    >>> import torch, subspace_param as sp
    >>> a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    >>> curve = sp.connect(a, b, curve="chain", bends=2)
    >>> [p.requires_grad for p in curve.vertex(0).values()], curve.num_vertices
    ([False, False], 4)
    """
    if curve == "bezier":
        if bends != 1:
            raise ValueError(f"curve='bezier' is the quadratic Bézier curve with one bend, got bends={bends}")
        geometry = Bezier()
    elif curve == "chain":
        geometry = Chain(bends)
    else:
        raise ValueError(f"curve must be 'bezier' or 'chain', got {curve!r}")
    k = geometry.num_vertices
    init = FromModels([None] * (k - 1) + [model_b])
    return wrap(
        model_a,
        geometry,
        filter_fn=filter_fn,
        init=init,
        seed=seed,
        backend=backend,
        frozen_vertices=(0, k - 1),
    )
