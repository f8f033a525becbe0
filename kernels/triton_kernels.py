"""Triton kernels: vertex combination, Gram partial sums, fused vertex gradients.

One program handles up to BLOCK contiguous elements and reads every byte it needs exactly once:
the K vertices are loaded once into registers and reused for w, the Gram entries and the
gradient terms.

* ``combine_fwd``:  w = Σ_k c_k V_k, and optionally the partial sums of every Gram entry
  ⟨V_a, V_b⟩ (a ≤ b) of its block (``GRAM``), written to ``partials[pid, pair]``;
* ``combine_bwd``:  ∂/∂V_k = c_k · g (``HAS_G``) + Σ_m A[k, m] · V_m (``HAS_A``), where A carries the
  regulariser's gradient, so the task gradient and the regulariser gradient are one pass. The
  vertices are read only when ``HAS_A``; gradients are written only for the vertices in the bit
  mask ``WANT`` (frozen vertices cost nothing).

Two launch layouts share the same code:

* plain (``SEGMENTED=False``): one tensor of n elements, program ``pid`` covers
  ``[pid·BLOCK, min((pid+1)·BLOCK, n))``, one coefficient row, one A;
* segmented (``SEGMENTED=True``): many tensors laid out back to back in one flat buffer per vertex,
  each tensor's segment starting on a multiple of ``ALIGN`` elements and padded to one (so every
  chunk bound is a multiple of ``ALIGN`` and the accesses are 128-bit). Row ``pid`` of an int64
  table ``[start, end, row, tensor, segment start, size]`` gives the program its chunk (never
  crossing a segment), its coefficient row (layerwise subspaces have one per module), its tensor
  (which K × K block of A applies, and which of the ``T`` weight-gradient pointers it reads), and
  where that tensor's segment begins and how many real elements it has. The weight gradients
  arrive as T separate tensors (autograd produces one per weight) and are read in place: no
  concatenation.

Vertices and weight gradients are passed as tuples of pointers and the tables as plain integer
tensors (no pointer arrays, no indirect addressing), so the same kernels run under
``TRITON_INTERPRET=1`` on CPU tensors. Arithmetic is in fp32 (fp64 for fp64 inputs); coefficients
are fp32/fp64 on every dtype. All offsets are int64: tensors past 2³¹ elements are addressed
correctly.
"""

from __future__ import annotations

import triton
import triton.language as tl

#: columns of a segmented launch table
TABLE_COLUMNS = 6
#: the segment alignment the kernels assume (``tl.multiple_of(…, 16)``) is ``limits.ALIGN``


@triton.jit
def _program_range(pid, n, table_ptr, SEGMENTED: tl.constexpr, BLOCK: tl.constexpr):
    if SEGMENTED:
        start = tl.multiple_of(tl.load(table_ptr + pid * 6), 16)
        end = tl.multiple_of(tl.load(table_ptr + pid * 6 + 1), 16)
    else:
        start = pid.to(tl.int64) * BLOCK
        end = n + start * 0  # int64, like start
    return start, end


@triton.jit
def combine_fwd(
    out_ptr,
    coeff_ptr,
    vertices,
    partial_ptr,
    n,
    table_ptr,
    K: tl.constexpr,
    WRITE_OUT: tl.constexpr,
    GRAM: tl.constexpr,
    SEGMENTED: tl.constexpr,
    ACC: tl.constexpr,
    BLOCK: tl.constexpr,
):
    pid = tl.program_id(0)
    start, end = _program_range(pid, n, table_ptr, SEGMENTED, BLOCK)
    offs = start + tl.arange(0, BLOCK)
    mask = offs < end
    xs = ()
    for k in tl.static_range(K):
        xs = xs + (tl.load(vertices[k] + offs, mask=mask, other=0.0).to(ACC),)  # noqa: RUF005 (Triton tuples)
    if WRITE_OUT:
        if SEGMENTED:
            row = tl.load(table_ptr + pid * 6 + 2)
        else:
            row = 0
        acc = tl.zeros([BLOCK], dtype=ACC)
        for k in tl.static_range(K):
            acc += tl.load(coeff_ptr + row * K + k).to(ACC) * xs[k]
        tl.store(out_ptr + offs, acc.to(out_ptr.dtype.element_ty), mask=mask)
    if GRAM:
        p = 0
        for a in tl.static_range(K):
            for b in tl.static_range(a, K):
                tl.store(
                    partial_ptr + pid.to(tl.int64) * (K * (K + 1) // 2) + p, tl.sum(xs[a] * xs[b], axis=0)
                )
                p += 1


@triton.jit
def combine_bwd(
    grads,
    weight_grads,
    coeff_ptr,
    a_ptr,
    vertices,
    n,
    table_ptr,
    K: tl.constexpr,
    T: tl.constexpr,
    WANT: tl.constexpr,
    HAS_G: tl.constexpr,
    HAS_A: tl.constexpr,
    SEGMENTED: tl.constexpr,
    ACC: tl.constexpr,
    BLOCK: tl.constexpr,
):
    pid = tl.program_id(0)
    start, end = _program_range(pid, n, table_ptr, SEGMENTED, BLOCK)
    offs = start + tl.arange(0, BLOCK)
    mask = offs < end
    if SEGMENTED:
        row = tl.load(table_ptr + pid * 6 + 2)
        tensor = tl.load(table_ptr + pid * 6 + 3)
    else:
        row = 0
        tensor = 0
    xs = ()
    if HAS_A:
        for m in tl.static_range(K):
            xs = xs + (tl.load(vertices[m] + offs, mask=mask, other=0.0).to(ACC),)  # noqa: RUF005
    g = tl.zeros([BLOCK], dtype=ACC)
    if HAS_G:
        if SEGMENTED:
            seg = tl.multiple_of(tl.load(table_ptr + pid * 6 + 4), 16)
            size = tl.load(table_ptr + pid * 6 + 5)
            local = offs - seg
            for t in tl.static_range(T):  # one branch runs: the pointer of this program's tensor
                if tensor == t:
                    if size % 16 == 0:  # no padding: the chunk mask is exact, and 128-bit
                        g = tl.load(weight_grads[t] + local, mask=mask, other=0.0).to(ACC)
                    else:
                        g = tl.load(weight_grads[t] + local, mask=local < size, other=0.0).to(ACC)
        else:
            g = tl.load(weight_grads[0] + offs, mask=mask, other=0.0).to(ACC)
    for k in tl.static_range(K):
        if (WANT >> k) & 1:
            acc = tl.zeros([BLOCK], dtype=ACC)
            if HAS_G:
                acc += tl.load(coeff_ptr + row * K + k).to(ACC) * g
            if HAS_A:
                for m in tl.static_range(K):
                    acc += tl.load(a_ptr + tensor * (K * K) + k * K + m).to(ACC) * xs[m]
            tl.store(grads[k] + offs, acc.to(grads[k].dtype.element_ty), mask=mask)
