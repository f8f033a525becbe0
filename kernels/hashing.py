"""The hashed (count-sketch) projection's entries, generated on the fly from a counter-based hash.

Row i of the D × d matrix P has s nonzeros, one in each of s column blocks
B_k = [⌊k·d/s⌋, ⌊(k+1)·d/s⌋) (Kane & Nelson's block construction, so a row's columns are distinct):

    W_k(i) = mix(r(i) ⊕ mix(k ⊕ s₁ʰ)),   column c_k(i) = ⌊k·d/s⌋ + (⌊W_k(i) / 2⌋ mod |B_k|),
    sign σ_k(i) = +1 if W_k(i) is odd else −1,   P[i, c_k(i)] = σ_k(i) / √n(c_k(i))

with r(i) and ``mix`` the row key and finaliser of :mod:`.rademacher` and n(j) the number of rows
with a nonzero in column j, so every column has norm exactly 1. Only n (d integers) is kept.

PyTorch (:func:`columns_and_signs`, :func:`gather_torch`, :func:`scatter_torch`) and Triton
(:func:`gather_triton`, :func:`scatter_triton`: a gather forward, an atomic scatter-add backward)
compute the same integers, so the entries are bit-identical on both.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .rademacher import MASK32, mix32, mix32_int, row_keys, seed_salts

HASH_SALT = 0x68E31DA4
#: rows per chunk of the PyTorch path (s × this many int64 temporaries)
CHUNK_ROWS = 1 << 18


def hash_salts(seed: int) -> tuple[int, int, int]:
    """(s₀, s₁ʰ, s₂): the Rademacher salts with s₁ re-mixed, so P is not a function of S's entries."""
    s0, s1, s2 = seed_salts(seed)
    return s0, mix32_int(s1 ^ HASH_SALT) & 0x7FFFFFFF, s2


def block_bounds(dim: int, nnz: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(lo, width) of the s column blocks as int64 tensors."""
    k = torch.arange(nnz + 1, dtype=torch.int64)
    edges = (k * dim) // nnz
    return edges[:-1].to(device), (edges[1:] - edges[:-1]).to(device)


def columns_and_signs(
    seed: int, row_start: int, row_stop: int, dim: int, nnz: int, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(columns [R, s] int64, signs [R, s] int64 ±1) of rows [row_start, row_stop): the reference."""
    s0, s1, s2 = hash_salts(seed)
    rows = torch.arange(row_start, row_stop, dtype=torch.int64, device=device)
    lo, width = block_bounds(dim, nnz, device)
    k_keys = mix32(torch.arange(nnz, dtype=torch.int64, device=device) ^ s1)
    w = mix32(row_keys(rows, s0, s2)[:, None] ^ k_keys[None, :]) & MASK32
    return lo + (w >> 1) % width, (w & 1) * 2 - 1


def column_counts(
    seed: int, num_rows: int, dim: int, nnz: int, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """n(j): how many of the D rows have a nonzero in column j (int64, length d)."""
    counts = torch.zeros(dim, dtype=torch.int64, device=device)
    for r0 in range(0, num_rows, CHUNK_ROWS):
        cols, _ = columns_and_signs(seed, r0, min(num_rows, r0 + CHUNK_ROWS), dim, nnz, device)
        counts += torch.bincount(cols.reshape(-1), minlength=dim)
    return counts


def gather_torch(
    seed: int, row_start: int, row_stop: int, omega_scaled: torch.Tensor, nnz: int
) -> torch.Tensor:
    """y[i] = Σ_k σ_k(i) · ω'[c_k(i)] for rows [row_start, row_stop) (ω' = ω / √n), in row chunks."""
    out = omega_scaled.new_empty(row_stop - row_start)
    dim = omega_scaled.numel()
    for r0 in range(row_start, row_stop, CHUNK_ROWS):
        r1 = min(row_stop, r0 + CHUNK_ROWS)
        cols, signs = columns_and_signs(seed, r0, r1, dim, nnz, omega_scaled.device)
        torch.sum(
            omega_scaled[cols] * signs.to(omega_scaled.dtype), dim=1, out=out[r0 - row_start : r1 - row_start]
        )
    return out


def scatter_torch(
    seed: int, row_start: int, row_stop: int, grad: torch.Tensor, dim: int, nnz: int
) -> torch.Tensor:
    """ω̄'[j] = Σ_{i, k: c_k(i) = j} σ_k(i) · ḡ[i] (the transpose of :func:`gather_torch`)."""
    acc = grad.new_zeros(dim)
    for r0 in range(row_start, row_stop, CHUNK_ROWS):
        r1 = min(row_stop, r0 + CHUNK_ROWS)
        cols, signs = columns_and_signs(seed, r0, r1, dim, nnz, grad.device)
        vals = signs.to(grad.dtype) * grad[r0 - row_start : r1 - row_start, None]
        acc.index_add_(0, cols.reshape(-1), vals.reshape(-1))
    return acc


def gather_cached(cols: torch.Tensor, signs: torch.Tensor, omega_scaled: torch.Tensor) -> torch.Tensor:
    """:func:`gather_torch` from precomputed (columns, signs) of a segment: ``embedding_bag`` with
    ω' as a one-column table and the signs as per-sample weights (one fused gather-and-sum, ≈ 5×
    faster on CPU than indexing then summing)."""
    table = omega_scaled.unsqueeze(1)
    return F.embedding_bag(cols, table, mode="sum", per_sample_weights=signs.to(omega_scaled.dtype)).squeeze(
        1
    )


def scatter_cached(cols: torch.Tensor, signs: torch.Tensor, grad: torch.Tensor, dim: int) -> torch.Tensor:
    """:func:`scatter_torch` from precomputed (int32 columns, int8 signs) of a segment: a weighted
    ``bincount`` (≈ 1.5× faster on CPU than ``index_add_``)."""
    weights = (signs.to(grad.dtype) * grad[:, None]).reshape(-1)
    return torch.bincount(cols.reshape(-1), weights=weights, minlength=dim).to(grad.dtype)


# ---------------------------------------------------------------------------------------------
# Triton (kernels in hashing_triton.py, imported on first use)
# ---------------------------------------------------------------------------------------------

BLOCK_ROWS = 1024


def _bounds_tensor(dim: int, nnz: int, device: torch.device) -> torch.Tensor:
    lo, width = block_bounds(dim, nnz)
    return torch.stack([lo, width], 1).contiguous().to(device)


def gather_triton(
    seed: int, row_start: int, row_stop: int, omega_scaled: torch.Tensor, nnz: int
) -> torch.Tensor:
    """:func:`gather_torch` in one launch: each program hashes BLOCK_ROWS rows × s in registers."""
    import triton

    from .hashing_triton import gather_kernel

    n = row_stop - row_start
    omega_scaled = omega_scaled.contiguous()
    out = torch.empty(n, device=omega_scaled.device, dtype=torch.float32)
    if n == 0:
        return out.to(omega_scaled.dtype)
    s0, s1, s2 = hash_salts(seed)
    bounds = _bounds_tensor(omega_scaled.numel(), nnz, omega_scaled.device)
    grid = (triton.cdiv(n, BLOCK_ROWS),)
    gather_kernel[grid](omega_scaled, bounds, out, row_start, n, s0, s1, s2, NNZ=nnz, BLOCK_R=BLOCK_ROWS)
    return out.to(omega_scaled.dtype)


def scatter_triton(
    seed: int, row_start: int, row_stop: int, grad: torch.Tensor, dim: int, nnz: int
) -> torch.Tensor:
    """:func:`scatter_torch` in one launch with fp32 atomic adds (the order of the adds, and so the
    last bits of the sum, may differ from run to run)."""
    import triton

    from .hashing_triton import scatter_kernel

    n = row_stop - row_start
    grad = grad.contiguous()
    acc = torch.zeros(dim, device=grad.device, dtype=torch.float32)
    if n == 0:
        return acc.to(grad.dtype)
    s0, s1, s2 = hash_salts(seed)
    bounds = _bounds_tensor(dim, nnz, grad.device)
    grid = (triton.cdiv(n, BLOCK_ROWS),)
    scatter_kernel[grid](grad, bounds, acc, row_start, n, s0, s1, s2, NNZ=nnz, BLOCK_R=BLOCK_ROWS)
    return acc.to(grad.dtype)


def columns_and_signs_triton(
    seed: int, row_start: int, row_stop: int, dim: int, nnz: int, device: torch.device | str
) -> tuple[torch.Tensor, torch.Tensor]:
    """The Triton kernels' (columns, signs), written out (to check them against the reference)."""
    import triton

    from .hashing_triton import entries_kernel

    n = row_stop - row_start
    cols = torch.empty(n, nnz, dtype=torch.int64, device=device)
    signs = torch.empty(n, nnz, dtype=torch.int64, device=device)
    s0, s1, s2 = hash_salts(seed)
    bounds = _bounds_tensor(dim, nnz, torch.device(device))
    entries_kernel[(triton.cdiv(n, BLOCK_ROWS),)](
        bounds, cols, signs, row_start, n, s0, s1, s2, NNZ=nnz, BLOCK_R=BLOCK_ROWS
    )
    return cols, signs
