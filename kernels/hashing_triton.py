"""Triton kernels of :mod:`subspace_param.kernels.hashing` (imported lazily, needs triton)."""

import triton
import triton.language as tl

from .rademacher_triton import _mix, _row_key


@triton.jit
def _entry(row_key, k, bounds_ptr, s1):
    # the column c_k and sign σ_k of rows with keys row_key: ([R] int64, [R] float32)
    w = _mix(row_key ^ _mix((s1 ^ k).to(tl.uint32)))
    lo = tl.load(bounds_ptr + 2 * k)
    width = tl.load(bounds_ptr + 2 * k + 1)
    col = lo + (w >> 1).to(tl.int64) % width
    sign = (w & 1).to(tl.float32) * 2.0 - 1.0
    return col, sign


@triton.jit
def gather_kernel(
    omega_ptr, bounds_ptr, out_ptr, row_start, n_rows, s0, s1, s2,
    NNZ: tl.constexpr, BLOCK_R: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    local = pid.to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    mask = local < n_rows
    key = _row_key(row_start + local, s0, s2)
    acc = tl.zeros([BLOCK_R], dtype=tl.float32)
    for k in tl.static_range(NNZ):
        col, sign = _entry(key, k, bounds_ptr, s1)
        acc += sign * tl.load(omega_ptr + col, mask=mask, other=0.0).to(tl.float32)
    tl.store(out_ptr + local, acc, mask=mask)


@triton.jit
def scatter_kernel(
    grad_ptr, bounds_ptr, acc_ptr, row_start, n_rows, s0, s1, s2,
    NNZ: tl.constexpr, BLOCK_R: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    local = pid.to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    mask = local < n_rows
    key = _row_key(row_start + local, s0, s2)
    g = tl.load(grad_ptr + local, mask=mask, other=0.0).to(tl.float32)
    for k in tl.static_range(NNZ):
        col, sign = _entry(key, k, bounds_ptr, s1)
        tl.atomic_add(acc_ptr + col, sign * g, mask=mask)


@triton.jit
def entries_kernel(
    bounds_ptr, cols_ptr, signs_ptr, row_start, n_rows, s0, s1, s2,
    NNZ: tl.constexpr, BLOCK_R: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    local = pid.to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    mask = local < n_rows
    key = _row_key(row_start + local, s0, s2)
    for k in tl.static_range(NNZ):
        col, sign = _entry(key, k, bounds_ptr, s1)
        tl.store(cols_ptr + local * NNZ + k, col, mask=mask)
        tl.store(signs_ptr + local * NNZ + k, sign.to(tl.int64), mask=mask)
