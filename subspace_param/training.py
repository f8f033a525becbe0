"""Training and evaluation loops shared by the experiments, examples and CLI.

A subspace step is the ordinary step plus two lines: draw a point, add β·cos²::

    subspace.sample()
    loss = cross_entropy(model(x), y) + subspace.regularizer(beta)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .subspace import Subspace


@dataclasses.dataclass
class TrainConfig:
    """SGD with momentum, a linear warm-up then cosine decay stepped per iteration."""

    epochs: int = 30
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    beta: float = 1.0
    num_samples: int = 1
    progress: bool = True
    desc: str = "train"


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def lr_at(step: int, total: int, warmup: int, base: float) -> float:
    """lr = base·(s+1)/warmup during warm-up, then base·½(1 + cos(π·progress))."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * progress))


def train(
    model: nn.Module,
    loader: DataLoader,
    cfg: TrainConfig,
    subspace: Subspace | None = None,
    device: torch.device | str = "cpu",
) -> list[dict[str, float]]:
    """Train ``model`` (a plain model, or a wrapped one when ``subspace`` is given) and return
    per-epoch metrics (``epoch``, ``loss``, ``train_acc``, ``lr``)."""
    opt = make_optimizer(model, cfg)
    steps_per_epoch = len(loader)
    total = cfg.epochs * steps_per_epoch
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    history: list[dict[str, float]] = []
    step = 0
    bar = tqdm(range(cfg.epochs), desc=cfg.desc, disable=not cfg.progress, leave=False)
    for epoch in bar:
        model.train()
        loss_sum, correct, seen = 0.0, 0, 0
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            lr = lr_at(step, total, warmup, cfg.lr)
            for group in opt.param_groups:
                group["lr"] = lr
            opt.zero_grad(set_to_none=True)
            if subspace is None:
                chunks: Iterable[tuple[torch.Tensor, ...]] = [(x, y)]
                n_chunks = 1
            else:
                chunks = subspace.iter_samples(x, y, num_samples=cfg.num_samples)
                n_chunks = cfg.num_samples
            for xc, yc in chunks:
                logits = model(xc)
                loss = F.cross_entropy(logits, yc) / n_chunks
                loss.backward()
                loss_sum += loss.item() * x.shape[0]
                correct += int((logits.argmax(1) == yc).sum())
            if subspace is not None and cfg.beta > 0:
                subspace.regularizer(cfg.beta).backward()
            opt.step()
            seen += x.shape[0]
            step += 1
        row = {"epoch": epoch + 1, "loss": loss_sum / seen, "train_acc": correct / seen, "lr": lr}
        history.append(row)
        bar.set_postfix(loss=f"{row['loss']:.3f}", acc=f"{row['train_acc']:.3f}")
    return history


@torch.no_grad()
def predict(
    model: nn.Module, loader: DataLoader, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, labels) over ``loader`` in eval mode."""
    model.eval()
    logits, labels = [], []
    for x, y in loader:
        logits.append(model(x.to(device)).float().cpu())
        labels.append(y)
    return torch.cat(logits), torch.cat(labels)


def metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    """Accuracy and negative log-likelihood of logits (for an ensemble: summed logits)."""
    return {
        "acc": float((logits.argmax(1) == labels).float().mean()),
        "nll": float(F.cross_entropy(logits, labels)),
    }
