"""Quadratic Bézier curve: w(α) = (1 − α)²·V0 + 2α(1 − α)·V1 + α²·V2 (V1 is the control point)."""

from __future__ import annotations

import torch

from .base import ScalarPathGeometry, register_geometry


@register_geometry("bezier")
class Bezier(ScalarPathGeometry):
    """Quadratic Bézier curve with ends V0 (α = 0), V2 (α = 1) and control point V1.

    Coefficients: c(α) = ((1 − α)², 2α(1 − α), α²); at α = ½ the curve is at
    ¼V0 + ½V1 + ¼V2 and it never passes through the control point itself.
    """

    num_vertices = 3

    def coefficients(self, point: torch.Tensor) -> torch.Tensor:
        a = point[..., 0]
        b = 1 - a
        return torch.stack([b * b, 2 * a * b, a * a], dim=-1)

    def vertex_point(self, k: int) -> torch.Tensor:
        if k == 0:
            return torch.tensor([0.0], dtype=torch.float64)
        if k == 2:
            return torch.tensor([1.0], dtype=torch.float64)
        raise ValueError(
            f"vertex {k} of a Bézier curve is {'the control point' if k == 1 else 'not a vertex'}"
            " and is not on the curve"
        )
