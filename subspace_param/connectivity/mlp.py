"""Structure of multi-layer perceptrons for the neuron-level path finders: the ordered Linear
layers of an ``nn.Sequential``, the features that feed each of them, and exact least squares."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from ..errors import ArchitectureMismatchError

#: Modules allowed between the Linear layers: elementwise maps that commute with permuting neurons.
ELEMENTWISE = (
    nn.ReLU,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.Softplus,
    nn.Identity,
    nn.Dropout,
)


def linear_layers(model: nn.Module) -> list[tuple[int, nn.Linear]]:
    """``[(index in the Sequential, Linear), …]`` of an MLP ``Sequential([Flatten], Linear, act, …)``.

    Raises :class:`ArchitectureMismatchError` naming the first module that is not a Linear, a
    leading Flatten or an elementwise activation.
    """
    if not isinstance(model, nn.Sequential):
        raise ArchitectureMismatchError(
            "neuron-level paths need an nn.Sequential MLP (Flatten, Linear, activation, …), "
            f"got {type(model).__name__}"
        )
    out = []
    for i, m in enumerate(model):
        if isinstance(m, nn.Linear):
            out.append((i, m))
        elif isinstance(m, nn.Flatten) and not out:
            continue
        elif not isinstance(m, ELEMENTWISE):
            raise ArchitectureMismatchError(
                f"module {i} ({type(m).__name__}) of the MLP is not a Linear, a leading Flatten or an "
                "elementwise activation; neuron-level paths support plain MLPs "
                "(use the linear or fitted-curve paths otherwise)"
            )
    if len(out) < 2:
        raise ArchitectureMismatchError(
            f"an MLP with at least one hidden layer is needed, found {len(out)} Linear"
        )
    return out


def check_same_mlp(a: nn.Module, b: nn.Module) -> list[tuple[int, nn.Linear]]:
    la, lb = linear_layers(a), linear_layers(b)
    if len(la) != len(lb):
        raise ArchitectureMismatchError(f"model A has {len(la)} Linear layers, model B {len(lb)}")
    for (i, x), (_, y) in zip(la, lb):
        if x.weight.shape != y.weight.shape or (x.bias is None) != (y.bias is None):
            raise ArchitectureMismatchError(
                f"Linear {i}: weight {tuple(x.weight.shape)} (bias {x.bias is not None}) in A vs "
                f"{tuple(y.weight.shape)} (bias {y.bias is not None}) in B"
            )
    return la


@torch.no_grad()
def layer_inputs(model: nn.Sequential, x: torch.Tensor) -> list[torch.Tensor]:
    """h_k: the input of every Linear layer (h_0 = the flattened x), in eval mode."""
    was = model.training
    model.eval()
    feats = []
    h = x
    for m in model:
        if isinstance(m, nn.Linear):
            feats.append(h.reshape(h.shape[0], -1))
        h = m(h)
    model.train(was)
    return feats


def fit_linear(features: torch.Tensor, targets: torch.Tensor, ridge: float = 0.0) -> torch.Tensor:
    """W = argmin_W ‖features Wᵀ − targets‖²_F (+ ridge·‖W‖²_F): shape (out, in).

    ``ridge = 0``: the minimum-norm least-squares solution (``torch.linalg.lstsq`` with the SVD
    driver on CPU, the pseudo-inverse on CUDA, where lstsq needs full rank); ``ridge > 0``: the
    Cholesky solve of (FᵀF + ridge·I) W = FᵀT. Computed in float64.
    """
    f = features.to(torch.float64)
    y = targets.to(torch.float64)
    if ridge < 0:
        raise ValueError(f"ridge must be ≥ 0, got {ridge}")
    if ridge > 0:
        gram = f.T @ f + ridge * torch.eye(f.shape[1], dtype=f.dtype, device=f.device)
        w = torch.cholesky_solve(f.T @ y, torch.linalg.cholesky(gram))
    elif f.is_cuda:
        w = torch.linalg.pinv(f) @ y
    else:
        w = torch.linalg.lstsq(f, y, driver="gelsd").solution
    return w.T.to(targets.dtype)


def stack_features(loader_or_tensor: torch.Tensor | Iterable) -> torch.Tensor:
    """The inputs of a loader (or a tensor) as one tensor."""
    if isinstance(loader_or_tensor, torch.Tensor):
        return loader_or_tensor
    return torch.cat([batch[0] if isinstance(batch, (list, tuple)) else batch for batch in loader_or_tensor])
