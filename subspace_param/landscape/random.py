"""Random directions with Li et al. 2018's normalisation ("Visualizing the Loss Landscape").

d ~ N(0, I) per parameter tensor, then, for every tensor θ of two or more dimensions:

* ``filter``: each filter (slice along dim 0: a conv output channel, a Linear output row) gets the
  norm of the model's filter, d_f ← d_f / ‖d_f‖ · ‖θ_f‖;
* ``layer``: d ← d / ‖d‖ · ‖θ‖ per tensor;
* ``model``: the whole direction gets the model's norm (over the ≥2-D tensors);
* ``None``: left as drawn.

Tensors of one dimension or fewer (biases, BN/LayerNorm affine) are set to 0 (Li et al.'s
``ignore='biasbn'``, their default), or with ``include_1d=True`` to the parameter itself
(``d.copy_(w)`` in their code).
"""

from __future__ import annotations

import torch
from torch import nn

from .base import State, parameter_state

NORMALIZATIONS = ("filter", "layer", "model", None)


def normalize_direction(
    direction: State,
    reference: nn.Module | State,
    normalization: str | None = "filter",
    *,
    include_1d: bool = False,
) -> State:
    """A copy of ``direction`` normalised against ``reference``'s parameters (see the module docstring)."""
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    ref = parameter_state(reference)
    out: State = {}
    for n, d in direction.items():
        if n not in ref:
            raise ValueError(f"direction tensor {n!r} is not a parameter of the reference model")
        w = ref[n].to(d.device, d.dtype)
        if w.shape != d.shape:
            raise ValueError(
                f"direction tensor {n!r} has shape {tuple(d.shape)}, the parameter {tuple(w.shape)}"
            )
        if d.dim() <= 1:
            out[n] = w.clone() if include_1d else torch.zeros_like(d)
        elif normalization == "filter":
            dn = d.flatten(1).norm(dim=1).clamp_min(torch.finfo(d.dtype).tiny)
            scale = w.flatten(1).norm(dim=1) / dn
            out[n] = d * scale.view(-1, *([1] * (d.dim() - 1)))
        elif normalization == "layer":
            out[n] = d * (w.norm() / d.norm().clamp_min(torch.finfo(d.dtype).tiny))
        else:
            out[n] = d.clone()
    if normalization == "model":
        multi = [n for n, d in out.items() if d.dim() > 1]
        d_norm = torch.sqrt(sum(out[n].double().square().sum() for n in multi))
        w_norm = torch.sqrt(sum(ref[n].double().square().sum() for n in multi))
        for n in multi:
            out[n] = out[n] * float(w_norm / d_norm)
    return out


def random_direction(
    model: nn.Module | State,
    normalization: str | None = "filter",
    seed: int = 0,
    *,
    include_1d: bool = False,
) -> State:
    """A N(0, I) direction over ``model``'s floating parameters, drawn on CPU from ``seed`` (the same
    direction on every device), normalised as in Li et al. 2018 (``filter`` by default).

    >>> import torch, subspace_param as sp
    >>> net = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))
    >>> d = sp.landscape.random_direction(net, "filter", seed=0)
    >>> torch.allclose(d["0.weight"].norm(dim=1), net[0].weight.norm(dim=1)), float(d["0.bias"].abs().sum())
    (True, 0.0)
    """
    params = parameter_state(model)
    gen = torch.Generator().manual_seed(seed)
    raw = {
        n: torch.randn(p.shape, generator=gen, dtype=torch.float32).to(p.device, p.dtype)
        for n, p in params.items()
    }
    return normalize_direction(raw, params, normalization, include_1d=include_1d)
