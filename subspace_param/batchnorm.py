"""BatchNorm running statistics at a point of a subspace: the exact pooled statistics of the data.

Running statistics are ordinary buffers shared by every point; before a point is evaluated they
are re-estimated. ``torch.optim.swa_utils.update_bn`` weights every batch equally (a short last
batch shifts the mean), and a BN layer's input depends on how the layers before it normalised, so
:func:`reestimate_bn` computes, for every BN layer in forward order, the pooled full-data mean and
unbiased variance of its input

    μ = Σx / n,   σ² = (Σx² − n μ²) / (n − 1)     (per channel, float64 accumulation)

with the BN layers before it normalising by their pooled statistics — exactly what one batch of all
the data would give in train mode, whatever the batch sizes. That takes one pass over the data
per BN layer (``exact=False``: one pass in total, pooled sums with each layer normalising by its
own batch — exact for the first BN layer and for layers whose inputs no earlier BN layer feeds).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.utils.data import DataLoader, SequentialSampler

_BN = nn.modules.batchnorm._BatchNorm


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, _BN) for m in model.modules())


def _inputs(batches: Iterable[Any], device: torch.device | str | None) -> Iterable[torch.Tensor]:
    for batch in batches:  # as torch.optim.swa_utils.update_bn: the first element of a tuple/list
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        yield x.to(device) if device is not None else x


def _replayable(loader: Iterable[Any], num_batches: int | None) -> Iterable[Any]:
    """Batches that can be iterated several times and give the same data each time."""
    deterministic = isinstance(loader, (list, tuple)) or (
        isinstance(loader, DataLoader) and isinstance(loader.sampler, SequentialSampler)
    )
    if deterministic:
        return loader if num_batches is None else list(itertools.islice(loader, num_batches))
    batches = loader if num_batches is None else itertools.islice(loader, num_batches)
    return list(batches)  # a generator or a shuffled loader: one fixed draw, kept for every pass


class _Sums:
    """Per-channel Σx, Σx², n of a BN layer's input, accumulated in float64."""

    def __init__(self) -> None:
        self.s1: torch.Tensor | None = None
        self.s2: torch.Tensor | None = None
        self.n = 0

    def __call__(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        x = args[0].detach().double()
        dims = [d for d in range(x.dim()) if d != 1]
        s1, s2 = x.sum(dims), x.square().sum(dims)
        self.s1 = s1 if self.s1 is None else self.s1 + s1
        self.s2 = s2 if self.s2 is None else self.s2 + s2
        self.n += x.numel() // x.shape[1]

    def moments(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mean, biased variance, unbiased variance)."""
        if self.s1 is None or self.n < 2:
            raise ValueError(f"BatchNorm re-estimation needs at least 2 values per channel, got {self.n}")
        mean = self.s1 / self.n
        biased = (self.s2 / self.n - mean.square()).clamp_min(0)
        return mean, biased, biased * self.n / (self.n - 1)


def _forward_order(model: nn.Module, bns: list[nn.Module], first: torch.Tensor) -> list[nn.Module]:
    order: list[nn.Module] = []
    handles = [
        m.register_forward_pre_hook(lambda m, a: order.append(m) if m not in order else None) for m in bns
    ]
    try:
        model(first)
    finally:
        for h in handles:
            h.remove()
    return order + [m for m in bns if m not in order]  # BN layers this input does not reach: last


def _set_stats(bn: nn.Module, mean: torch.Tensor, var: torch.Tensor, batches: int) -> None:
    bn.running_mean.copy_(mean.to(bn.running_mean))
    bn.running_var.copy_(var.to(bn.running_var))
    if bn.num_batches_tracked is not None:
        bn.num_batches_tracked.fill_(batches)


def reestimate_bn(
    model: nn.Module,
    loader: Iterable[Any],
    num_batches: int | None = None,
    device: torch.device | str | None = None,
    *,
    exact: bool = True,
) -> None:
    """Set every BatchNorm's running mean and unbiased variance to the pooled statistics of its
    input over ``loader`` (first ``num_batches`` batches, or all), whatever the batch sizes.

    ``exact=True``: one pass per BN layer in forward order, earlier layers normalising by their
    pooled statistics (= one batch of all the data in train mode); ``exact=False``: one pass.
    Batches that cannot be replayed identically (a generator, a shuffled loader) are drawn once and
    kept in memory for the passes. Weights are materialised once per pass (``parametrize.cached``);
    the model's train/eval mode is restored.
    """
    if num_batches is not None and num_batches < 1:
        raise ValueError(f"num_batches must be ≥ 1 or None, got {num_batches}")
    bns = [m for m in model.modules() if isinstance(m, _BN) and m.track_running_stats]
    if not bns:
        return
    batches = _replayable(loader, num_batches)
    modes = {m: m.training for m in model.modules()}
    try:
        with torch.no_grad(), parametrize.cached():
            model.train()
            first = next(iter(_inputs(batches, device)), None)
            if first is None:
                raise ValueError("reestimate_bn: the loader yielded no batch")
            order = _forward_order(model, bns, first) if exact else bns
            groups = [[bn] for bn in order] if exact else [order]
            finals: list[tuple[nn.Module, torch.Tensor]] = []
            for group in groups:
                sums = {bn: _Sums() for bn in group}
                handles = [bn.register_forward_pre_hook(sums[bn]) for bn in group]
                count = 0
                try:
                    for x in _inputs(batches, device):
                        model(x)
                        count += 1
                finally:
                    for h in handles:
                        h.remove()
                for bn in group:
                    mean, biased, unbiased = sums[bn].moments()
                    # layers already done normalise the later passes like one full batch would
                    _set_stats(bn, mean, biased if exact else unbiased, count)
                    bn.eval()
                    finals.append((bn, unbiased))
            for bn, unbiased in finals:  # the stored variance is the unbiased one, as in PyTorch
                bn.running_var.copy_(unbiased.to(bn.running_var))
    finally:
        for m, mode in modes.items():
            m.training = mode
