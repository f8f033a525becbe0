"""Entry points the engine calls; Triton is imported lazily so CPU-only installs never need it."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch


@functools.cache
def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except Exception:
        return False
    return True


def combine(coefficients: torch.Tensor, vertices: Sequence[torch.Tensor]) -> torch.Tensor:
    from .combine import combine_op

    return combine_op(coefficients, list(vertices))
