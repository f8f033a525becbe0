"""Training and evaluation loops shared by the experiments, examples and CLI.

A subspace step is the ordinary step plus two lines: draw a point, add β·cos²::

    subspace.sample()
    loss = cross_entropy(model(x), y) + subspace.regularizer(beta)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .errors import NonFiniteError
from .finite import nonfinite_problems
from .metrics import classification_metrics
from .subspace import Subspace


@dataclasses.dataclass
class TrainConfig:
    """The training recipe: optimizer, learning-rate schedule (stepped per iteration) and the
    subspace terms (β of the cos² regulariser, points drawn per batch).

    Defaults: SGD with momentum 0.9, a linear warm-up then cosine decay. ``optimizer="adam"``
    uses Adam with ``betas`` (the intrinsic-dimension recipe: lr 3e-3, betas (0.9, 0.99),
    ``schedule="constant"``). ``point_weight_decay`` adds ½·wd·‖w(point)‖² of the covered tensors
    at the sampled point (Garipov et al.'s curve objective; use with ``weight_decay=0``).
    ``on_nonfinite``: a step whose loss or gradients are NaN/inf raises
    :class:`~subspace_param.errors.NonFiniteError` naming the epoch and step (``"stop"``, default)
    or is skipped without an optimizer step and counted in the history's ``skipped`` (``"skip"``).
    """

    epochs: int = 30
    lr: float = 0.05
    optimizer: Literal["sgd", "adam"] = "sgd"
    momentum: float = 0.9
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 5e-4
    schedule: Literal["cosine", "constant", "garipov"] = "cosine"
    warmup_epochs: float = 1.0
    beta: float = 1.0
    point_weight_decay: float = 0.0
    num_samples: int = 1
    on_nonfinite: Literal["stop", "skip"] = "stop"
    progress: bool = True
    desc: str = "train"

    def __post_init__(self) -> None:
        if self.on_nonfinite not in ("stop", "skip"):
            raise ValueError(f"TrainConfig.on_nonfinite must be 'stop' or 'skip', got {self.on_nonfinite!r}")


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"{type(model).__name__} has no trainable parameters")
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    raise ValueError(f"TrainConfig.optimizer must be 'sgd' or 'adam', got {cfg.optimizer!r}")


SCHEDULES = ("cosine", "constant", "garipov")


def lr_at(step: int, total: int, warmup: int, base: float, schedule: str = "cosine") -> float:
    """lr = base·(s+1)/warmup during warm-up, then, with progress u = s / total:

    * ``cosine``: base·½(1 + cos(π·(s − warmup)/(total − warmup)));
    * ``constant``: base;
    * ``garipov`` (Garipov et al.'s curve schedule): base for u ≤ 0.5, then linearly down to
      0.01·base at u = 0.9, then 0.01·base.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"TrainConfig.schedule must be one of {SCHEDULES}, got {schedule!r}")
    if step < warmup:
        return base * (step + 1) / warmup
    if schedule == "constant":
        return base
    if schedule == "garipov":
        u = step / max(1, total)
        factor = 1.0 if u <= 0.5 else (1.0 - 0.99 * (u - 0.5) / 0.4 if u <= 0.9 else 0.01)
        return base * factor
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * progress))


def train(
    model: nn.Module,
    loader: DataLoader,
    cfg: TrainConfig,
    subspace: Subspace | None = None,
    device: torch.device | str = "cpu",
    eval_loader: DataLoader | None = None,
) -> list[dict[str, float]]:
    """Train ``model`` (a plain model, or a wrapped one when ``subspace`` is given: a point is
    drawn per chunk of each batch) and return per-epoch metrics (``epoch``, ``step``, ``loss``,
    ``train_acc``, ``lr``, ``skipped`` (non-finite steps skipped), and ``test_loss``/``test_acc``
    on ``eval_loader`` when given, at the current point). A non-finite loss or gradient stops
    training with :class:`~subspace_param.errors.NonFiniteError` before the optimizer step, so
    the weights stay those of the last good step (``cfg.on_nonfinite="skip"`` skips it instead)."""
    opt = make_optimizer(model, cfg)
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    steps_per_epoch = len(loader)
    total = cfg.epochs * steps_per_epoch
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    history: list[dict[str, float]] = []
    step = 0
    bar = tqdm(range(cfg.epochs), desc=cfg.desc, disable=not cfg.progress, leave=False)
    for epoch in bar:
        model.train()
        loss_sum, correct, seen, skipped = 0.0, 0, 0, 0
        for i, (x, y) in enumerate(loader):
            x, y = x.to(device), y.to(device)
            lr = lr_at(step, total, warmup, cfg.lr, cfg.schedule)
            for group in opt.param_groups:
                group["lr"] = lr
            opt.zero_grad(set_to_none=True)
            if subspace is None:
                chunks: Iterable[tuple[torch.Tensor, ...]] = [(x, y)]
                n_chunks = 1
            else:
                chunks = subspace.iter_samples(x, y, num_samples=cfg.num_samples)
                n_chunks = cfg.num_samples
            step_loss, step_correct, reg_value = 0.0, 0, 0.0
            for xc, yc in chunks:
                logits = model(xc)
                loss = F.cross_entropy(logits, yc) / n_chunks
                if subspace is not None and cfg.point_weight_decay > 0:
                    sq = sum(getattr(r.module, r.local_name).square().sum() for r in subspace.refs)
                    loss = loss + 0.5 * cfg.point_weight_decay * sq / n_chunks
                loss.backward()
                step_loss += loss.item()
                step_correct += int((logits.argmax(1) == yc).sum())
            if subspace is not None and cfg.beta > 0:
                reg = subspace.regularizer(cfg.beta)
                reg.backward()
                reg_value = float(reg.detach())
            step += 1
            problems = nonfinite_problems(step_loss + reg_value, trainable)
            if problems:
                where = f"epoch {epoch + 1}, step {step} (batch {i + 1} of {steps_per_epoch})"
                if cfg.on_nonfinite == "stop":
                    raise NonFiniteError(
                        f"non-finite {', '.join(problems)} at {where}: training diverged; the weights are "
                        "those of the last good step (lower the learning rate, or on_nonfinite='skip')"
                    )
                skipped += 1
                opt.zero_grad(set_to_none=True)
                continue
            loss_sum += step_loss * x.shape[0]
            correct += step_correct
            seen += x.shape[0]
            opt.step()
        row = {
            "epoch": epoch + 1,
            "step": step,
            "loss": loss_sum / seen if seen else float("nan"),
            "train_acc": correct / seen if seen else float("nan"),
            "lr": lr,
            "skipped": skipped,
        }
        if eval_loader is not None:
            m = metrics(*predict(model, eval_loader, device))
            row.update(test_loss=m["nll"], test_acc=m["acc"])
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
    """Accuracy, negative log-likelihood and 20-bin ECE of logits (for an ensemble: summed logits)."""
    return classification_metrics(logits, labels)
