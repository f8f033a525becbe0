"""Kernel level: w = Σ_k c_k V_k forward, and its backward, as achieved bandwidth next to a plain copy.

Bytes moved: forward reads K vertices and writes w; the task-only backward reads g and writes K
gradients; both (K + 1)·n·4 bytes in fp32. "% of copy" compares with ``dst.copy_(src)`` (2·n·4
bytes). GPU timings use ``triton.testing.do_bench`` (CUDA events,
L2 flushed, compilation excluded by warm-up); sizes 10^4 … 10^8. On CPU only the PyTorch contenders
run (the Triton interpreter is a correctness tool, its timings mean nothing), at sizes ≤ 10^7.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from steps import median_seconds

from subspace_param.ops import combine_torch

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
SIZES = [10**4, 10**5, 10**6, 16 * 10**6, 10**8] if CUDA else [10**5, 10**6, 10**7]
KS = [2, 3, 5]


def _eager(c, vs):
    return sum(c[k] * vs[k] for k in range(len(vs)))


def _foreach(c, vs):
    if len(vs) == 2:
        return torch.lerp(vs[0], vs[1], c[1])
    return combine_torch(c, vs)


def _contenders() -> dict[str, Callable]:
    out: dict[str, Callable] = {"eager formula": _eager, "lerp/addcmul": _foreach}
    if CUDA:
        from subspace_param.kernels.combine import combine_op

        out["torch.compile(eager)"] = torch.compile(_eager, dynamic=False)
        out["triton (ours)"] = combine_op
    return out


CONTENDERS = list(_contenders())


@pytest.mark.parametrize("contender", CONTENDERS)
@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("n", SIZES)
def test_combine_forward_bandwidth(benchmark, n, k, contender):
    fn = _contenders()[contender]
    vs = [torch.randn(n, device=DEVICE) for _ in range(k)]
    c = torch.full((k,), 1.0 / k, device=DEVICE)
    src = torch.randn(n, device=DEVICE)
    dst = torch.empty_like(src)
    copy_s = median_seconds(lambda: dst.copy_(src))
    s = median_seconds(lambda: fn(c, vs))
    moved = (k + 1) * n * 4
    benchmark.group = f"combine fwd K={k}"
    benchmark.extra_info.update(
        case=f"{contender} n={n:.0e}", seconds=s, gbps=moved / s / 1e9,
        pct_copy=100 * (moved / s) / (2 * n * 4 / copy_s),
        device=torch.cuda.get_device_name() if CUDA else "cpu",
        torch=torch.__version__,
    )  # fmt: skip
    benchmark.pedantic(lambda: fn(c, vs), rounds=1, iterations=1)


@pytest.mark.skipif(not CUDA, reason="the fused backward kernel is timed on GPU only")
@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("n", SIZES)
def test_combine_backward_bandwidth(benchmark, n, k):
    from subspace_param.kernels.combine import combine_grad_op

    vs = [torch.randn(n, device=DEVICE) for _ in range(k)]
    g = torch.randn(n, device=DEVICE)
    c = torch.full((k,), 1.0 / k, device=DEVICE)
    a = torch.zeros(k, k, device=DEVICE)
    src = torch.randn(n, device=DEVICE)
    dst = torch.empty_like(src)
    copy_s = median_seconds(lambda: dst.copy_(src))
    s = median_seconds(lambda: combine_grad_op(c, g, a, vs, True, False))
    moved = (k + 1) * n * 4
    benchmark.group = f"combine bwd K={k}"
    benchmark.extra_info.update(
        case=f"triton (ours) n={n:.0e}", seconds=s, gbps=moved / s / 1e9,
        pct_copy=100 * (moved / s) / (2 * n * 4 / copy_s),
        device=torch.cuda.get_device_name(), torch=torch.__version__,
    )  # fmt: skip
    benchmark.pedantic(lambda: combine_grad_op(c, g, a, vs, True, False), rounds=1, iterations=1)
