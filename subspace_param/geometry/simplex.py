"""Simplex with n vertices; a point is its n barycentric weights."""

from __future__ import annotations

from typing import Any

import torch

from ..errors import PointError
from .base import Geometry, register_geometry


@register_geometry("simplex")
class Simplex(Geometry):
    """Simplex with ``vertices`` = n ≥ 2 corners: w(t) = Σ_i t_i V_i, t_i ≥ 0, Σ_i t_i = 1.

    The point *is* the coefficient vector. Uniform samples are normalised i.i.d. Exponential(1)
    draws, i.e. Dirichlet(1, …, 1). With ``extrapolate=True`` negative weights are accepted (the
    affine hull), but they must still sum to 1.
    """

    def __init__(self, vertices: int = 3) -> None:
        if not isinstance(vertices, int) or isinstance(vertices, bool) or vertices < 2:
            raise ValueError(f"a simplex needs an integer number of vertices ≥ 2, got {vertices!r}")
        self.vertices = vertices
        self.num_vertices = vertices
        self.point_dim = vertices

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "vertices": self.vertices}

    def coefficients(self, point: torch.Tensor) -> torch.Tensor:
        return point.clone()

    def sample(
        self, n: int, *, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        e = torch.empty(n, self.vertices, dtype=torch.float64).exponential_(1.0, generator=generator)
        return (e / e.sum(-1, keepdim=True)).to(dtype)

    def _check_inside(self, point: torch.Tensor, extrapolate: bool, what: str) -> None:
        total = point.sum(-1)
        if ((total - 1).abs() > 1e-5).any():
            raise PointError(
                f"{what} for a {self.describe()} must be barycentric weights summing to 1, "
                f"got sum {total.flatten().tolist()}"
            )
        if not extrapolate and (point < 0).any():
            raise PointError(
                f"{what} for a {self.describe()} has negative weight(s) {point.tolist()}; "
                "pass extrapolate=True to leave the simplex"
            )

    def center(self) -> torch.Tensor:
        return torch.full((self.vertices,), 1.0 / self.vertices, dtype=torch.float64)

    def vertex_point(self, k: int) -> torch.Tensor:
        if not 0 <= k < self.vertices:
            raise ValueError(
                f"a simplex with {self.vertices} vertices has corners 0..{self.vertices - 1}, not {k}"
            )
        p = torch.zeros(self.vertices, dtype=torch.float64)
        p[k] = 1.0
        return p

    def describe(self) -> str:
        return f"simplex with {self.vertices} vertices"
