"""The per-tensor parametrization: w = Σ_k c_k(p) V_k, a function of the vertices and the root's point.

Each covered tensor of each module gets one :class:`SubspaceParametrization` registered with
``torch.nn.utils.parametrize`` and K originals ``original0 … original{K-1}`` (the vertices).
The parametrization holds nothing but its index into the root's spec: the point is one buffer of
the *root* model (``_subspace_point``, shape ``(G, P)``; G = 1, or one row per module in layerwise
mode), and the coefficients c(p) are derived from it where they are needed
(:func:`point_coefficients`), so overriding the point alone — ``torch.func.functional_call(model,
{"_subspace_point": p}, x)``, ``vmap`` over points, ``load_state_dict`` — gives the model at p.
Group, K and backend are read from the root's spec. The root is referenced with
``object.__setattr__`` so it is not registered as a child.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .names import FUSED_ATTRIBUTE, POINT_BUFFER, RUNTIME_ATTRIBUTE, SPEC_ATTRIBUTE
from .ops import combine


def point_coefficients(root: nn.Module) -> torch.Tensor:
    """c(p) of shape ``(G, K)`` for the root's current point buffer (whatever tensor it is now)."""
    return root.__dict__[RUNTIME_ATTRIBUTE]["geometry"].coefficients(getattr(root, POINT_BUFFER))


class SubspaceParametrization(nn.Module):
    """``forward(V_0, …, V_{K-1}) = Σ_k c(p)[group, k] · V_k`` with p the root's point.

    Args:
        root: the wrapped model that holds the point and the spec.
        index: position of this tensor in the subspace's tensor list (the spec's ``tensors``).
        initial_vertices: the K vertex tensors handed to parametrize at registration.
    """

    is_subspace_parametrization = True

    def __init__(self, root: nn.Module, index: int, initial_vertices: Sequence[torch.Tensor]) -> None:
        super().__init__()
        object.__setattr__(self, "_root", root)
        self.index = index
        self._pending: list[torch.Tensor] | None = list(initial_vertices)

    def forward(self, *vertices: torch.Tensor) -> torch.Tensor:
        root = self._root
        fused = root.__dict__.get(FUSED_ATTRIBUTE)
        if fused is not None and fused.weights is not None:  # inside a root forward: one launch per bucket
            return fused.weight(self.index)
        spec = root.__dict__[SPEC_ATTRIBUTE]
        coefficients = point_coefficients(root)[spec["groups"][self.index]]
        return combine(coefficients, vertices, spec["backend"], root.__dict__[RUNTIME_ATTRIBUTE]["triton_ok"])

    def right_inverse(self, value: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """At registration: the prepared vertices. Afterwards (``module.weight = X``): every vertex := X."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            return tuple(pending)
        k = self._root.__dict__[RUNTIME_ATTRIBUTE]["geometry"].num_vertices
        return tuple(value.detach().clone() for _ in range(k))

    def extra_repr(self) -> str:
        return f"index={self.index}"
