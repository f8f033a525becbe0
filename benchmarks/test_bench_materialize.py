"""Whole-model weight materialisation + regulariser, forward and backward, without the network.

One measured call: sample a point, compute every covered weight w_L = Σ_k c_k V_k^L and the
cosine regulariser β·cos²(V_i, V_j) (global, one random pair), and back-propagate a fixed random
gradient into every weight plus 1 into the regulariser — exactly the subspace's share of a training
step. Contenders:

* ``eager parametrize``: one combine per tensor access (``fused=False``, PyTorch backend), the
  closed-form regulariser backward;
* ``fused torch``: the engine's default on CPU, one ``lerp`` / ``addcmul`` over the flat buffers;
* ``torch.compile(eager)``: the per-tensor formula and regulariser compiled by Inductor;
* ``per-tensor triton`` (GPU): the per-tensor custom ops (one launch per tensor and one Gram pass);
* ``fused triton`` (GPU): one segmented launch forward (weights and Gram entries), one backward.

Models: the mnist1d CNN and resnet18 on CPU; resnet18, resnet50 and vit_b_16 on GPU; as a line
and a simplex of 3 vertices.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from steps import MODELS, median_seconds

import subspace_param as sp
from subspace_param.fused import materialized

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
MODEL_NAMES = ["resnet18", "resnet50", "vit_b_16"] if CUDA else ["cnn1d", "resnet18"]
CONTENDERS = ["eager parametrize", "fused torch", "torch.compile(eager)"] + (
    ["per-tensor triton", "fused triton"] if CUDA else []
)
KINDS = {"line": sp.line, "simplex3": lambda m, **kw: sp.simplex(m, 3, **kw)}


def _eager_formula(coefficients, rows, covered, pair):
    """Σ_k c_k V_k per tensor and the global cos² of one vertex pair, in plain tensor ops."""
    weights = [sum(coefficients[k] * row[k] for k in range(len(row))) for row in rows]
    i, j = pair
    d = sum((rows[L][i] * rows[L][j]).sum() for L in covered)
    ni = sum(rows[L][i].square().sum() for L in covered)
    nj = sum(rows[L][j].square().sum() for L in covered)
    return weights, d.square() / (ni * nj)


def make_materialize(model_name: str, kind: str, contender: str) -> Callable[[], None]:
    """The measured call for one contender; ``step.subspace`` is the handle (for launch counts)."""
    torch.manual_seed(0)
    model = MODELS[model_name][0]().to(DEVICE)
    backend = "triton" if "triton" in contender else "torch"
    fused = contender.startswith("fused")
    sub = KINDS[kind](model, seed=0, backend=backend, fused=fused)
    refs = sub.refs
    params = list(sub.parameters())
    grads = [torch.randn_like(getattr(r.module, r.local_name)) for r in refs]
    one = torch.ones((), device=DEVICE)
    sync = torch.cuda.synchronize if CUDA else (lambda: None)
    if contender == "torch.compile(eager)":
        rows = sub.vertices()
        covered = [i for i, row in enumerate(rows) if row[0].dim() >= 2]
        compiled = torch.compile(_eager_formula)

        def step() -> None:
            sub.sample()
            for p in params:  # as after optimizer.zero_grad(): gradients are stored, not added
                p.grad = None
            perm = torch.randperm(sub.num_vertices, generator=sub.generator)[:2].tolist()
            c = sub.coefficients.to(sub.model._subspace_point.device)
            weights, reg = compiled(c, rows, covered, (min(perm), max(perm)))
            torch.autograd.backward([*weights, reg], [*grads, one])
            sync()

        step.subspace = sub  # type: ignore[attr-defined]
        return step

    def step() -> None:
        sub.sample()
        for p in params:
            p.grad = None
        with materialized(model):
            weights = [getattr(r.module, r.local_name) for r in refs]
            reg = sub.regularizer(1.0)
        torch.autograd.backward([*weights, reg], [*grads, one])
        sync()

    step.subspace = sub  # type: ignore[attr-defined]
    return step


@pytest.mark.parametrize("contender", CONTENDERS)
@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("model_name", MODEL_NAMES)
def test_materialize_with_regularizer(benchmark, model_name, kind, contender):
    step = make_materialize(model_name, kind, contender)
    for _ in range(3):  # compilation, autotuning and the first Gram request happen here
        step()
    seconds = median_seconds(step, warmup=0, rep_ms=200)
    n = sum(p.numel() for p in MODELS[model_name][0]().parameters())
    benchmark.group = f"materialise + regulariser {model_name} {kind} ({n / 1e6:.1f} M params)"
    benchmark.extra_info.update(
        case=contender, seconds=seconds,
        device=torch.cuda.get_device_name() if CUDA else "cpu", torch=torch.__version__,
    )  # fmt: skip
    benchmark.pedantic(step, rounds=1, iterations=1)
