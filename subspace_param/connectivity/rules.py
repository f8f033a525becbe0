"""Interpolation rules between two samples of neurons (Anokhin & Yarotsky 2020, Eq. 5 and 6).

The rows of ``s1`` and ``s2`` (same shape) are neurons: samples of a layer's neuron distribution.

* ``lin``:  S(t) = (1 − t) S1 + t S2
* ``arc``:  S(t) = m + cos(πt/2) (S1 − m) + sin(πt/2) (S2 − m), m the mean of the 2n pooled rows —
  for i.i.d. rows of a common distribution the mean and covariance stay those of the endpoints
  at every t (cos² + sin² = 1), where ``lin`` shrinks the centred covariance by (1−t)² + t².
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

Rule = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]


def lin(s1: torch.Tensor, s2: torch.Tensor, t: float) -> torch.Tensor:
    """(1 − t) s1 + t s2."""
    return torch.lerp(s1, s2, float(t))


def pooled_mean(s1: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
    """The mean neuron of the 2n pooled rows (for 1-D inputs: the mean of the two vectors' entries)."""
    if s1.ndim == 1:
        return torch.cat([s1, s2]).mean()
    return torch.cat([s1, s2]).mean(0, keepdim=True)


def arc(s1: torch.Tensor, s2: torch.Tensor, t: float) -> torch.Tensor:
    """m + cos(πt/2)(s1 − m) + sin(πt/2)(s2 − m) with m the pooled row mean."""
    if t == 0:  # exact endpoints (cos(π/2) is 6e-17, not 0, in floating point)
        return s1.clone()
    if t == 1:
        return s2.clone()
    m = pooled_mean(s1, s2)
    c, s = math.cos(math.pi * t / 2), math.sin(math.pi * t / 2)
    return m + c * (s1 - m) + s * (s2 - m)


RULES: dict[str, Rule] = {"lin": lin, "arc": arc}


def get_rule(name: str | Rule) -> Rule:
    if callable(name):
        return name
    if name not in RULES:
        raise ValueError(f"unknown rule {name!r}; choose one of {sorted(RULES)}")
    return RULES[name]
