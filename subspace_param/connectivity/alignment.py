"""Neuron alignment: permute the hidden neurons of B to match A, keeping B's function exactly.

:func:`align` takes any two traceable networks of one architecture (residual streams, norms,
attention blocks; :mod:`.rebasin`). The MLP case of seed 001 stays here: the neuron vectors of
each hidden layer matched by an exact optimal-transport problem with uniform marginals and
squared-Euclidean cost (normalised by its maximum), solved by POT's network simplex (``ot.emd``);
with equal sizes the optimal plan is a permutation (Birkhoff), read off as the argmax of each row.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from .mlp import check_same_mlp


def ot_permutation(za: torch.Tensor, zb: torch.Tensor) -> torch.Tensor:
    """perm such that zb[perm] is the optimal (exact EMD) matching of the rows of za.

    >>> za = torch.tensor([[0.0, 0.0], [5.0, 5.0], [9.0, 1.0]])
    >>> ot_permutation(za, za[[2, 0, 1]]).tolist()
    [1, 2, 0]
    """
    import numpy as np
    import ot

    if za.shape != zb.shape:
        raise ValueError(f"neuron sets differ in shape: {tuple(za.shape)} vs {tuple(zb.shape)}")
    a = za.detach().reshape(len(za), -1).double().cpu().numpy()
    b = zb.detach().reshape(len(zb), -1).double().cpu().numpy()
    cost = ot.dist(a, b, metric="sqeuclidean")
    cost /= max(cost.max(), 1e-300)
    n = len(a)
    plan = ot.emd(np.full(n, 1.0 / n), np.full(n, 1.0 / n), cost)
    perm = torch.as_tensor(plan.argmax(1), dtype=torch.long)
    if len(torch.unique(perm)) != n:  # pragma: no cover - emd returns a vertex of the Birkhoff polytope
        raise RuntimeError("the optimal transport plan is not a permutation")
    return perm


def neuron_vectors(model: nn.Sequential, k: int) -> torch.Tensor:
    """Hidden layer k's neurons as rows [incoming weights, bias, outgoing weights]."""
    layers = [m for _, m in check_same_mlp(model, model)]
    inc, out = layers[k], layers[k + 1]
    parts = [inc.weight.detach()]
    if inc.bias is not None:
        parts.append(inc.bias.detach()[:, None])
    parts.append(out.weight.detach().T)
    return torch.cat(parts, 1)


@torch.no_grad()
def permute_hidden(model: nn.Sequential, k: int, perm: torch.Tensor) -> None:
    """In place: reorder hidden layer k's neurons by ``perm`` (rows of layer k, columns of layer
    k + 1). The function computed by the model is unchanged."""
    layers = [m for _, m in check_same_mlp(model, model)]
    inc, out = layers[k], layers[k + 1]
    inc.weight.copy_(inc.weight[perm])
    if inc.bias is not None:
        inc.bias.copy_(inc.bias[perm])
    out.weight.copy_(out.weight[:, perm])


def align(
    model_a: nn.Module,
    model_b: nn.Module,
    method: str = "weights",
    data: Any = None,
    *,
    example: torch.Tensor | None = None,
    vectors: str | None = None,
    **options: Any,
) -> nn.Module:
    """A copy of ``model_b`` with its channels permuted to match ``model_a``; it computes exactly
    ``model_b``'s function (eval mode, up to float summation order).

    ``method``: ``"weights"`` (weight matching, Ainsworth et al. 2022), ``"ot"`` (the same, each
    step the exact OT pairing of seed 001) or ``"activations"`` (correlation over ``data``, an
    iterable of batches); ``example``: an input batch for tracing (else the first batch of
    ``data``; an MLP needs neither). ``options``: ``max_iter``, ``num_batches``, ``seed`` of
    :func:`~subspace_param.connectivity.rebasin.alignment`, which returns the permutations and the
    per-group report as well.

    ``vectors="neurons"`` / ``"incoming"``: the seed's layer-by-layer OT alignment of an
    ``nn.Sequential`` MLP (:func:`align_mlp`)."""
    if vectors is not None:
        return align_mlp(model_a, model_b, vectors)  # type: ignore[arg-type]
    from .rebasin import alignment

    return alignment(model_a, model_b, method, data, example, **options).model  # type: ignore[arg-type]


def align_mlp(model_a: nn.Sequential, model_b: nn.Sequential, vectors: str = "neurons") -> nn.Sequential:
    """A copy of B with every hidden layer's neurons permuted to match A by exact OT, layer by
    layer from the input (each layer's incoming weights already see the permuted previous layer).

    ``vectors="neurons"`` matches [incoming, bias, outgoing] vectors; ``"incoming"`` the incoming
    weights (and bias) only. B's function is preserved exactly (up to float summation order).
    """
    if vectors not in ("neurons", "incoming"):
        raise ValueError(f"vectors must be 'neurons' or 'incoming', got {vectors!r}")
    layers = check_same_mlp(model_a, model_b)
    aligned = copy.deepcopy(model_b)
    for k in range(len(layers) - 1):
        za, zb = neuron_vectors(model_a, k), neuron_vectors(aligned, k)
        if vectors == "incoming":
            width = layers[k][1].weight.shape[1] + (layers[k][1].bias is not None)
            za, zb = za[:, :width], zb[:, :width]
        permute_hidden(aligned, k, ot_permutation(za, zb))
    return aligned
