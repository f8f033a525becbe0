"""One launch for every tensor of a model: the segmented (multi-tensor) combine and its backward.

The vertices of all covered tensors live back to back in one flat buffer per vertex (the per-tensor
parameters are views of it, see :mod:`subspace_param.fused`). A :class:`ChunkTable` splits the flat
range into chunks of at most ``block`` elements that never cross a tensor boundary; program ``i`` of
the kernels in :mod:`.triton_kernels` handles chunk ``i``. So:

* forward, one launch:   w = Σ_k c[row(L), k] V_k^L for every tensor L, plus (optionally) every
  per-tensor Gram entry ⟨V_a^L, V_b^L⟩ from the same reads;
* backward, one launch:  ∂/∂V_k^L = c[row(L), k] g^L + Σ_m A[L, k, m] V_m^L.

The Gram partials of the chunks of one tensor are summed in a fixed order (a float64 cumulative
sum over the chunks, differenced at the tensor boundaries): no atomics, bit-reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .combine import _acc, _block, _check, unpack_upper
from .triton_kernels import combine_bwd, combine_fwd


@dataclass(frozen=True)
class ChunkTable:
    """Programs of one segmented launch. ``start``/``end``: flat element range of each chunk;
    ``row``: its coefficient row; ``tensor``: its tensor; ``bounds``: chunk index where each tensor's
    chunks begin, plus the total (length L + 1)."""

    start: torch.Tensor
    end: torch.Tensor
    row: torch.Tensor
    tensor: torch.Tensor
    bounds: torch.Tensor
    block: int

    @property
    def num_programs(self) -> int:
        return int(self.start.numel())

    @property
    def num_tensors(self) -> int:
        return int(self.bounds.numel()) - 1


def segment_block(sizes: Sequence[int]) -> int:
    """Chunk length: 1024 on GPU; under the interpreter one large block (few programs)."""
    return _block(max(sizes, default=1))


def chunk_table(
    sizes: Sequence[int], rows: Sequence[int], device: torch.device | str, block: int | None = None
) -> ChunkTable:
    """The chunks of tensors of ``sizes`` elements stored back to back, tensor L using coefficient
    row ``rows[L]``."""
    if len(sizes) != len(rows):
        raise ValueError(f"chunk_table: {len(sizes)} sizes but {len(rows)} rows")
    block = block or segment_block(sizes)
    starts, ends, chunk_rows, tensors, bounds = [], [], [], [], [0]
    offset = 0
    for index, (size, row) in enumerate(zip(sizes, rows)):
        for s in range(offset, offset + size, block):
            starts.append(s)
            ends.append(min(s + block, offset + size))
            chunk_rows.append(row)
            tensors.append(index)
        offset += size
        bounds.append(len(starts))

    def as_tensor(values: list[int], dtype: torch.dtype) -> torch.Tensor:
        return torch.tensor(values, dtype=dtype, device=device)

    return ChunkTable(
        start=as_tensor(starts, torch.int64),
        end=as_tensor(ends, torch.int64),
        row=as_tensor(chunk_rows, torch.int32),
        tensor=as_tensor(tensors, torch.int32),
        bounds=as_tensor(bounds, torch.int64),
        block=block,
    )


def _coefficients(coefficients: torch.Tensor, vertices: Sequence[torch.Tensor]) -> torch.Tensor:
    acc_dtype = torch.float64 if vertices[0].dtype == torch.float64 else torch.float32
    return coefficients.to(device=vertices[0].device, dtype=acc_dtype).contiguous()


def segmented_combine(
    coefficients: torch.Tensor, vertices: Sequence[torch.Tensor], table: ChunkTable, with_gram: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(w, G)``: the flat combined weights and, with ``with_gram``, the per-tensor Gram matrices
    G[L, a, b] = ⟨V_a^L, V_b^L⟩ (L × K × K, fp32/fp64), all from one launch.

    ``coefficients``: ``(rows, K)``; ``vertices``: K flat contiguous buffers of equal length."""
    _check(list(vertices), "segmented_combine")
    vs = tuple(vertices)
    k = len(vs)
    c = _coefficients(coefficients, vs)
    out = torch.empty_like(vs[0])
    programs = table.num_programs
    acc_dtype = c.dtype
    partials = torch.empty(max(programs, 1), k * (k + 1) // 2, dtype=acc_dtype, device=vs[0].device)
    if programs:
        combine_fwd[(programs,)](
            out, c, vs, partials, out.numel(), table.start, table.end, table.row,
            K=k, WRITE_OUT=True, GRAM=with_gram, SEGMENTED=True, ACC=_acc(vs[0]), BLOCK=table.block,
        )  # fmt: skip
    if not with_gram:
        return out, None
    running = torch.cat([partials.new_zeros(1, partials.shape[1]), partials[:programs]]).double().cumsum(0)
    per_tensor = (running[table.bounds[1:]] - running[table.bounds[:-1]]).to(acc_dtype)
    return out, unpack_upper(per_tensor, k)


def segmented_combine_grad(
    coefficients: torch.Tensor,
    grad: torch.Tensor | None,
    lincomb: torch.Tensor | None,
    vertices: Sequence[torch.Tensor],
    table: ChunkTable,
) -> list[torch.Tensor]:
    """The K flat vertex gradients ∂/∂V_k^L = c[row(L), k] g^L + Σ_m A[L, k, m] V_m^L in one launch
    (``grad`` g or ``lincomb`` A may be None, not both)."""
    _check(list(vertices), "segmented_combine_grad")
    if grad is None and lincomb is None:
        raise ValueError("segmented_combine_grad needs the weight gradient, the Gram term, or both")
    vs = tuple(vertices)
    k = len(vs)
    c = _coefficients(coefficients, vs)
    if lincomb is not None and tuple(lincomb.shape) != (table.num_tensors, k, k):
        raise ValueError(
            f"segmented_combine_grad: lincomb has shape {tuple(lincomb.shape)}, "
            f"expected ({table.num_tensors}, {k}, {k})"
        )
    a = c if lincomb is None else lincomb.to(device=vs[0].device, dtype=c.dtype).contiguous()
    g = vs[0] if grad is None else grad.contiguous()
    grads = [torch.empty_like(vs[0]) for _ in vs]
    if table.num_programs:
        combine_bwd[(table.num_programs,)](
            tuple(grads), g, c, a, vs, vs[0].numel(), table.start, table.end, table.row, table.tensor,
            K=k, HAS_G=grad is not None, HAS_A=lincomb is not None, SEGMENTED=True, ACC=_acc(vs[0]),
            BLOCK=table.block,
        )  # fmt: skip
    return grads
