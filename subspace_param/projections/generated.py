"""P generated on the fly, never stored: P = S / √D with S a Rademacher (±1) matrix whose
entries come from a counter-based hash of (seed, row, column) (see
:mod:`subspace_param.kernels.rademacher`). Columns have norm exactly 1 over the D rows.

Forward (P ω)[rows] and backward Pᵀ ḡ run as Triton kernels that generate each tile in registers
(CUDA, or the interpreter), or as chunked PyTorch code elsewhere; both produce bit-identical
entries. Memory is independent of d apart from ω itself. On CPU, small row blocks
(≤ ``materialize_entries`` entries) are generated once and kept, which is faster there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..kernels import rademacher
from ..ops import resolve_backend, triton_usable
from .base import Projector, Segment, register_projector

DEFAULT_MATERIALIZE_ENTRIES = 1 << 26


class _GeneratedRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, omega, projector, start, stop):  # type: ignore[override]
        ctx.projector, ctx.start, ctx.stop = projector, start, stop
        return projector._forward(omega, start, stop)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        return ctx.projector._backward(grad, ctx.start, ctx.stop), None, None, None


@register_projector("generated")
class GeneratedProjector(Projector):
    """Rademacher ±1/√D entries from a counter-based hash; P is never stored.

    Args:
        backend: ``auto`` (Triton for CUDA tensors when available) | ``torch`` | ``triton``.
        materialize_entries: on the PyTorch path, keep a segment's ±1 block when it has at most
            this many entries (0 disables it; memory then stays independent of d).
    """

    def __init__(
        self,
        segments: Sequence[Segment],
        dim: int,
        *,
        seed: int,
        backend: str | None = None,
        materialize_entries: int = DEFAULT_MATERIALIZE_ENTRIES,
    ) -> None:
        super().__init__(segments, dim, seed=seed)
        if self.num_rows >= rademacher.MAX_ROWS:
            raise ValueError(f"method='generated' supports D < 2**32 rows, got D = {self.num_rows:,}")
        self.backend = resolve_backend(backend)
        self.materialize_entries = materialize_entries
        self.scale = 1.0 / math.sqrt(self.num_rows)
        self._blocks: dict[tuple[int, int, torch.device], torch.Tensor] = {}

    def _use_triton(self, t: torch.Tensor) -> bool:
        if self.backend == "torch":
            return False
        if self.backend == "triton":
            return True
        return t.is_cuda and triton_usable()

    def _block(self, start: int, stop: int, like: torch.Tensor) -> torch.Tensor | None:
        if (stop - start) * self.dim > self.materialize_entries:
            return None
        key = (start, stop, like.device)
        if key not in self._blocks:
            self._blocks[key] = rademacher.sign_block(self.seed, start, stop, self.dim, like.device)
        return self._blocks[key]

    def _forward(self, omega: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        if self._use_triton(omega):
            return rademacher.rows_matvec_triton(self.seed, start, stop, omega, self.scale)
        block = self._block(start, stop, omega)
        if block is not None:
            return (block.to(omega.dtype) @ omega) * self.scale
        return rademacher.rows_matvec_torch(self.seed, start, stop, omega) * self.scale

    def _backward(self, grad: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        grad = grad.contiguous()
        if self._use_triton(grad):
            return rademacher.rows_rmatvec_triton(self.seed, start, stop, grad, self.dim, self.scale)
        block = self._block(start, stop, grad)
        if block is not None:
            return (grad @ block.to(grad.dtype)) * self.scale
        return rademacher.rows_rmatvec_torch(self.seed, start, stop, grad, self.dim) * self.scale

    def rows(self, omega: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        return _GeneratedRows.apply(omega, self, start, stop)

    def _apply(self, fn, recurse: bool = True):  # type: ignore[no-untyped-def]
        self._blocks.clear()  # .to()/.cuda()/.half(): cached row blocks would stay on the old device
        return super()._apply(fn, recurse)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, backend={self.backend!r}"
