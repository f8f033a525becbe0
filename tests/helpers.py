"""Shared test helpers: small models and a hand-written float64 reference of the subspace forward."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def small_mlp(dtype: torch.dtype = torch.float64) -> nn.Sequential:
    return nn.Sequential(nn.Linear(7, 11), nn.Tanh(), nn.Linear(11, 5)).to(dtype)


def small_cnn(dtype: torch.dtype = torch.float32) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.Conv2d(6, 5, 3, stride=2),
        nn.GroupNorm(1, 5),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.LayerNorm(5),
        nn.Linear(5, 3),
    ).to(dtype)


def reference_mlp_forward(
    x: torch.Tensor, vertices: list[list[torch.Tensor]], coeffs: torch.Tensor
) -> torch.Tensor:
    """The wrapped ``small_mlp`` by hand: W_L = Σ_k c_k V_L^k, then the functional MLP."""
    w = [sum(coeffs[k] * v[k] for k in range(len(v))) for v in vertices]
    h = torch.tanh(F.linear(x, w[0], w[1]))
    return F.linear(h, w[2], w[3])
