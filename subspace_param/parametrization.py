"""The per-tensor parametrization: w = Σ_k c_k V_k with c read from the root model's buffer.

Each covered tensor of each module gets one :class:`SubspaceParametrization` registered with
``torch.nn.utils.parametrize`` and K originals ``original0 … original{K-1}`` (the vertices).
The parametrization is stateless apart from its row index into the shared coefficient buffer
``_subspace_coefficients`` (shape ``(G, K)``, G = 1, or one row per module in layerwise mode),
which lives on the *root* model so that ``.to()``, ``state_dict`` and DDP's buffer broadcast
carry it. The root is referenced with ``object.__setattr__`` so it is not registered as a child.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .names import COEFFICIENTS_BUFFER, FUSED_ATTRIBUTE
from .ops import combine


class SubspaceParametrization(nn.Module):
    """``forward(V_0, …, V_{K-1}) = Σ_k c[group, k] · V_k``.

    Args:
        root: the wrapped model that holds the coefficient buffer.
        index: position of this tensor in the subspace's tensor list.
        group: row of the coefficient buffer used by this tensor.
        initial_vertices: the K vertex tensors handed to parametrize at registration.
        requires_grad: per-vertex ``requires_grad`` flags (frozen vertices for fitted curves).
        backend: ``auto`` | ``torch`` | ``triton`` (see :mod:`subspace_param.ops`).
        triton_ok: whether Triton can run here (``auto`` uses it for CUDA tensors only then).
    """

    is_subspace_parametrization = True

    def __init__(
        self,
        root: nn.Module,
        index: int,
        group: int,
        initial_vertices: Sequence[torch.Tensor],
        backend: str = "auto",
        triton_ok: bool = False,
    ) -> None:
        super().__init__()
        object.__setattr__(self, "_root", root)
        self.index = index
        self.group = group
        self.num_vertices = len(initial_vertices)
        self.backend = backend
        self.triton_ok = triton_ok
        self._pending: list[torch.Tensor] | None = list(initial_vertices)

    def forward(self, *vertices: torch.Tensor) -> torch.Tensor:
        fused = self._root.__dict__.get(FUSED_ATTRIBUTE)
        if fused is not None and fused.weights is not None:  # inside a root forward: one launch did all
            return fused.weights[self.index]
        coefficients = getattr(self._root, COEFFICIENTS_BUFFER)[self.group]
        return combine(coefficients, vertices, self.backend, self.triton_ok)

    def right_inverse(self, value: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """At registration: the prepared vertices. Afterwards (``module.weight = X``): every vertex := X."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            return tuple(pending)
        return tuple(value.detach().clone() for _ in range(self.num_vertices))

    def extra_repr(self) -> str:
        return f"index={self.index}, group={self.group}, K={self.num_vertices}, backend={self.backend!r}"
