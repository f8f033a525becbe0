"""Triton kernels: vertex combination, per-tensor Gram partial sums, fused vertex gradients.

One program handles BLOCK contiguous elements of one tensor and reads each vertex once:

* ``combine_fwd``:  w = Σ_k c_k V_k, and optionally the partial sums of every Gram entry
  ⟨V_a, V_b⟩ (a ≤ b) of its block (``GRAM``), written to ``partials[pid, pair]``;
* ``combine_bwd``:  ∂/∂V_k = c_k · g (``HAS_G``) + Σ_m A[k, m] · V_m (``HAS_A``), where A carries the
  regulariser's gradient, so the task gradient and the regulariser gradient are one pass.

Vertices are passed as a tuple of pointers (plain arguments, no pointer arrays), so the same kernels
run under ``TRITON_INTERPRET=1`` on CPU tensors. Arithmetic is in fp32 (fp64 for fp64 inputs).
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def combine_fwd(
    out_ptr,
    coeff_ptr,
    vertices,
    partial_ptr,
    n,
    K: tl.constexpr,
    WRITE_OUT: tl.constexpr,
    GRAM: tl.constexpr,
    ACC: tl.constexpr,
    BLOCK: tl.constexpr,
):
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    if WRITE_OUT:
        acc = tl.zeros([BLOCK], dtype=ACC)
        for k in tl.static_range(K):
            c = tl.load(coeff_ptr + k).to(ACC)
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
    K: tl.constexpr,
    HAS_G: tl.constexpr,
    HAS_A: tl.constexpr,
    ACC: tl.constexpr,
    BLOCK: tl.constexpr,
):
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    if HAS_G:
        g = tl.load(grad_ptr + offs, mask=mask, other=0.0).to(ACC)
    for k in tl.static_range(K):
        acc = tl.zeros([BLOCK], dtype=ACC)
        if HAS_G:
            acc += tl.load(coeff_ptr + k).to(ACC) * g
        if HAS_A:
            for m in tl.static_range(K):
                acc += tl.load(a_ptr + k * K + m).to(ACC) * tl.load(
                    vertices[m] + offs, mask=mask, other=0.0
                ).to(ACC)
        tl.store(grads[k] + offs, acc.to(grads[k].dtype.element_ty), mask=mask)
