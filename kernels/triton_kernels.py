"""Triton kernels: vertex combination, Gram partial sums, fused vertex gradients.

One program handles up to BLOCK contiguous elements and reads each vertex once:

* ``combine_fwd``:  w = Σ_k c_k V_k, and optionally the partial sums of every Gram entry
  ⟨V_a, V_b⟩ (a ≤ b) of its block (``GRAM``), written to ``partials[pid, pair]``;
* ``combine_bwd``:  ∂/∂V_k = c_k · g (``HAS_G``) + Σ_m A[k, m] · V_m (``HAS_A``), where A carries the
  regulariser's gradient, so the task gradient and the regulariser gradient are one pass.

Two launch layouts share the same code:

* plain (``SEGMENTED=False``): one tensor of n elements, program ``pid`` covers
  ``[pid·BLOCK, min((pid+1)·BLOCK, n))``, one coefficient row, one A;
* segmented (``SEGMENTED=True``): *all* tensors of a model, laid out back to back in one flat buffer
  per vertex. A chunk table gives each program its range ``[start[pid], end[pid])`` (never crossing
  a tensor boundary), its coefficient row ``row[pid]`` (layerwise subspaces have one row per module)
  and its tensor ``tensor[pid]`` (which K × K block of A applies). One launch then covers the whole
  model, and the Gram partials of a program belong to exactly one tensor.

Vertices are passed as a tuple of pointers and the tables as plain integer tensors (no pointer
arrays, no indirect addressing), so the same kernels run under ``TRITON_INTERPRET=1`` on CPU
tensors. Arithmetic is in fp32 (fp64 for fp64 inputs).
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _program_range(pid, n, start_ptr, end_ptr, SEGMENTED: tl.constexpr, BLOCK: tl.constexpr):
    if SEGMENTED:
        start = tl.load(start_ptr + pid)
        end = tl.load(end_ptr + pid)
    else:
        start = pid.to(tl.int64) * BLOCK
        end = n + start * 0  # same type as start
    return start, end


@triton.jit
def combine_fwd(
    out_ptr,
    coeff_ptr,
    vertices,
    partial_ptr,
    n,
    start_ptr,
    end_ptr,
    row_ptr,
    K: tl.constexpr,
    WRITE_OUT: tl.constexpr,
    GRAM: tl.constexpr,
    SEGMENTED: tl.constexpr,
    ACC: tl.constexpr,
    BLOCK: tl.constexpr,
):
    pid = tl.program_id(0)
    start, end = _program_range(pid, n, start_ptr, end_ptr, SEGMENTED, BLOCK)
    offs = start + tl.arange(0, BLOCK)
    mask = offs < end
    if WRITE_OUT:
        if SEGMENTED:
            row = tl.load(row_ptr + pid)
        else:
            row = 0
        acc = tl.zeros([BLOCK], dtype=ACC)
        for k in tl.static_range(K):
            c = tl.load(coeff_ptr + row * K + k).to(ACC)
            acc += c * tl.load(vertices[k] + offs, mask=mask, other=0.0).to(ACC)
        tl.store(out_ptr + offs, acc.to(out_ptr.dtype.element_ty), mask=mask)
    if GRAM:
        p = 0
        for a in tl.static_range(K):
            xa = tl.load(vertices[a] + offs, mask=mask, other=0.0).to(ACC)
            for b in tl.static_range(a, K):
                xb = tl.load(vertices[b] + offs, mask=mask, other=0.0).to(ACC)
                tl.store(partial_ptr + pid * (K * (K + 1) // 2) + p, tl.sum(xa * xb, axis=0))
                p += 1


@triton.jit
def combine_bwd(
    grads,
    grad_ptr,
    coeff_ptr,
    a_ptr,
    vertices,
    n,
    start_ptr,
    end_ptr,
    row_ptr,
    tensor_ptr,
    K: tl.constexpr,
    HAS_G: tl.constexpr,
    HAS_A: tl.constexpr,
    SEGMENTED: tl.constexpr,
    ACC: tl.constexpr,
    BLOCK: tl.constexpr,
):
    pid = tl.program_id(0)
    start, end = _program_range(pid, n, start_ptr, end_ptr, SEGMENTED, BLOCK)
    offs = start + tl.arange(0, BLOCK)
    mask = offs < end
    if SEGMENTED:
        row = tl.load(row_ptr + pid)
        tensor = tl.load(tensor_ptr + pid)
    else:
        row = 0
        tensor = 0
    if HAS_G:
        g = tl.load(grad_ptr + offs, mask=mask, other=0.0).to(ACC)
    for k in tl.static_range(K):
        acc = tl.zeros([BLOCK], dtype=ACC)
        if HAS_G:
            acc += tl.load(coeff_ptr + row * K + k).to(ACC) * g
        if HAS_A:
            for m in tl.static_range(K):
                acc += tl.load(a_ptr + tensor * (K * K) + k * K + m).to(ACC) * tl.load(
                    vertices[m] + offs, mask=mask, other=0.0
                ).to(ACC)
        tl.store(grads[k] + offs, acc.to(grads[k].dtype.element_ty), mask=mask)
