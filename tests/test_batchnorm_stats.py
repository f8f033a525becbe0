"""BatchNorm re-estimation gives the pooled full-data statistics whatever the batch sizes (float64)."""

from __future__ import annotations

import copy

import pytest
import torch
from helpers import small_cnn
from torch import nn
from torch.optim.swa_utils import update_bn
from torch.utils.data import DataLoader, TensorDataset

import subspace_param as sp
from subspace_param.batchnorm import reestimate_bn

BN = nn.modules.batchnorm._BatchNorm


def _mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(6, 9), nn.BatchNorm1d(9), nn.ReLU(), nn.Linear(9, 7), nn.BatchNorm1d(7)
    ).double()


def _one_full_batch(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """The reference: every BN's running stats from one train-mode forward of all the data."""
    ref = copy.deepcopy(model)
    for m in ref.modules():
        if isinstance(m, BN):
            m.reset_running_stats()
            m.momentum = None  # cumulative average: after one batch, exactly that batch's statistics
    ref.train()
    with torch.no_grad():
        ref(x)
    return ref


def _assert_same_stats(a: nn.Module, b: nn.Module) -> None:
    for (name, m), r in zip(
        [(n, m) for n, m in a.named_modules() if isinstance(m, BN)],
        [m for m in b.modules() if isinstance(m, BN)],
    ):
        torch.testing.assert_close(m.running_mean, r.running_mean, rtol=0, atol=1e-5, msg=name)
        torch.testing.assert_close(m.running_var, r.running_var, rtol=1e-3, atol=0, msg=name)


X = torch.randn(37, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 3 + 1


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_uneven_batches_give_the_statistics_of_one_full_batch(mode: str) -> None:
    model = _mlp().train(mode == "train")
    reference = _one_full_batch(model, X)
    batches = [X[:16], X[16:32], X[32:]]
    reestimate_bn(model, batches)
    assert model.training == (mode == "train")  # mode restored
    _assert_same_stats(model, reference)
    model.eval()
    reference.eval()
    torch.testing.assert_close(model(X), reference(X), rtol=0, atol=1e-10)
    # the data is discriminative: equal weighting of batches (swa_utils.update_bn) is off
    naive = copy.deepcopy(_mlp())
    update_bn(batches, naive)
    second = [m for m in naive.modules() if isinstance(m, BN)][1]
    assert (
        float(
            (second.running_var / [m for m in reference.modules() if isinstance(m, BN)][1].running_var - 1)
            .abs()
            .max()
        )
        > 0.05
    )


def test_a_conv_net_at_a_subspace_point_and_every_kind_of_loader() -> None:
    torch.manual_seed(2)
    model = small_cnn(torch.float64)
    sub = sp.line(model, seed=0)
    sub.set_point(0.35)
    x = torch.randn(23, 3, 9, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    y = torch.zeros(23, dtype=torch.long)
    reference = _one_full_batch(model, x)
    loaders = {
        "list of (x, y)": [(x[:10], y[:10]), (x[10:20], y[10:20]), (x[20:], y[20:])],
        "generator": ((x[i : i + 7], y[i : i + 7]) for i in range(0, 23, 7)),
        "sequential DataLoader": DataLoader(TensorDataset(x, y), batch_size=9),
        "shuffled DataLoader": DataLoader(TensorDataset(x, y), batch_size=6, shuffle=True),
    }
    for name, loader in loaders.items():
        sub.update_bn(loader)
        for m, r in zip(
            [m for m in model.modules() if isinstance(m, BN)],
            [m for m in reference.modules() if isinstance(m, BN)],
        ):
            torch.testing.assert_close(m.running_mean, r.running_mean, rtol=0, atol=1e-10, msg=name)
            torch.testing.assert_close(m.running_var, r.running_var, rtol=1e-10, atol=0, msg=name)


def test_one_pass_mode_is_exact_for_the_first_layer_only() -> None:
    model = _mlp()
    reference = _one_full_batch(model, X)
    reestimate_bn(model, [X[:16], X[16:32], X[32:]], exact=False)
    first, second = [m for m in model.modules() if isinstance(m, BN)]
    ref_first, ref_second = [m for m in reference.modules() if isinstance(m, BN)]
    torch.testing.assert_close(first.running_mean, ref_first.running_mean, rtol=0, atol=1e-10)
    torch.testing.assert_close(first.running_var, ref_first.running_var, rtol=1e-10, atol=0)
    assert not torch.allclose(second.running_var, ref_second.running_var, rtol=1e-3)


def test_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="no batch"):
        reestimate_bn(_mlp(), [])
    with pytest.raises(ValueError, match="num_batches must be ≥ 1"):
        reestimate_bn(_mlp(), [X], num_batches=0)
