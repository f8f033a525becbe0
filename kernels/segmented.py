"""One launch for many tensors: the segmented (multi-tensor) combine and its backward.

The vertices of the covered tensors live back to back in one flat buffer per vertex (the
per-tensor parameters are views of it, see :mod:`subspace_param.fused`), each tensor's segment
starting on a multiple of :data:`ALIGN` elements and padded to one (:func:`padded_size`). A
:class:`ChunkTable` splits the flat range into chunks of at most ``block`` elements that never
cross a segment; program ``i`` of the kernels in :mod:`.triton_kernels` handles chunk ``i``. So:

* forward, one launch:   w = Σ_k c[row(L), k] V_k^L for every tensor L, plus (optionally) every
  per-tensor Gram entry ⟨V_a^L, V_b^L⟩ from the same reads;
* backward, one launch:  ∂/∂V_k^L = c[row(L), k] g^L + Σ_m A[L, k, m] V_m^L, reading each weight
  gradient g^L where autograd left it (a tuple of T pointers, no concatenation).

The Gram partials of the chunks of one tensor are summed in a fixed order (a float64 cumulative
sum over the chunks, differenced at the tensor boundaries): no atomics, bit-reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .combine import _acc, _check, acc_dtype, launch_config, unpack_upper, want_mask
from .limits import ALIGN, padded_offsets, padded_size
from .triton_kernels import TABLE_COLUMNS, combine_bwd, combine_fwd

__all__ = ["ALIGN", "MAX_TENSORS_PER_LAUNCH", "ChunkTable", "chunk_table", "padded_size", "segment_offsets",
           "segmented_combine", "segmented_combine_grad"]  # fmt: skip

#: most tensors one segmented launch reads weight gradients from (the kernel unrolls one branch
#: per tensor; more tensors are split over launches by the caller)
MAX_TENSORS_PER_LAUNCH = 32


def segment_offsets(sizes: Sequence[int]) -> list[int]:
    """Start of each segment, plus the total padded length (length L + 1)."""
    return padded_offsets(list(sizes))


@dataclass(frozen=True)
class ChunkTable:
    """Programs of one segmented launch. ``table``: (programs, 6) int64 rows ``[start, end, row,
    tensor, segment start, size]``; ``bounds``: chunk index where each tensor's chunks begin, plus
    the total (length T + 1); ``length``: the padded flat length the launch covers."""

    table: torch.Tensor
    bounds: torch.Tensor
    length: int
    block: int
    num_warps: int

    @property
    def num_programs(self) -> int:
        return int(self.table.shape[0])

    @property
    def num_tensors(self) -> int:
        return int(self.bounds.numel()) - 1


def chunk_table(
    sizes: Sequence[int],
    rows: Sequence[int],
    device: torch.device | str,
    dtype: torch.dtype = torch.float32,
    block: int | None = None,
) -> ChunkTable:
    """The chunks of tensors of ``sizes`` elements stored in padded segments back to back, tensor L
    using coefficient row ``rows[L]``."""
    if len(sizes) != len(rows):
        raise ValueError(f"chunk_table: {len(sizes)} sizes but {len(rows)} rows")
    if len(sizes) > MAX_TENSORS_PER_LAUNCH:
        raise ValueError(f"chunk_table: {len(sizes)} tensors, at most {MAX_TENSORS_PER_LAUNCH} per launch")
    default_block, warps = launch_config(dtype, max(sizes, default=1))
    block = block or default_block
    if block % ALIGN:
        raise ValueError(f"chunk_table: block {block} is not a multiple of {ALIGN}")
    offsets = segment_offsets(sizes)
    entries: list[list[int]] = []
    bounds = [0]
    for index, (size, row) in enumerate(zip(sizes, rows)):
        seg, seg_end = offsets[index], offsets[index + 1]
        for s in range(seg, seg_end, block):
            entries.append([s, min(s + block, seg_end), row, index, seg, size])
        bounds.append(len(entries))
    table = torch.tensor(entries, dtype=torch.int64).reshape(-1, TABLE_COLUMNS)
    return ChunkTable(
        table=table.to(device),
        bounds=torch.tensor(bounds, dtype=torch.int64, device=device),
        length=offsets[-1],
        block=block,
        num_warps=warps,
    )


def _coefficients(coefficients: torch.Tensor, vertices: Sequence[torch.Tensor]) -> torch.Tensor:
    return coefficients.to(device=vertices[0].device, dtype=acc_dtype(vertices[0])).contiguous()


def _check_layout(vertices: Sequence[torch.Tensor], table: ChunkTable, what: str) -> None:
    _check(list(vertices), what)
    for i, v in enumerate(vertices):
        if v.ndim != 1 or v.numel() != table.length or v.stride(0) != 1:
            raise ValueError(
                f"{what}: vertex {i} must be a contiguous flat buffer of {table.length} elements "
                f"(the table's padded length), got shape {tuple(v.shape)}"
            )


def segmented_combine(
    coefficients: torch.Tensor,
    vertices: Sequence[torch.Tensor],
    table: ChunkTable,
    with_gram: bool,
    out: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(w, G)``: the flat combined weights (padded layout; padding is Σ_k c_k · padding) and, with
    ``with_gram``, the per-tensor Gram matrices G[L, a, b] = ⟨V_a^L, V_b^L⟩ (T × K × K, fp32/fp64),
    all from one launch. ``out``: a buffer to write w into (reused across steps by the caller).

    ``coefficients``: ``(rows, K)``; ``vertices``: K flat contiguous buffers of ``table.length``."""
    _check_layout(vertices, table, "segmented_combine")
    vs = tuple(vertices)
    k = len(vs)
    c = _coefficients(coefficients, vs)
    out = torch.empty_like(vs[0]) if out is None else out
    programs = table.num_programs
    pairs = k * (k + 1) // 2
    # row 0 stays zero: the cumulative sum below then needs no concatenation
    partials = torch.zeros(programs + 1, pairs, dtype=c.dtype, device=vs[0].device) if with_gram else c
    if programs:
        combine_fwd[(programs,)](
            out, c, vs, partials[1:] if with_gram else c, out.numel(), table.table,
            K=k, WRITE_OUT=True, GRAM=with_gram, SEGMENTED=True, ACC=_acc(vs[0]), BLOCK=table.block,
            num_warps=table.num_warps,
        )  # fmt: skip
    if not with_gram:
        return out, None
    running = torch.cumsum(partials, 0, dtype=torch.float64).index_select(0, table.bounds)
    per_tensor = (running[1:] - running[:-1]).to(c.dtype)
    return out, unpack_upper(per_tensor, k)


def segmented_combine_grad(
    coefficients: torch.Tensor,
    weight_grads: Sequence[torch.Tensor | None] | None,
    lincomb: torch.Tensor | None,
    vertices: Sequence[torch.Tensor],
    table: ChunkTable,
    wanted: Sequence[bool] | None = None,
    out: torch.Tensor | None = None,
) -> list[torch.Tensor | None]:
    """The K flat vertex gradients ∂/∂V_k^L = c[row(L), k] g^L + Σ_m A[L, k, m] V_m^L in one launch.

    ``weight_grads``: the T per-tensor weight gradients (any shape of the tensor's numel; None for
    a tensor that got none), or None when only the Gram term applies; ``lincomb`` A: (T, K, K) or
    None (not both None). ``wanted[k]`` False skips vertex k (returned as None). ``out``: a
    (K, length) buffer to write into (reused across steps by the caller)."""
    _check_layout(vertices, table, "segmented_combine_grad")
    if weight_grads is None and lincomb is None:
        raise ValueError("segmented_combine_grad needs the weight gradients, the Gram term, or both")
    vs = tuple(vertices)
    k = len(vs)
    c = _coefficients(coefficients, vs)
    if lincomb is not None and tuple(lincomb.shape) != (table.num_tensors, k, k):
        raise ValueError(
            f"segmented_combine_grad: lincomb has shape {tuple(lincomb.shape)}, "
            f"expected ({table.num_tensors}, {k}, {k})"
        )
    gs: tuple[torch.Tensor, ...] = (vs[0],)
    if weight_grads is not None:
        if len(weight_grads) != table.num_tensors:
            raise ValueError(
                f"segmented_combine_grad: {len(weight_grads)} weight gradients for "
                f"{table.num_tensors} tensors"
            )
        sizes = (
            table.table[table.bounds[:-1].cpu(), 5].tolist() if any(g is None for g in weight_grads) else None
        )
        gs = tuple(
            (g if g.is_contiguous() else g.contiguous())
            if g is not None
            else torch.zeros(int(sizes[i]), dtype=vs[0].dtype, device=vs[0].device)  # type: ignore[index]
            for i, g in enumerate(weight_grads)
        )
    a = c if lincomb is None else lincomb.to(device=vs[0].device, dtype=c.dtype).contiguous()
    mask = want_mask(None if wanted is None else list(wanted), k)
    if mask == 0:
        return [None] * k
    buffer = torch.empty(k, table.length, dtype=vs[0].dtype, device=vs[0].device) if out is None else out
    grads = [buffer[i] for i in range(k)]
    if table.num_programs:
        combine_bwd[(table.num_programs,)](
            tuple(grads), gs, c, a, vs, table.length, table.table,
            K=k, T=len(gs), WANT=mask, HAS_G=weight_grads is not None, HAS_A=lincomb is not None,
            SEGMENTED=True, ACC=_acc(vs[0]), BLOCK=table.block, num_warps=table.num_warps,
        )  # fmt: skip
    return [g if (mask >> i) & 1 else None for i, g in enumerate(grads)]
