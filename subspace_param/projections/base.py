"""The projector interface: a frozen linear map P from R^d to R^D, applied by row segments.

θ = θ0 + P ω (or θ = P ω for projectors with ``includes_init``). D is the number of covered
scalars, split into one contiguous row segment per covered tensor, so every parametrized tensor
computes only its own rows ``P[start:stop] ω``; autograd gives ω̄ = P[start:stop]ᵀ ḡ.

A new projection is one small file: subclass :class:`Projector`, implement :meth:`rows`, and
decorate it with ``@register_projector("name")``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

Segment = tuple[int, int]


class Projector(nn.Module, ABC):
    """A frozen D × d matrix P, never trained, rebuilt from ``seed`` (never saved).

    Args:
        segments: the row segments ``[(start, stop), …]`` of the covered tensors (tiling [0, D)).
        dim: d, the number of columns (the subspace dimension).
        seed: the projector's seed; the same seed gives the same P on every device and backend.
    """

    #: True when θ = P ω (the projector spans the initial point itself; no separate θ0)
    includes_init: bool = False

    def __init__(self, segments: Sequence[Segment], dim: int, *, seed: int) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"dim must be ≥ 1, got {dim}")
        self.segments = [(int(a), int(b)) for a, b in segments]
        self.num_rows = self.segments[-1][1] if self.segments else 0
        self.dim = int(dim)
        self.seed = int(seed)

    @abstractmethod
    def rows(self, omega: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """(P ω)[start:stop] for one segment; differentiable in ω."""

    def initial_omega(self, theta_init: torch.Tensor) -> torch.Tensor:
        """ω at which training starts: zeros (θ = θ0); projectors with ``includes_init`` override."""
        return theta_init.new_zeros(self.dim)

    def matvec(self, omega: torch.Tensor) -> torch.Tensor:
        """P ω over all D rows."""
        return torch.cat([self.rows(omega, a, b) for a, b in self.segments])

    def rmatvec(self, y: torch.Tensor) -> torch.Tensor:
        """Pᵀ y, through the same backward that training uses."""
        omega = torch.zeros(self.dim, dtype=y.dtype, device=y.device, requires_grad=True)
        (grad,) = torch.autograd.grad(self.matvec(omega), omega, grad_outputs=y)
        return grad

    def dense(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """P as a dense D × d matrix (for tests and small problems: costs d matvecs)."""
        eye = torch.eye(self.dim, dtype=dtype, device=self._device())
        return torch.stack([self.matvec(eye[j]) for j in range(self.dim)], dim=1)

    def _device(self) -> torch.device:
        for t in self.buffers():
            return t.device
        return torch.device("cpu")

    def extra_repr(self) -> str:
        return f"D={self.num_rows}, d={self.dim}, seed={self.seed}"


_REGISTRY: dict[str, type[Projector]] = {}


def register_projector(name: str) -> Callable[[type[Projector]], type[Projector]]:
    """Class decorator: make a :class:`Projector` available as ``method=name``."""

    def deco(cls: type[Projector]) -> type[Projector]:
        if name in _REGISTRY:
            raise ValueError(
                f"projection method {name!r} is already registered by {_REGISTRY[name].__name__}"
            )
        _REGISTRY[name] = cls
        return cls

    return deco


def projector_class(name: str) -> type[Projector]:
    if name not in _REGISTRY:
        raise ValueError(f"unknown projection method {name!r}; choose one of {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def available_methods() -> list[str]:
    return sorted(_REGISTRY)


def check_dense_fits(method: str, num_rows: int, dim: int, max_bytes: int, itemsize: int = 4) -> None:
    """Refuse a materialised D × d matrix beyond ``max_bytes``, saying how much it would need."""
    need = num_rows * dim * itemsize
    if need > max_bytes:
        raise MemoryError(
            f"method={method!r} would store a {num_rows:,} × {dim:,} matrix: {need / 2**30:.2f} GiB "
            f"(limit max_bytes={max_bytes / 2**30:.2f} GiB); use method='generated' or 'fastfood', "
            "which never store P, or raise max_bytes"
        )


def options_repr(options: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in sorted(options.items()))
