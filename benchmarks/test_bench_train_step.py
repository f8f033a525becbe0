"""One training step of torchvision models, plain vs line / curve / simplex(3).

Each subspace kind runs with the fused engine (one combine per forward) and per tensor (one per
tensor access, ``fused=False``). CPU (what every CI machine has): the mnist1d CNN (batch 64) and
resnet18 on 32×32 inputs, batch 64. On a GPU the suite adds
resnet18 (batch 256), resnet50 (224², batch 64) and vit_b_16 (224², batch 32), with the PyTorch
and the Triton backend, fp32 and bf16 autocast.
"""

from __future__ import annotations

import pytest
import torch
from steps import make_step, step_info

CUDA = torch.cuda.is_available()

CPU_CASES = [("cnn1d", 64, "cpu", None, False), ("resnet18", 64, "cpu", None, False)]
GPU_CASES = [
    (model, batch, "cuda", backend, bf16)
    for model, batch in (("resnet18", 256), ("resnet50", 64), ("vit_b_16", 32))
    for backend in ("torch", "triton")
    for bf16 in (False, True)
]
CASES = GPU_CASES if CUDA else CPU_CASES


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "per-tensor"])
@pytest.mark.parametrize("kind", ["plain", "line", "curve", "simplex3"])
@pytest.mark.parametrize(("model", "batch", "device", "backend", "bf16"), CASES)
def test_train_step(benchmark, model, batch, device, backend, bf16, kind, fused):
    if kind == "plain" and (backend == "triton" or not fused):
        pytest.skip("the plain model has no backend and no fused path")
    step = make_step(model, kind, batch, device, backend, bf16, fused=fused)
    for _ in range(3):
        step()
    benchmark.group = f"step {model} b{batch} {device}{' bf16' if bf16 else ''}"
    benchmark.extra_info.update(step_info(model, batch, kind, backend, bf16, fused))
    benchmark.pedantic(step, rounds=15 if not CUDA else 30, warmup_rounds=2, iterations=1)
