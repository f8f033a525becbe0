"""Greydanus's ω-space: θ = P ω with P the Q factor of [θ_init | N(0, 1)^{D×(d−1)}].

P has exactly orthonormal columns, its first column is ±θ_init/‖θ_init‖ and the other d − 1
are orthogonal to θ_init; training starts at ω₀ = Pᵀθ_init (= ±‖θ_init‖ e₁), so θ = θ_init.
There is no separate θ0: this is Li et al.'s construction plus one trainable direction along the
initialisation (a global rescale). The QR costs O(D·d²) in float64; P is stored (D·d floats).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .base import Projector, Segment, check_dense_fits, register_projector
from .dense import DEFAULT_MAX_BYTES


@register_projector("orthonormal")
class OrthonormalProjector(Projector):
    """P = Q of QR([θ_init | randn]); requires ``theta_init`` (the flattened covered tensors)."""

    includes_init = True

    def __init__(
        self,
        segments: Sequence[Segment],
        dim: int,
        *,
        seed: int,
        theta_init: torch.Tensor,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        super().__init__(segments, dim, seed=seed)
        if dim > self.num_rows:
            raise ValueError(f"method='orthonormal' needs dim ≤ D = {self.num_rows}, got dim={dim}")
        check_dense_fits("orthonormal", self.num_rows, dim, max_bytes, itemsize=12)  # fp64 QR + fp32 copy
        theta = theta_init.detach().to("cpu", torch.float64).reshape(-1, 1)
        if not bool(theta.norm() > 0):
            raise ValueError("method='orthonormal' needs a non-zero initial point θ_init")
        gen = torch.Generator().manual_seed(seed)
        a = torch.cat([theta, torch.randn(self.num_rows, dim - 1, generator=gen, dtype=torch.float64)], 1)
        q, _ = torch.linalg.qr(a)
        self.register_buffer("matrix", q.to(torch.float32), persistent=False)
        self._omega0 = (q.T @ theta).reshape(-1)

    def rows(self, omega: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        return self.matrix[start:stop].to(omega.dtype) @ omega

    def initial_omega(self, theta_init: torch.Tensor) -> torch.Tensor:
        return self._omega0.to(theta_init.dtype)
