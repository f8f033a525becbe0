"""Entry points the engine calls; Triton is imported lazily so CPU-only installs never need it."""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence

import torch

from .limits import MAX_VERTICES

__all__ = ["MAX_VERTICES", "gram", "triton_available"]


@functools.cache
def triton_available() -> bool:
    """Triton importable and able to run here (a CUDA device, or the CPU interpreter)."""
    try:
        import triton  # noqa: F401
    except Exception:
        return False
    return torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET", "0") == "1"


def gram(vertices: Sequence[torch.Tensor]) -> torch.Tensor:
    """G[a, b] = ⟨V_a, V_b⟩ in one pass over the vertices (differentiable)."""
    from .combine import gram_op

    return gram_op(list(vertices))
