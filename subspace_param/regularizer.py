"""The cosine-similarity regulariser of Wortsman et al. (2021).

For a vertex pair (i, j) and covered tensors L (default: the weights, i.e. tensors with ≥ 2 dims —
conv, linear and embedding weights including the classifier; biases and norm affines excluded,
as in the reference which regularises conv weights only):

    global:     cos²(V_i, V_j) = (Σ_L ⟨V_i^L, V_j^L⟩)² / (Σ_L ‖V_i^L‖² · Σ_L ‖V_j^L‖²)
    per layer:  (1/|L|) Σ_L ⟨V_i^L, V_j^L⟩² / (‖V_i^L‖² ‖V_j^L‖²)

and R = β · mean over the chosen pairs (one random pair per step by default, or all pairs).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

EPS = 1e-12


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.dot(a.reshape(-1), b.reshape(-1))


def pair_cosine_squared(
    vertices: Sequence[Sequence[torch.Tensor]], i: int, j: int, per_layer: bool = False
) -> torch.Tensor:
    """cos²(V_i, V_j) over tensors; ``vertices[L][k]`` is vertex k of tensor L."""
    if not vertices:
        raise ValueError("the regulariser covers no tensor")
    acc = torch.float64 if vertices[0][i].dtype == torch.float64 else torch.float32
    dots, ni, nj = (
        torch.stack([_dot(v[a], v[b]).to(acc) for v in vertices]) for a, b in ((i, j), (i, i), (j, j))
    )
    if per_layer:
        return (dots.square() / (ni * nj).clamp_min(EPS)).mean()
    return dots.sum().square() / (ni.sum() * nj.sum()).clamp_min(EPS)


def cosine_regularizer(
    vertices: Sequence[Sequence[torch.Tensor]],
    pairs: Sequence[tuple[int, int]],
    per_layer: bool = False,
) -> torch.Tensor:
    """Mean of :func:`pair_cosine_squared` over ``pairs``."""
    if not pairs:
        raise ValueError("the regulariser needs at least one vertex pair (K ≥ 2)")
    terms = [pair_cosine_squared(vertices, i, j, per_layer) for i, j in pairs]
    return torch.stack(terms).mean()


def is_weight(name: str, tensor: torch.Tensor) -> bool:
    """Default coverage: tensors with at least two dimensions."""
    return tensor.dim() >= 2
