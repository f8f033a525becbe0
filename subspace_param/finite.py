"""Divergence checks: a NaN or infinite loss or gradient is found at once, never trained on silently.

The loops of :mod:`subspace_param.training`, :mod:`subspace_param.experiments.runs` and
:meth:`subspace_param.Subspace.check_finite` share :func:`nonfinite_problems`: one reduction over
the loss and the total gradient norm ‖(‖g_1‖, …, ‖g_n‖)‖ (finite iff every entry of every gradient
is), so the common, healthy case costs one norm per tensor and one host sync; only when it fails
are the offending tensors named.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from .errors import NonFiniteError


def _bad(t: torch.Tensor) -> bool:
    return not bool(torch.isfinite(t).all())


def nonfinite_problems(
    loss: torch.Tensor | float | None,
    named_parameters: Iterable[tuple[str, torch.Tensor]] = (),
    *,
    gradients: bool = True,
    values: bool = False,
    limit: int = 5,
) -> list[str]:
    """What is not finite: ``["loss nan", "gradient of 0.weight (3 of 12 entries)", …]`` (empty if all is).

    Args:
        loss: the training loss (or None).
        named_parameters: ``(name, parameter)`` pairs whose ``.grad`` (``gradients``) and values
            (``values``) are checked.
        limit: at most this many tensors are named.
    """
    problems: list[str] = []
    if loss is not None:
        value = torch.as_tensor(loss).detach()
        if _bad(value):
            problems.append(f"loss {float(value.float().sum()):.4g}")
    named = list(named_parameters)
    for kind, enabled, get in (
        ("gradient", gradients, lambda p: p.grad),
        ("value", values, lambda p: p.detach()),
    ):
        tensors = [(n, get(p)) for n, p in named if enabled and get(p) is not None]
        if not tensors:
            continue
        total = torch.nn.utils.get_total_norm([t for _, t in tensors], foreach=False)
        if not _bad(total):
            continue
        bad = [(n, t) for n, t in tensors if _bad(t)]
        for n, t in bad[:limit]:
            count = int((~torch.isfinite(t)).sum())
            problems.append(f"{kind} of {n} ({count} of {t.numel()} entries)")
        if len(bad) > limit:
            problems.append(f"… and {len(bad) - limit} more {kind}s")
    return problems


def check_finite(
    loss: torch.Tensor | float | None,
    named_parameters: Iterable[tuple[str, torch.Tensor]] = (),
    *,
    where: str = "",
    gradients: bool = True,
    values: bool = False,
) -> None:
    """Raise :class:`NonFiniteError` naming ``where`` and what is NaN/inf (see :func:`nonfinite_problems`)."""
    problems = nonfinite_problems(loss, named_parameters, gradients=gradients, values=values)
    if problems:
        at = f" at {where}" if where else ""
        raise NonFiniteError(f"non-finite {', '.join(problems)}{at}: training diverged")
