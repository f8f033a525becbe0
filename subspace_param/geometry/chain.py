"""Polygonal chain V0 → V1 → … → V_{b+1} with b bends, traversed at constant parameter speed."""

from __future__ import annotations

from typing import Any

import torch

from .base import ScalarPathGeometry, register_geometry


@register_geometry("chain")
class Chain(ScalarPathGeometry):
    """Polygonal chain with ``bends`` interior vertices, K = bends + 2.

    α ∈ [0, 1] is split into bends + 1 equal segments; on segment i (α ∈ [i/S, (i+1)/S],
    S = bends + 1) with local s = S·α − i:   c_i = 1 − s,  c_{i+1} = s,  all other c = 0.
    Beyond the ends (extrapolation) the first/last segment is extended linearly.
    Vertex i is reached exactly at α = i / S.
    """

    def __init__(self, bends: int = 1) -> None:
        if not isinstance(bends, int) or isinstance(bends, bool) or bends < 0:
            raise ValueError(f"bends must be an integer ≥ 0, got {bends!r}")
        self.bends = bends
        self.num_vertices = bends + 2

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "bends": self.bends}

    def coefficients(self, point: torch.Tensor) -> torch.Tensor:
        segments = self.bends + 1
        a = point[..., 0] * segments
        seg = torch.clamp(torch.floor(a.detach()), 0, segments - 1)
        s = a - seg  # local coordinate, may leave [0, 1] only when extrapolating
        idx = seg.long()
        coeffs = torch.zeros(*a.shape, self.num_vertices, dtype=a.dtype, device=a.device)
        coeffs = coeffs.scatter(-1, idx.unsqueeze(-1), (1 - s).unsqueeze(-1))
        coeffs = coeffs.scatter(-1, (idx + 1).unsqueeze(-1), s.unsqueeze(-1))
        return coeffs

    def vertex_point(self, k: int) -> torch.Tensor:
        if not 0 <= k < self.num_vertices:
            raise ValueError(
                f"a chain with {self.bends} bend(s) has vertices 0..{self.num_vertices - 1}, not {k}"
            )
        return torch.tensor([k / (self.bends + 1)], dtype=torch.float64)

    def describe(self) -> str:
        return f"chain with {self.bends} bend(s) (K={self.num_vertices})"
