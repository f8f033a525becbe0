"""Li et al.'s dense projection: i.i.d. N(0, 1) entries, each column scaled to unit norm over
all D rows (not per tensor), stored as a D × d matrix — for small models only."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .base import Projector, Segment, check_dense_fits, register_projector

DEFAULT_MAX_BYTES = 2 * 2**30


@register_projector("dense")
class DenseProjector(Projector):
    """P[:, j] = z_j / ‖z_j‖ with z_j ~ N(0, I_D). Memory D·d floats (refused above ``max_bytes``)."""

    def __init__(
        self, segments: Sequence[Segment], dim: int, *, seed: int, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> None:
        super().__init__(segments, dim, seed=seed)
        check_dense_fits("dense", self.num_rows, dim, max_bytes)
        gen = torch.Generator().manual_seed(seed)
        p = torch.randn(self.num_rows, dim, generator=gen)
        p /= p.norm(dim=0, keepdim=True)
        self.register_buffer("matrix", p, persistent=False)

    def rows(self, omega: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        return self.matrix[start:stop].to(omega.dtype) @ omega
