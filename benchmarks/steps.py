"""Factories for one full training step (forward, backward, optimizer) of a plain or wrapped model."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
import torchvision

import subspace_param as sp
from subspace_param.models import conv_net

#: name → (factory, input shape without the batch dim, number of classes)
MODELS: dict[str, tuple[Callable[[], torch.nn.Module], tuple[int, ...], int]] = {
    "cnn1d": (lambda: conv_net((1, 40), 10), (1, 40), 10),
    "resnet18": (lambda: torchvision.models.resnet18(num_classes=10), (3, 32, 32), 10),
    "resnet50": (lambda: torchvision.models.resnet50(num_classes=1000), (3, 224, 224), 1000),
    "vit_b_16": (lambda: torchvision.models.vit_b_16(num_classes=1000), (3, 224, 224), 1000),
}

KINDS: dict[str, Callable[..., sp.Subspace] | None] = {
    "plain": None,
    "line": sp.line,
    "curve": sp.curve,
    "simplex3": lambda m, **kw: sp.simplex(m, 3, **kw),
}


def make_step(
    model_name: str,
    kind: str,
    batch: int,
    device: str = "cpu",
    backend: str | None = None,
    autocast_bf16: bool = False,
    beta: float = 1.0,
    fused: bool | None = True,
) -> Callable[[], None]:
    """``kind``: ``plain``, ``line``, ``curve``, ``simplex3`` or ``proj-<method>-<d>`` (a random
    projection subspace of dimension d, e.g. ``proj-generated-1000``). ``fused``: True forces one
    combine per forward, False one per tensor access, None the library's default."""
    torch.manual_seed(0)
    factory, shape, n_classes = MODELS[model_name]
    model = factory().to(device)
    sub = None
    proj = None
    if kind.startswith("proj-"):
        _, method, dim = kind.split("-")
        extra = {"backend": backend} if method == "generated" and backend else {}
        proj = sp.projection(model, int(dim), method=method, seed=0, **extra)
    elif KINDS[kind] is not None:
        sub = KINDS[kind](model, seed=0, backend=backend, fused=fused)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(batch, *shape, device=device)
    y = torch.randint(0, n_classes, (batch,), device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def step() -> None:
        if sub is not None:
            sub.sample()
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=autocast_bf16):
            loss = F.cross_entropy(model(x), y)
        if sub is not None and beta > 0:
            loss = loss + sub.regularizer(beta)
        loss.backward()
        opt.step()
        sync()

    step.projection = proj  # type: ignore[attr-defined]
    return step


def projector_bytes(proj: sp.ProjectedSubspace | None) -> int:
    """Bytes the projector keeps: its buffers, plus what ``generated`` (row blocks) and ``hashed``
    (columns and signs) cache on CPU."""
    if proj is None:
        return 0
    p = proj.projector
    cached = [*getattr(p, "_blocks", {}).values()]
    for pair in getattr(p, "_cache", {}).values():
        cached.extend(pair)
    return sum(t.numel() * t.element_size() for t in [*p.buffers(), *cached])


def step_info(
    model: str, batch: int, kind: str, backend: str | None = None, bf16: bool = False, fused: bool = True
) -> dict:
    """The ``extra_info`` every step benchmark records (``run.py`` reads kind, backend and bf16)."""
    return {
        "model": model,
        "batch": batch,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "kind": kind,
        "backend": backend or "default",
        "bf16": bf16,
        "fused": fused,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


def median_seconds(fn: Callable[[], object], warmup: int = 3, rounds: int = 15, rep_ms: int = 100) -> float:
    """Seconds per call, median. On GPU ``triton.testing.do_bench`` (CUDA events, L2 flushed,
    ``rep_ms`` of repetitions after its own warm-up); on CPU ``rounds`` wall-clock calls after
    ``warmup`` calls."""
    if torch.cuda.is_available():
        import triton.testing

        return triton.testing.do_bench(fn, warmup=25, rep=rep_ms, return_mode="median") / 1e3
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]
