"""Factories for one full training step (forward, backward, optimizer) of a plain or wrapped model."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
import torchvision

import subspace_param as sp

MODELS: dict[str, tuple[Callable[[], torch.nn.Module], int]] = {
    "resnet18": (lambda: torchvision.models.resnet18(num_classes=10), 32),
    "resnet50": (lambda: torchvision.models.resnet50(num_classes=1000), 224),
    "vit_b_16": (lambda: torchvision.models.vit_b_16(num_classes=1000), 224),
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
) -> Callable[[], None]:
    torch.manual_seed(0)
    factory, size = MODELS[model_name]
    model = factory().to(device)
    wrap = KINDS[kind]
    sub = wrap(model, seed=0, backend=backend) if wrap is not None else None
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    n_classes = 10 if model_name == "resnet18" else 1000
    x = torch.randn(batch, 3, size, size, device=device)
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

    return step
