"""Li et al.'s sparse random projection (scikit-learn's ``SparseRandomProjection`` layout).

Per covered tensor l with D_l rows, each entry of its row block is non-zero with probability
s_l = 1/√D_l (the "auto" density, taken per layer as in the reference), with a random sign; the
columns are then scaled to unit norm over all D rows (the reference divides ω by the global
column norms instead, which is the same map). Memory: nnz ≈ d·Σ_l √D_l (value + two indices).
A column that received no non-zero at all gets one ±1 at a random row, so every column has norm 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .base import Projector, Segment, register_projector


@register_projector("sparse")
class SparseProjector(Projector):
    """Column-normalised sparse ±1 matrix, stored as (row, column, value) triplets per segment."""

    def __init__(
        self, segments: Sequence[Segment], dim: int, *, seed: int, density: float | None = None
    ) -> None:
        super().__init__(segments, dim, seed=seed)
        gen = torch.Generator().manual_seed(seed)
        triplets = []
        for start, stop in self.segments:
            n = stop - start
            s = density if density is not None else 1.0 / math.sqrt(n)
            if not 0 < s <= 1:
                raise ValueError(f"density must be in (0, 1], got {s}")
            total = n * dim
            nnz = int(torch.binomial(torch.tensor([float(total)]), torch.tensor([s]), generator=gen).item())
            if total <= 2**26:  # exact sampling without replacement
                flat = torch.randperm(total, generator=gen)[:nnz]
            else:  # huge blocks: with replacement, duplicates merged (a relative 1/total difference)
                flat = torch.unique(torch.randint(total, (nnz,), generator=gen))
            rows, cols = flat // dim + start, flat % dim
            signs = torch.randint(0, 2, (len(flat),), generator=gen).float() * 2 - 1
            triplets.append([rows, cols, signs])
        counts = torch.zeros(dim)
        for _, cols, vals in triplets:
            counts.index_add_(0, cols, vals.square())
        empty = (counts == 0).nonzero().flatten()
        if len(empty) and triplets:
            rows = torch.randint(self.num_rows, (len(empty),), generator=gen)
            for i, (start, stop) in enumerate(self.segments):
                here = (rows >= start) & (rows < stop)
                t = triplets[i]
                t[0] = torch.cat([t[0], rows[here]])
                t[1] = torch.cat([t[1], empty[here]])
                t[2] = torch.cat([t[2], torch.ones(int(here.sum()))])
            counts[empty] = 1
        inv_norm = counts.rsqrt()
        for i, (rows, cols, vals) in enumerate(triplets):
            self.register_buffer(f"rows_{i}", rows - self.segments[i][0], persistent=False)
            self.register_buffer(f"cols_{i}", cols, persistent=False)
            self.register_buffer(f"vals_{i}", vals * inv_norm[cols], persistent=False)
        self._index = {seg: i for i, seg in enumerate(self.segments)}

    @property
    def nnz(self) -> int:
        return sum(int(getattr(self, f"vals_{i}").numel()) for i in range(len(self.segments)))

    def rows(self, omega: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        i = self._index.get((start, stop))
        if i is None:
            raise ValueError(f"sparse projector: rows [{start}, {stop}) are not one of its segments")
        r, c, v = getattr(self, f"rows_{i}"), getattr(self, f"cols_{i}"), getattr(self, f"vals_{i}")
        out = omega.new_zeros(stop - start)
        return out.index_add(0, r, v.to(omega.dtype) * omega[c])
