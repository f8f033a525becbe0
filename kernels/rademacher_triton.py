"""Triton kernels of :mod:`subspace_param.kernels.rademacher` (imported lazily, needs triton)."""

import triton
import triton.language as tl


@triton.jit
def _mix(x):
    x = x ^ (x >> 16)
    x = x * 0x21F0AAAD
    x = x ^ (x >> 15)
    x = x * 0x735A2D97
    return x ^ (x >> 15)


@triton.jit
def _row_key(rows, s0, s2):
    # rows: [R] int64 -> [R] uint32: mix(lo ⊕ s0), and for rows ≥ 2³² also ⊕ mix(hi ⊕ s2)
    rows = rows.to(tl.int64)
    lo = rows.to(tl.uint32)  # truncation: the low word
    hi = (rows >> 32).to(tl.uint32)
    return _mix(lo ^ s0) ^ tl.where(hi != 0, _mix(hi ^ s2), 0)


@triton.jit
def _signs(rows, words, s0, s1, s2):
    # rows: [R] int64, words: [W] uint32 -> ±1.0 of shape [R, W, 32]
    row_key = _row_key(rows, s0, s2)
    col_key = _mix(words ^ s1)
    w = _mix(row_key[:, None] ^ col_key[None, :])
    bit = tl.arange(0, 32).to(tl.uint32)
    b = (w[:, :, None] >> bit[None, None, :]) & 1
    return b.to(tl.float32) * 2.0 - 1.0


@triton.jit
def matvec_kernel(
    omega_ptr, out_ptr, row_start, n_rows, dim, s0, s1, s2, scale,
    BLOCK_R: tl.constexpr, BLOCK_W: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    local = pid.to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    rows = row_start + local
    acc = tl.zeros([BLOCK_R], dtype=tl.float32)
    n_words = tl.cdiv(dim, 32)
    for w0 in range(0, n_words, BLOCK_W):
        words = w0 + tl.arange(0, BLOCK_W)
        cols = words.to(tl.int64)[:, None] * 32 + tl.arange(0, 32)[None, :]
        om = tl.load(omega_ptr + cols, mask=cols < dim, other=0.0).to(tl.float32)
        signs = _signs(rows, words.to(tl.uint32), s0, s1, s2)
        acc += tl.sum(tl.sum(signs * om[None, :, :], axis=2), axis=1)
    tl.store(out_ptr + local, acc * scale, mask=local < n_rows)


@triton.jit
def rmatvec_kernel(
    grad_ptr, partial_ptr, row_start, n_rows, dim, rows_per_split, s0, s1, s2, scale,
    BLOCK_R: tl.constexpr, BLOCK_W: tl.constexpr,
):  # fmt: skip
    pid_w = tl.program_id(0)
    split = tl.program_id(1).to(tl.int64)
    words = pid_w * BLOCK_W + tl.arange(0, BLOCK_W)
    cols = words.to(tl.int64)[:, None] * 32 + tl.arange(0, 32)[None, :]
    acc = tl.zeros([BLOCK_W, 32], dtype=tl.float32)
    lo = split * rows_per_split
    hi = tl.minimum(lo + rows_per_split, n_rows)
    for r0 in range(lo, hi, BLOCK_R):
        local = r0 + tl.arange(0, BLOCK_R)
        g = tl.load(grad_ptr + local, mask=local < hi, other=0.0).to(tl.float32)
        signs = _signs(row_start + local, words.to(tl.uint32), s0, s1, s2)
        acc += tl.sum(signs * g[:, None, None], axis=0)
    tl.store(partial_ptr + split * dim + cols, acc * scale, mask=cols < dim)
