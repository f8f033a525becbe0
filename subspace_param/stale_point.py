"""A loop that forgets to move the point is told.

A wrapped model trained without ``sub.sample()`` per step (or ``sub.autosample(beta)``) trains at
one point: its vertices receive fixed fractions of one gradient, so it is one network stored K
times, not a subspace. A forward pre-hook installed at wrap time counts grad-enabled training-mode
forwards in a row at an unchanged point buffer (same tensor, same version); at
:data:`REPEATS_BEFORE_WARNING` it warns once, naming the calls to use. Forwards under
``torch.no_grad()`` (BatchNorm re-estimation, evaluation) and compiled forwards are not counted.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from . import hooks
from .names import POINT_BUFFER, STALE_ATTRIBUTE

#: consecutive training forwards at one point that trigger the warning (gradient accumulation over
#: fewer micro-batches than this stays silent)
REPEATS_BEFORE_WARNING = 8


class StalePointWarning(UserWarning):
    """Several training forwards of a subspace ran at one unchanged point."""


def _check(module: nn.Module, args: Any) -> None:
    if not module.training or not torch.is_grad_enabled() or torch.compiler.is_compiling():
        return
    state = module.__dict__.setdefault(STALE_ATTRIBUTE, {"key": None, "repeats": 0, "warned": False})
    if state["warned"]:
        return
    point = module._buffers[POINT_BUFFER]
    key = (id(point), point._version)
    if key != state["key"]:
        state["key"], state["repeats"] = key, 1
        return
    state["repeats"] += 1
    if state["repeats"] >= REPEATS_BEFORE_WARNING:
        state["warned"] = True
        warnings.warn(
            f"{state['repeats']} training forwards of {type(module).__name__} in a row ran at the same "
            f"point {point.flatten().tolist()[:4]}: the subspace is trained as one network. Call "
            "sub.sample() before each step, or sub.autosample(beta) once for a loop you do not own "
            "(Hugging Face Trainer, Lightning)",
            StalePointWarning,
            stacklevel=3,
        )


hooks.mark(_check)


def install(model: nn.Module) -> None:
    model.register_forward_pre_hook(_check)
