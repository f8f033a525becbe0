"""The hashed (count-sketch) projection: s nonzeros per row at hashed columns with hashed signs,
every column scaled to unit norm by its exact count (see :mod:`subspace_param.kernels.hashing`).

Cost O(D·s) per pass whatever d is, and nothing of P is stored but the d column counts: the
forward is a gather (P ω)[i] = Σ_k σ_k(i) ω[c_k(i)] / √n(c_k(i)), the backward a scatter-add.
With s = 1 it is HashedNets' weight sharing. Triton on CUDA tensors, PyTorch elsewhere (both
compute the same integer hashes: bit-identical entries). On the PyTorch path, segments of at most
``cache_entries`` nonzeros keep their columns (int32) and signs (int8), which skips the hashing.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..kernels import hashing, rademacher
from ..ops import resolve_backend, triton_usable
from .base import Projector, Segment, register_projector

DEFAULT_NONZEROS = 8
DEFAULT_CACHE_ENTRIES = 1 << 24


class _HashedRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, omega_scaled, projector, start, stop):  # type: ignore[override]
        ctx.projector, ctx.start, ctx.stop = projector, start, stop
        return projector._gather(omega_scaled, start, stop)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        return ctx.projector._scatter(grad.contiguous(), ctx.start, ctx.stop), None, None, None


@register_projector("hashed")
class HashedProjector(Projector):
    """s nonzeros ±1/√n(j) per row at hashed columns (one per column block); P is never stored.

    Args:
        nonzeros: s, the nonzeros per row (default 8; capped at d).
        backend: ``auto`` (Triton for CUDA tensors when available) | ``torch`` | ``triton``.
        cache_entries: on the PyTorch path, keep a segment's columns and signs when it has at most
            this many nonzeros (5 bytes each; 0 disables it).
    """

    def __init__(
        self,
        segments: Sequence[Segment],
        dim: int,
        *,
        seed: int,
        nonzeros: int = DEFAULT_NONZEROS,
        backend: str | None = None,
        cache_entries: int = DEFAULT_CACHE_ENTRIES,
    ) -> None:
        super().__init__(segments, dim, seed=seed)
        if not isinstance(nonzeros, int) or nonzeros < 1:
            raise ValueError(f"nonzeros must be a positive int, got {nonzeros!r}")
        if self.num_rows >= rademacher.MAX_ROWS:
            raise ValueError(f"method='hashed' supports D < 2**62 rows, got D = {self.num_rows:,}")
        self.nonzeros = min(nonzeros, dim)
        self.backend = resolve_backend(backend)
        self.cache_entries = cache_entries
        counts = hashing.column_counts(seed, self.num_rows, dim, self.nonzeros)
        empty = int((counts == 0).sum())
        if empty:
            raise ValueError(
                f"method='hashed': {empty} of the d = {dim:,} columns received no nonzero from the "
                f"D = {self.num_rows:,} rows × s = {self.nonzeros} hashes; choose a smaller dim or more "
                "nonzeros"
            )
        self.register_buffer("inv_norm", counts.double().rsqrt().float(), persistent=False)
        self._cache: dict[tuple[int, int, torch.device], tuple[torch.Tensor, torch.Tensor]] = {}

    def _use_triton(self, t: torch.Tensor) -> bool:
        if self.backend == "torch":
            return False
        if self.backend == "triton":
            return True
        return t.is_cuda and triton_usable()

    def _cached(
        self, start: int, stop: int, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        if (stop - start) * self.nonzeros > self.cache_entries:
            return None
        key = (start, stop, device)
        if key not in self._cache:
            cols, signs = hashing.columns_and_signs(self.seed, start, stop, self.dim, self.nonzeros, device)
            self._cache[key] = (cols.to(torch.int32), signs.to(torch.int8))
        return self._cache[key]

    def _gather(self, omega_scaled: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        if self._use_triton(omega_scaled):
            return hashing.gather_triton(self.seed, start, stop, omega_scaled, self.nonzeros)
        cached = self._cached(start, stop, omega_scaled.device)
        if cached is not None:
            return hashing.gather_cached(*cached, omega_scaled)
        return hashing.gather_torch(self.seed, start, stop, omega_scaled, self.nonzeros)

    def _scatter(self, grad: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        if self._use_triton(grad):
            return hashing.scatter_triton(self.seed, start, stop, grad, self.dim, self.nonzeros)
        cached = self._cached(start, stop, grad.device)
        if cached is not None:
            return hashing.scatter_cached(*cached, grad, self.dim)
        return hashing.scatter_torch(self.seed, start, stop, grad, self.dim, self.nonzeros)

    def rows(self, omega: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        omega_scaled = omega * self.inv_norm.to(omega.dtype)
        return _HashedRows.apply(omega_scaled, self, start, stop)

    def _apply(self, fn, recurse: bool = True):  # type: ignore[no-untyped-def]
        self._cache.clear()  # .to()/.cuda(): cached columns would stay on the old device
        return super()._apply(fn, recurse)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, nonzeros={self.nonzeros}, backend={self.backend!r}"
