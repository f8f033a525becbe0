"""A Rademacher matrix generated on the fly from a counter-based hash, never stored.

Entry (i, j) of the D × d matrix S is ±1, read from bit ``j mod 32`` of the 32-bit word

    W(i, ⌊j / 32⌋) = mix(r(i) ⊕ mix(⌊j/32⌋ ⊕ s₁))                 (+1 where the bit is set)
    r(i) = mix(lo(i) ⊕ s₀), ⊕ mix(hi(i) ⊕ s₂) when hi(i) = ⌊i / 2³²⌋ ≠ 0

with ``mix`` a two-multiply integer finaliser (constants below 2³¹, so the PyTorch path can do
exact int64 arithmetic without overflow and match the Triton path's uint32 arithmetic bit for
bit) and (s₀, s₁, s₂) derived from the seed. Rows past 2³² mix in their high word, so signs never
repeat (all index arithmetic is 64-bit). The projection uses P = S / √D, whose columns have
norm exactly 1 over the D rows with no normalisation pass.

Two implementations of the same entries:

* :func:`rows_matvec_torch` / :func:`rows_rmatvec_torch` — PyTorch, in row chunks (any device);
* :func:`rows_matvec_triton` / :func:`rows_rmatvec_triton` — Triton kernels that generate each
  tile of S in registers: forward y = S[rows] ω, backward ω̄ = S[rows]ᵀ g split over row blocks
  into partial sums reduced in a fixed order (deterministic, no atomics).
"""

from __future__ import annotations

import os

import torch

MASK32 = 0xFFFFFFFF
MUL1 = 0x21F0AAAD
MUL2 = 0x735A2D97
SALT0 = 0x5BD1E995
SALT1 = 0x1B873593
WORD_BITS = 32
MAX_ROWS = 2**62
SALT2 = 0x2545F491


def mix32_int(x: int) -> int:
    """The finaliser on a Python int (used for the seed salts)."""
    x &= MASK32
    x ^= x >> 16
    x = (x * MUL1) & MASK32
    x ^= x >> 15
    x = (x * MUL2) & MASK32
    return x ^ (x >> 15)


def seed_salts(seed: int) -> tuple[int, int, int]:
    """(s₀, s₁, s₂): three 31-bit salts from a 64-bit seed."""
    lo, hi = seed & MASK32, (seed >> 32) & MASK32
    s0 = mix32_int(lo ^ SALT0) ^ mix32_int(hi ^ SALT1)
    s1 = mix32_int(s0 ^ SALT1 ^ mix32_int(hi))
    s2 = mix32_int(s1 ^ SALT2)
    return s0 & 0x7FFFFFFF, s1 & 0x7FFFFFFF, s2 & 0x7FFFFFFF


def row_keys(rows: torch.Tensor, s0: int, s2: int) -> torch.Tensor:
    """r(i) for an int64 tensor of row indices (see the module docstring)."""
    key = mix32((rows & MASK32) ^ s0)
    hi = rows >> 32
    return torch.where(hi != 0, key ^ mix32(hi ^ s2), key)


def mix32(x: torch.Tensor) -> torch.Tensor:
    """The finaliser on an int64 tensor holding values in [0, 2³²)."""
    x = x ^ (x >> 16)
    x = (x * MUL1) & MASK32
    x = x ^ (x >> 15)
    x = (x * MUL2) & MASK32
    return x ^ (x >> 15)


_BYTE_SIGNS: dict[torch.device, torch.Tensor] = {}


def _byte_signs(device: torch.device) -> torch.Tensor:
    """[256, 8] table: row b holds the ±1 of the 8 bits of byte b (bit 0 first)."""
    if device not in _BYTE_SIGNS:
        bits = (torch.arange(256)[:, None] >> torch.arange(8)) & 1
        _BYTE_SIGNS[device] = (bits * 2 - 1).to(torch.float32).to(device)
    return _BYTE_SIGNS[device]


def sign_block(
    seed: int, row_start: int, row_stop: int, dim: int, device: torch.device | str
) -> torch.Tensor:
    """S[row_start:row_stop, :dim] as a float32 tensor of ±1 (the reference for every path).

    Bits are unpacked a byte at a time through a 256-entry table (16× faster than shifting).
    """
    device = torch.device(device)
    s0, s1, s2 = seed_salts(seed)
    rows = torch.arange(row_start, row_stop, dtype=torch.int64, device=device)
    words = torch.arange((dim + WORD_BITS - 1) // WORD_BITS, dtype=torch.int64, device=device)
    w = mix32(row_keys(rows, s0, s2)[:, None] ^ mix32(words ^ s1)[None, :])
    byte = torch.stack([(w >> shift) & 255 for shift in (0, 8, 16, 24)], dim=-1)
    return _byte_signs(device)[byte].reshape(len(rows), -1)[:, :dim]


def _chunk_rows(dim: int, budget: int = 1 << 22) -> int:
    return max(1, budget // max(dim, 1))


def rows_matvec_torch(seed: int, row_start: int, row_stop: int, omega: torch.Tensor) -> torch.Tensor:
    """y = S[row_start:row_stop] ω (unscaled), generated in chunks of ≈ 4M entries.

    The output is allocated once and filled in place: keeping small per-chunk results alive
    between the large temporaries fragments the CPU heap (RSS grew by GBs in a measurement).
    """
    chunk = _chunk_rows(omega.numel())
    out = omega.new_empty(row_stop - row_start)
    for r0 in range(row_start, row_stop, chunk):
        r1 = min(row_stop, r0 + chunk)
        block = sign_block(seed, r0, r1, omega.numel(), omega.device).to(omega.dtype)
        torch.mv(block, omega, out=out[r0 - row_start : r1 - row_start])
    return out


def rows_rmatvec_torch(
    seed: int, row_start: int, row_stop: int, grad: torch.Tensor, dim: int
) -> torch.Tensor:
    """ω̄ = S[row_start:row_stop]ᵀ g (unscaled), generated in chunks."""
    chunk = _chunk_rows(dim)
    acc = grad.new_zeros(dim)
    for r0 in range(row_start, row_stop, chunk):
        r1 = min(row_stop, r0 + chunk)
        acc += grad[r0 - row_start : r1 - row_start] @ sign_block(seed, r0, r1, dim, grad.device).to(
            grad.dtype
        )
    return acc


# ---------------------------------------------------------------------------------------------
# Triton (kernels in rademacher_triton.py, imported on first use)
# ---------------------------------------------------------------------------------------------


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _blocks() -> tuple[int, int]:
    return (256, 8) if _interpreting() else (64, 4)


def rows_matvec_triton(
    seed: int, row_start: int, row_stop: int, omega: torch.Tensor, scale: float = 1.0
) -> torch.Tensor:
    """y = scale · S[row_start:row_stop] ω, one launch, S generated in registers (fp32 accumulation)."""
    import triton

    from .rademacher_triton import matvec_kernel

    n = row_stop - row_start
    omega = omega.contiguous()
    out = torch.empty(n, device=omega.device, dtype=torch.float32)
    if n == 0:
        return out.to(omega.dtype)
    s0, s1, s2 = seed_salts(seed)
    block_r, block_w = _blocks()
    grid = (triton.cdiv(n, block_r),)
    matvec_kernel[grid](
        omega, out, row_start, n, omega.numel(), s0, s1, s2, scale, BLOCK_R=block_r, BLOCK_W=block_w
    )
    return out.to(omega.dtype)


def rows_rmatvec_triton(
    seed: int, row_start: int, row_stop: int, grad: torch.Tensor, dim: int, scale: float = 1.0
) -> torch.Tensor:
    """ω̄ = scale · S[row_start:row_stop]ᵀ g: programs over (column words × row splits), each
    writing a partial d-vector; the partials are summed in a fixed order (deterministic)."""
    import triton

    from .rademacher_triton import rmatvec_kernel

    n = row_stop - row_start
    grad = grad.contiguous()
    block_r, block_w = _blocks()
    n_word_blocks = triton.cdiv(triton.cdiv(dim, 32), block_w)
    # enough programs to fill the device even when d is small (split the rows), ≥ 8 row blocks each
    target = 1 if _interpreting() else max(1, 1024 // n_word_blocks)
    splits = max(1, min(target, triton.cdiv(n, 8 * block_r)))
    rows_per_split = triton.cdiv(max(n, 1), splits)
    partial = torch.empty(splits, dim, device=grad.device, dtype=torch.float32)
    s0, s1, s2 = seed_salts(seed)
    grid = (n_word_blocks, splits)
    rmatvec_kernel[grid](
        grad, partial, row_start, n, dim, rows_per_split, s0, s1, s2, scale, BLOCK_R=block_r, BLOCK_W=block_w
    )
    return partial.sum(0).to(grad.dtype)
