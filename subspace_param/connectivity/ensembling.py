"""WA(n) ensembling (Anokhin & Yarotsky): ensembles that share the bottom layers of one base net.

For models M_1 … M_N of one MLP architecture and a layer index ℓ (the n = L − ℓ top layers
differ): the base is M_1; hybrid k keeps M_1's layers below ℓ, replaces layer ℓ's weight by the
least-squares adapter W̃_k = argmin ‖F_1 Wᵀ − F_k W_kᵀ‖ (F_j = the input of layer ℓ in M_j on the
training data) and takes layer ℓ's bias and every layer above from M_k. Ensembles average softmax
probabilities. The pseudo-inverse of F_1 is computed once.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from .mlp import check_same_mlp, fit_linear, layer_inputs


@torch.no_grad()
def _probs(model: nn.Module, loader: Iterable) -> tuple[torch.Tensor, torch.Tensor]:
    model.eval()
    ps, ys = [], []
    for x, y in loader:
        ps.append(model(x).float().softmax(-1))
        ys.append(y)
    return torch.cat(ps), torch.cat(ys)


@torch.no_grad()
def wa_hybrids(
    models: Sequence[nn.Sequential], train_inputs: torch.Tensor, layer: int, ridge: float = 0.0
) -> list[nn.Sequential]:
    """The hybrids of :mod:`this module <subspace_param.connectivity.ensembling>` (hybrid 0 is the base)."""
    if len(models) < 2:
        raise ValueError(f"WA ensembling needs at least 2 models, got {len(models)}")
    layers = [check_same_mlp(models[0], m) for m in models]
    num_layers = len(layers[0])
    if not 0 <= layer < num_layers:
        raise ValueError(f"layer must index one of the {num_layers} Linear layers, got {layer}")
    x = train_inputs
    base = models[0]
    feats_base = layer_inputs(base, x)[layer]
    pinv = torch.linalg.pinv(feats_base.double()) if ridge == 0 else None
    seq_index = layers[0][layer][0]
    hybrids = [copy.deepcopy(base)]
    for m in models[1:]:
        target = layer_inputs(m, x)[layer] @ m[seq_index].weight.T
        w_adj = (
            (pinv @ target.double()).T.to(target.dtype)
            if pinv is not None
            else fit_linear(feats_base, target, ridge)
        )
        hybrid = copy.deepcopy(base)
        hybrid[seq_index].weight.copy_(w_adj)
        for i in range(seq_index, len(hybrid)):
            for name, p in m[i].named_parameters():
                if not (i == seq_index and name == "weight"):
                    dict(hybrid[i].named_parameters())[name].copy_(p)
        hybrids.append(hybrid)
    return hybrids


def wa_ensemble(
    models: Sequence[nn.Sequential],
    train_inputs: torch.Tensor,
    test_loader: Iterable,
    layer: int,
    ridge: float = 0.0,
) -> dict[str, Any]:
    """Accuracy of each member, of the plain ensemble of the first n members, of each WA hybrid
    and of the WA ensemble of the first n hybrids, for n = 1 … N."""
    hybrids = wa_hybrids(models, train_inputs, layer, ridge)
    out: dict[str, list[float]] = {"member": [], "ensemble": [], "wa_member": [], "wa_ensemble": []}
    sums = {"plain": None, "wa": None}
    labels = None
    for plain, hybrid in zip(models, hybrids):
        for key, model, member, ens in (
            ("plain", plain, "member", "ensemble"),
            ("wa", hybrid, "wa_member", "wa_ensemble"),
        ):
            p, labels = _probs(model, test_loader)
            sums[key] = p if sums[key] is None else sums[key] + p
            out[member].append(float((p.argmax(1) == labels).float().mean()))
            out[ens].append(float((sums[key].argmax(1) == labels).float().mean()))
    num_layers = len(check_same_mlp(models[0], models[0]))
    return {"n_top_layers": num_layers - layer, "layer": layer, **out}
