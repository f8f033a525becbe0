"""BatchNorm running statistics at a point of a subspace.

Running statistics are ordinary buffers shared by every point; before a point is evaluated they
are re-estimated with an exact cumulative average over (part of) the training data, exactly as
``torch.optim.swa_utils.update_bn`` does (which this module calls).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.optim.swa_utils import update_bn


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def reestimate_bn(
    model: nn.Module,
    loader: Iterable[Any],
    num_batches: int | None = None,
    device: torch.device | str | None = None,
) -> None:
    """Reset and re-estimate every BatchNorm's running mean/var over ``loader`` (first
    ``num_batches`` batches, or all). Weights are materialised once (``parametrize.cached``)."""
    if num_batches is not None and num_batches < 1:
        raise ValueError(f"num_batches must be ≥ 1 or None, got {num_batches}")
    if not has_batchnorm(model):
        return
    batches = loader if num_batches is None else itertools.islice(loader, num_batches)
    with torch.no_grad(), parametrize.cached():
        update_bn(batches, model, device=device)
