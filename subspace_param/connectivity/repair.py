"""REPAIR (Jordan et al. 2022): renormalise the interpolated network's channels.

Between two aligned networks A and B, the straight path's midpoint has collapsed activation
variance. REPAIR measures, for every repaired channel c of a layer's output, the mean μ and
standard deviation σ over the data at both ends, and at the point t rescales the interpolated
network's channel to the interpolated statistics

    y_c ← (y_c − μ_c(t)) / σ_c(t) · ((1 − t) σ_c^A + t σ_c^B) + ((1 − t) μ_c^A + t μ_c^B),

μ_c(t), σ_c(t) being the channel's statistics in the interpolated network itself (measured after
the earlier layers are repaired). The rescaling is a BatchNorm whose affine weight and bias are the
goal σ and μ, attached to the layer by a forward hook (no layer is rewritten) and estimated with
:func:`~subspace_param.reestimate_bn` (exact, in forward order) together with the model's own BN.

Repaired layers: every Conv/Linear output but the network's last layer; where a BatchNorm directly
follows a layer (the next module in forward order), its output is repaired instead.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..batchnorm import _inputs, _Sums, reestimate_bn

REPAIR_CHILD = "subspace_repair"
_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_NORMS = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}


def _batches(loader: Iterable, num_batches: int | None) -> list[torch.Tensor]:
    out = list(_inputs(itertools.islice(loader, num_batches), None))
    if not out:
        raise ValueError("REPAIR: the loader yielded no batch")
    return out


def _leaf_order(model: nn.Module, x: torch.Tensor) -> list[tuple[str, nn.Module, int]]:
    """(name, module, output ndim) of the leaf modules in the order a forward pass calls them."""
    order: list[tuple[str, nn.Module, int]] = []
    handles = [
        m.register_forward_hook(lambda mod, _i, out, name=name: order.append((name, mod, out.dim())))
        for name, m in model.named_modules()
        if not list(m.children()) and not name.endswith(REPAIR_CHILD)
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return order


def repair_targets(model: nn.Module, x: torch.Tensor) -> list[tuple[str, int]]:
    """(module name, output ndim) of the layers REPAIR corrects (see the module docstring)."""
    order = _leaf_order(model, x)
    layers = [i for i, (_, m, _) in enumerate(order) if isinstance(m, _LAYERS)]
    targets, seen = [], set()
    for i in layers[:-1]:  # not the network's last layer (the logits)
        name, m, ndim = order[i]
        if isinstance(m, nn.Linear) and ndim != 2:
            continue  # a token-wise Linear (channels last): not a channel-first statistic
        if i + 1 < len(order) and isinstance(order[i + 1][1], _BatchNorm):
            name, _, ndim = order[i + 1]
        if name not in seen and ndim in _NORMS:
            seen.add(name)
            targets.append((name, ndim))
    return targets


@torch.no_grad()
def channel_statistics(
    model: nn.Module, names: list[str], batches: list[torch.Tensor], device: torch.device | str = "cpu"
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per-channel (mean, std) of each named module's output over the batches (eval mode, float64;
    the unbiased std, the convention BatchNorm's running variance uses)."""
    modules = dict(model.named_modules())
    sums = {n: _Sums() for n in names}
    was = model.training
    model.eval()
    handles = [  # _Sums reads a BN's input; here it is the layer's output
        modules[n].register_forward_hook(lambda m, _i, out, s=sums[n]: s(m, (out,))) for n in names
    ]
    try:
        for x in batches:
            model(x.to(device))
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    out = {}
    for n, acc in sums.items():
        mean, _, unbiased = acc.moments()
        out[n] = (mean, unbiased.sqrt())
    return out


class Repair:
    """The endpoints' channel statistics of a straight path A → B, and :meth:`apply` at any t.

    Args:
        model_a, model_b: the two networks (B aligned to A), same architecture.
        loader: data for the statistics (inputs, or (input, target) batches).
        num_batches: use the first batches only (default: all).
    """

    def __init__(
        self,
        model_a: nn.Module,
        model_b: nn.Module,
        loader: Iterable,
        *,
        num_batches: int | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        self.batches = _batches(loader, num_batches)
        self.device = device
        self.targets = repair_targets(model_a, self.batches[0].to(device))
        if not self.targets:
            raise ValueError(f"REPAIR: {type(model_a).__name__} has no Conv/Linear layer to repair")
        names = [n for n, _ in self.targets]
        self.stats_a = channel_statistics(model_a, names, self.batches, device)
        self.stats_b = channel_statistics(model_b, names, self.batches, device)

    def goal(self, t: float) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """The interpolated (mean, std) of every repaired channel at t."""
        return {
            n: (
                (1 - t) * self.stats_a[n][0] + t * self.stats_b[n][0],
                (1 - t) * self.stats_a[n][1] + t * self.stats_b[n][1],
            )
            for n, _ in self.targets
        }

    def apply(self, model: nn.Module, t: float) -> None:
        """Repair ``model`` (the network at t on the path) in place: attach or update each layer's
        REPAIR BatchNorm with the goal statistics, then re-estimate every BN of the model (its own
        and REPAIR's) in forward order on the statistics batches."""
        modules = dict(model.named_modules())
        goal = self.goal(t)
        for name, ndim in self.targets:
            layer = modules[name]
            mean, std = goal[name]
            norm = getattr(layer, REPAIR_CHILD, None)
            if norm is None:
                ref = next(layer.parameters(), None)
                norm = _NORMS[ndim](len(mean), eps=1e-8, momentum=None)  # the goal std exactly
                if ref is not None:
                    norm = norm.to(ref.device, ref.dtype)
                layer.add_module(REPAIR_CHILD, norm)
                layer.register_forward_hook(_apply_repair)
            with torch.no_grad():
                norm.weight.copy_(std.to(norm.weight.dtype))
                norm.bias.copy_(mean.to(norm.bias.dtype))
        reestimate_bn(model, self.batches, device=self.device)

    def __repr__(self) -> str:
        return f"Repair(layers={len(self.targets)}, batches={len(self.batches)})"


def _apply_repair(module: nn.Module, _inputs: Any, out: torch.Tensor) -> torch.Tensor:
    return getattr(module, REPAIR_CHILD)(out)


def remove_repair(model: nn.Module) -> None:
    """Detach every REPAIR BatchNorm (and its hook) from ``model``."""
    for m in model.modules():
        if hasattr(m, REPAIR_CHILD):
            delattr(m, REPAIR_CHILD)
            for key, hook in list(m._forward_hooks.items()):
                if hook is _apply_repair:
                    del m._forward_hooks[key]
