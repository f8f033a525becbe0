"""Training step of a random-projection subspace θ = θ0 + P ω vs the plain model, per method
and d ∈ {100, 1000, 10000}, with the bytes P occupies (and the CUDA peak memory on a GPU).

CPU: the mnist1d CNN (small) and resnet18 at 32×32 (large), batch 64; cases whose P would not be
stored (dense/orthonormal over 1 GiB) or that take minutes per step on CPU (generated with
D·d > 5·10⁸ entries) are skipped with the reason. GPU: resnet18 (b256) and resnet50 (b64).
"""

from __future__ import annotations

import pytest
import torch
from steps import MODELS, make_step, projector_bytes, step_info

CUDA = torch.cuda.is_available()
MODEL_CASES = [("resnet18", 256), ("resnet50", 64)] if CUDA else [("cnn1d", 64), ("resnet18", 64)]
METHODS = ["dense", "sparse", "fastfood", "generated"]
KINDS = ["plain"] + [f"proj-{m}-{d}" for m in METHODS for d in (100, 1000, 10000)]


def _num_params(model: str) -> int:
    return sum(p.numel() for p in MODELS[model][0]().parameters())


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("model", "batch"), MODEL_CASES)
def test_projection_step(benchmark, model, batch, kind):
    device = "cuda" if CUDA else "cpu"
    entries = _num_params(model) * int(kind.rsplit("-", 1)[1]) if kind != "plain" else 0
    if kind.startswith("proj-dense") and entries * 4 > 2**30:
        pytest.skip(f"dense P would take {entries * 4 / 2**30:.1f} GiB")
    if not CUDA and kind.startswith("proj-generated") and entries > 5 * 10**8:
        pytest.skip(f"{entries:.1e} generated entries per pass: minutes per step on CPU")
    if CUDA:
        torch.cuda.reset_peak_memory_stats()
    step = make_step(model, kind, batch, device)
    for _ in range(2):
        step()
    benchmark.group = f"projection step {model} b{batch} {device}"
    benchmark.extra_info.update(
        step_info(model, batch, kind),
        p_bytes=projector_bytes(step.projection),
        peak_cuda_bytes=torch.cuda.max_memory_allocated() if CUDA else None,
    )
    benchmark.pedantic(step, rounds=10 if not CUDA else 30, warmup_rounds=1, iterations=1)
