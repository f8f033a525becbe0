"""Directions from PCA of a training trajectory (Li et al. 2018, §7).

With checkpoints θ_1 … θ_n and the centre θ_c (the last checkpoint by default), the rows
m_i = θ_i − θ_c are centred (m_i − m̄, as scikit-learn's PCA does in the reference code) and the
top-k right singular vectors of that n × D matrix are the directions (unit norm), computed exactly
from the n × n Gram matrix. ``values`` are the explained-variance ratios λ_k / Σλ; the trajectory's
plane coordinates are (θ_i − θ_c)·u_k.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .base import Directions, State, flatten, load_state, parameter_state, unflatten


def pca_directions(
    checkpoints: Sequence[nn.Module | State | str | Path],
    k: int = 2,
    *,
    center: nn.Module | State | str | Path | None = None,
) -> Directions:
    """Top-k PCA directions of ``checkpoints`` (models, parameter dicts or state_dict files) about
    ``center`` (default: the last checkpoint). ``info`` holds the trajectory's coordinates."""
    if len(checkpoints) < k + 1:
        raise ValueError(
            f"PCA of a trajectory needs at least k + 1 = {k + 1} checkpoints, got {len(checkpoints)}"
        )
    first = load_state(checkpoints[0])
    names = list(first)
    centre_state = load_state(center if center is not None else checkpoints[-1], names)
    c = flatten(centre_state, names)
    rows = torch.stack([flatten(load_state(ck, names), names) - c for ck in checkpoints])  # (n, D)
    centred = rows - rows.mean(0, keepdim=True)
    gram = centred @ centred.T
    evals, evecs = torch.linalg.eigh(gram)  # ascending
    evals, evecs = evals.flip(0), evecs.flip(1)
    total = float(evals.clamp_min(0).sum())
    if total <= 0:
        raise ValueError("the checkpoints coincide: a trajectory without variance has no PCA directions")
    directions, ratios = [], []
    for j in range(k):
        lam = float(evals[j])
        if lam <= 1e-12 * total:
            raise ValueError(
                f"the trajectory spans fewer than k = {k} directions (component {j} has no variance)"
            )
        u = centred.T @ evecs[:, j] / lam**0.5
        u = u / u.norm()
        u = u * torch.sign(u[u.abs().argmax()])  # a fixed sign: the largest entry positive
        directions.append(u)
        ratios.append(lam / total)
    coords = torch.stack([rows @ u for u in directions], 1)  # (n, k)
    like = {n: t for n, t in parameter_state(centre_state).items()}
    return Directions(
        [unflatten(u, like) for u in directions],
        np.asarray(ratios),
        "pca",
        {
            "explained_variance_ratio": ratios,
            "explained_variance": [float(evals[j]) / (len(checkpoints) - 1) for j in range(k)],
            "checkpoints": len(checkpoints),
            "trajectory": coords.numpy().tolist(),
        },
    )
