"""Line segment between two vertices: w(α) = (1 − α)·V0 + α·V1."""

from __future__ import annotations

import torch

from .base import ScalarPathGeometry, register_geometry


@register_geometry("line")
class Line(ScalarPathGeometry):
    """Straight segment; α = 0 gives V0, α = 1 gives V1.

    Coefficients: c(α) = (1 − α, α).
    """

    num_vertices = 2

    def coefficients(self, point: torch.Tensor) -> torch.Tensor:
        a = point[..., 0]
        return torch.stack([1 - a, a], dim=-1)

    def vertex_point(self, k: int) -> torch.Tensor:
        if k not in (0, 1):
            raise ValueError(f"a line has vertices 0 and 1, not {k}")
        return torch.tensor([float(k)], dtype=torch.float64)
