"""Fastfood projection (Le et al. 2013), in the stacked-block form.

With d' = 2^⌈log₂ d⌉ and ⌈D/d'⌉ blocks b, each with its own sign vector B_b ∈ {±1}^{d'},
permutation Π_b and Gaussian diagonal G_b,

    (P ω)[b·d' : (b+1)·d'] = H G_b Π_b H B_b pad(ω, d') / (√(d'·ΣG_b²) · √(D/d'))

with H the unnormalised ±1 Walsh–Hadamard transform, truncated to D rows. Every column of each
block has norm exactly √(d'·ΣG_b²), so the columns of P have unit norm exactly when d' divides D
and approximately (± a few %) otherwise. Cost O(D log d') per pass, memory 3 values per row.
A segment touches only the blocks that overlap its rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .base import Projector, Segment, register_projector


def fwht(x: torch.Tensor) -> torch.Tensor:
    """Unnormalised fast Walsh–Hadamard transform over the last dim (a power of two): x ↦ H x."""
    n = x.shape[-1]
    if n & (n - 1):
        raise ValueError(f"fwht needs a power-of-two length, got {n}")
    shape = x.shape
    h = 1
    while h < n:
        y = x.reshape(*shape[:-1], n // (2 * h), 2, h)
        a, b = y[..., 0, :], y[..., 1, :]
        x = torch.stack((a + b, a - b), dim=-2)
        h *= 2
    return x.reshape(shape)


@register_projector("fastfood")
class FastfoodProjector(Projector):
    """Stacked Fastfood blocks H G Π H B, normalised to unit-length columns."""

    def __init__(self, segments: Sequence[Segment], dim: int, *, seed: int) -> None:
        super().__init__(segments, dim, seed=seed)
        self.block = 1 << max(1, math.ceil(math.log2(dim)))
        self.num_blocks = max(1, math.ceil(self.num_rows / self.block))
        gen = torch.Generator().manual_seed(seed)
        nb, n = self.num_blocks, self.block
        signs = torch.randint(0, 2, (nb, n), generator=gen).float() * 2 - 1
        perm = torch.stack([torch.randperm(n, generator=gen) for _ in range(nb)])
        gauss = torch.randn(nb, n, generator=gen)
        block_norm = (n * gauss.square().sum(1)).sqrt()
        scale = 1.0 / (block_norm * math.sqrt(self.num_rows / n))
        self.register_buffer("signs", signs, persistent=False)
        self.register_buffer("perm", perm, persistent=False)
        self.register_buffer("gauss", gauss * scale[:, None], persistent=False)

    def rows(self, omega: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        if stop <= start:
            return omega.new_zeros(0)
        n = self.block
        b0, b1 = start // n, (stop - 1) // n + 1
        x = torch.nn.functional.pad(omega, (0, n - self.dim))
        z = fwht(self.signs[b0:b1].to(omega.dtype) * x)  # [blocks, n]
        z = torch.gather(z, 1, self.perm[b0:b1])
        z = fwht(self.gauss[b0:b1].to(omega.dtype) * z)
        return z.reshape(-1)[start - b0 * n : stop - b0 * n]
