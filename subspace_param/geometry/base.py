"""The geometry protocol: a map from a point to K vertex coefficients.

Every geometry is an *affine* combination: for a point p the engine builds each covered tensor as

    w(p) = Σ_k c_k(p) · V_k,      Σ_k c_k(p) = 1,

so a new geometry is a small class that implements :meth:`Geometry.coefficients`,
:meth:`Geometry.sample` and :meth:`Geometry.check_point`, decorated with :func:`register_geometry`.
Vertices are ordered along the path: vertex 0 is the start (the model's own weights), the last
vertex is the end, control points / bends are in between.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, ClassVar

import torch

from ..errors import PointError

_REGISTRY: dict[str, type[Geometry]] = {}


def register_geometry(name: str) -> Callable[[type[Geometry]], type[Geometry]]:
    """Class decorator: make a geometry known under ``name`` (used by save/load)."""

    def deco(cls: type[Geometry]) -> type[Geometry]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"a geometry named {name!r} is already registered ({_REGISTRY[name].__name__})")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def geometry_from_spec(spec: dict[str, Any]) -> Geometry:
    """Rebuild a geometry from :meth:`Geometry.spec` (e.g. read back from a file)."""
    if not isinstance(spec, dict) or "name" not in spec:
        raise ValueError(f"not a geometry spec: {spec!r}")
    name = spec["name"]
    if name not in _REGISTRY:
        raise ValueError(f"unknown geometry {name!r}; known: {sorted(_REGISTRY)}")
    kwargs = {k: v for k, v in spec.items() if k != "name"}
    return _REGISTRY[name](**kwargs)


def registered_geometries() -> dict[str, type[Geometry]]:
    return dict(_REGISTRY)


class Geometry(abc.ABC):
    """Maps points of a low-dimensional set to K affine coefficients.

    Attributes:
        num_vertices: K, the number of vertex tensors each covered parameter gets.
        point_dim: P, the length of a point vector.
    """

    name: ClassVar[str] = "geometry"
    num_vertices: int
    point_dim: int

    # -- the map -------------------------------------------------------------------------
    @abc.abstractmethod
    def coefficients(self, point: torch.Tensor) -> torch.Tensor:
        """Coefficients c(p) of shape ``(..., K)`` for points of shape ``(..., P)``.

        Differentiable in ``point``; values are not checked here (see :meth:`check_point`).
        """

    @abc.abstractmethod
    def sample(
        self, n: int, *, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """``n`` points drawn uniformly from the geometry, shape ``(n, P)`` (on CPU)."""

    @abc.abstractmethod
    def _check_inside(self, point: torch.Tensor, extrapolate: bool, what: str) -> None:
        """Raise :class:`PointError` if a finite point of the right length is outside the geometry."""

    @abc.abstractmethod
    def center(self) -> torch.Tensor:
        """The midpoint (line/curve/chain α = 0.5) or centroid (simplex), shape ``(P,)``."""

    @abc.abstractmethod
    def vertex_point(self, k: int) -> torch.Tensor:
        """A point whose coefficients are exactly the one-hot vector e_k, if the geometry reaches V_k.

        Raises ``ValueError`` for vertices that are not on the geometry (a Bézier control point).
        """

    def spec(self) -> dict[str, Any]:
        """A JSON-able description; :func:`geometry_from_spec` inverts it."""
        return {"name": self.name}

    # -- validation ----------------------------------------------------------------------
    def as_point(
        self,
        point: Any,
        *,
        extrapolate: bool = False,
        what: str = "point",
        dtype: torch.dtype = torch.float64,
    ) -> torch.Tensor:
        """Convert ``point`` (float, sequence or tensor) to a ``(..., P)`` tensor and validate it."""
        t = torch.as_tensor(point, dtype=dtype).detach().cpu()
        if t.ndim == 0:
            t = t.reshape(1)
        if t.shape[-1] != self.point_dim:
            raise PointError(
                f"{what} for a {self.describe()} must have {self.point_dim} coordinate(s), "
                f"got shape {tuple(t.shape)}"
            )
        if not torch.isfinite(t).all():
            raise PointError(f"{what} for a {self.describe()} contains NaN or inf: {t.tolist()}")
        self._check_inside(t, extrapolate, what)
        return t

    def describe(self) -> str:
        return f"{self.name} (K={self.num_vertices})"

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.spec().items() if k != "name")
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Geometry) and self.spec() == other.spec()

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.spec().items())))


class ScalarPathGeometry(Geometry):
    """A path parametrised by one scalar α ∈ [0, 1] (line, Bézier curve, polygonal chain)."""

    point_dim = 1

    def _check_inside(self, point: torch.Tensor, extrapolate: bool, what: str) -> None:
        if extrapolate:
            return
        bad = (point < 0) | (point > 1)
        if bad.any():
            raise PointError(
                f"{what} α={point[bad].tolist()} is outside [0, 1] for a {self.describe()}; "
                "pass extrapolate=True to evaluate beyond the ends"
            )

    def sample(
        self, n: int, *, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        return torch.rand(n, 1, generator=generator, dtype=dtype)

    def center(self) -> torch.Tensor:
        return torch.tensor([0.5], dtype=torch.float64)
