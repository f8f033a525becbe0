"""The weight combination w = Σ_k c_k V_k, dispatched to the PyTorch or the Triton backend.

Backend choice, per call: the ``backend`` argument of the wrapper, else the environment variable
``SUBSPACE_PARAM_BACKEND`` (``torch`` | ``triton`` | ``auto``), else ``auto`` = Triton for CUDA
tensors when Triton is importable, PyTorch otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

BACKENDS = ("auto", "torch", "triton")


def resolve_backend(backend: str | None) -> str:
    chosen = backend or os.environ.get("SUBSPACE_PARAM_BACKEND", "auto")
    if chosen not in BACKENDS:
        raise ValueError(
            f"backend must be one of {BACKENDS} (argument or SUBSPACE_PARAM_BACKEND), got {chosen!r}"
        )
    return chosen


def combine_torch(
    coefficients: torch.Tensor, vertices: Sequence[torch.Tensor], out: torch.Tensor | None = None
) -> torch.Tensor:
    """w = Σ_k c_k V_k with single fused ops: one ``lerp`` for K = 2 (valid since c_0 + c_1 = 1),
    otherwise one ``mul`` and K − 1 in-place ``addcmul_`` (no temporaries); into ``out`` if given.

    The coefficients stay in fp32 (fp64 for fp64 vertices) whatever the vertex dtype, as in the
    Triton kernels: α is not rounded to bf16 before it is applied, so both backends agree."""
    acc = torch.float64 if vertices[0].dtype == torch.float64 else torch.float32
    c = coefficients.to(acc)
    if vertices[0].dtype in (torch.float32, torch.float64):
        if len(vertices) == 2:
            if out is None:
                return torch.lerp(vertices[0], vertices[1], c[1].to(vertices[0].dtype))
            return torch.lerp(vertices[0], vertices[1], c[1].to(vertices[0].dtype), out=out)
        w = torch.mul(vertices[0], c[0], out=out) if out is not None else torch.mul(vertices[0], c[0])
        for k in range(1, len(vertices)):
            w.addcmul_(vertices[k], c[k])
        return w
    # half precision: accumulate in fp32 like the kernels, round once
    w32 = vertices[0].to(acc) * c[0]
    for k in range(1, len(vertices)):
        w32.add_(vertices[k].to(acc) * c[k])
    return w32.to(vertices[0].dtype) if out is None else out.copy_(w32)


def triton_usable() -> bool:
    """Triton importable and runnable here (CUDA, or the CPU interpreter). Checked at wrap time."""
    from .kernels.dispatch import triton_available

    return triton_available()


def uses_triton(backend: str, triton_ok: bool, device: torch.device, num_vertices: int) -> bool:
    """The backend decision: Triton when forced (``backend="triton"``), or with ``"auto"`` for CUDA
    tensors when Triton can run (``triton_ok``, resolved once at wrap time, so nothing is looked up
    inside a compiled graph) and K ≤ the kernels' MAX_VERTICES."""
    if backend == "triton":
        return True
    from .kernels.limits import MAX_VERTICES

    return backend == "auto" and triton_ok and device.type == "cuda" and num_vertices <= MAX_VERTICES


def combine(
    coefficients: torch.Tensor,
    vertices: Sequence[torch.Tensor],
    backend: str = "auto",
    triton_ok: bool = False,
) -> torch.Tensor:
    """``w = Σ_k c_k V_k`` on the backend :func:`uses_triton` picks."""
    if uses_triton(backend, triton_ok, vertices[0].device, len(vertices)):
        from .kernels.combine import combine_op

        return combine_op(coefficients, list(vertices))
    return combine_torch(coefficients, vertices)
