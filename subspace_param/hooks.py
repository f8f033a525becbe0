"""The library's own hooks on a wrapped model carry a mark, so that an exported copy drops them all.

Root forward pre-hooks, in the order they run (the contract; ``tests/test_point_as_input.py`` and
``tests/test_autosample.py`` check it):

1. hooks that choose the point, registered with ``prepend=True``: :mod:`subspace_param.autosample`;
2. the stale-point check (:mod:`subspace_param.stale_point`), registered at wrap time;
3. the fused path's materialisation (:mod:`subspace_param.fused`), which computes every weight at
   the point it finds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from .names import HOOK_MARK


def mark(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a hook function (or method) as the library's."""
    setattr(fn, HOOK_MARK, True)
    return fn


def strip(model: nn.Module) -> None:
    """Remove every marked hook from every module of ``model``."""
    for m in model.modules():
        for hooks in (m._forward_pre_hooks, m._forward_hooks):
            for key in [k for k, h in hooks.items() if getattr(h, HOOK_MARK, False)]:
                del hooks[key]
