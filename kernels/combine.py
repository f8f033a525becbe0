"""``torch.library`` custom ops around the Triton kernels (opaque to Inductor, so
``torch.compile(fullgraph=True)`` works, with ``register_fake`` and ``register_autograd``).

* ``subspace_param::combine(c, V) -> w``                    w = Σ_k c_k V_k
* ``subspace_param::combine_grad(c, g, A, V, has_g, has_a)`` ∂/∂V_k = c_k g + Σ_m A[k, m] V_m
* ``subspace_param::gram(V) -> G``                          G[a, b] = ⟨V_a, V_b⟩ (K × K, symmetric)

All tensors must be contiguous and on the same device; K ≤ MAX_VERTICES.
"""

from __future__ import annotations

import os

import torch
import triton

from .limits import MAX_VERTICES
from .triton_kernels import combine_bwd, combine_fwd


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _block(n: int) -> int:
    # the interpreter's cost grows with the number of programs: few large blocks there
    if _interpreting():
        return max(16, min(8192, triton.next_power_of_2(n)))
    return 1024


def _acc(t: torch.Tensor):
    import triton.language as tl

    return tl.float64 if t.dtype == torch.float64 else tl.float32


def _check(vertices: list[torch.Tensor], what: str) -> None:
    k = len(vertices)
    if not 2 <= k <= MAX_VERTICES:
        raise ValueError(f"{what}: the Triton kernels take 2..{MAX_VERTICES} vertices, got {k}")
    v0 = vertices[0]
    for i, v in enumerate(vertices):
        if v.shape != v0.shape or v.dtype != v0.dtype or v.device != v0.device:
            raise ValueError(
                f"{what}: vertex {i} is {v.dtype}{tuple(v.shape)} on {v.device}, vertex 0 is "
                f"{v0.dtype}{tuple(v0.shape)} on {v0.device}"
            )


@torch.library.custom_op("subspace_param::combine", mutates_args=())
def combine_op(coefficients: torch.Tensor, vertices: list[torch.Tensor]) -> torch.Tensor:
    _check(vertices, "combine")
    vs = tuple(v.contiguous() for v in vertices)
    c = coefficients.to(
        device=vs[0].device, dtype=torch.float64 if vs[0].dtype == torch.float64 else torch.float32
    )
    out = torch.empty_like(vs[0])
    n = out.numel()
    if n:
        block = _block(n)
        combine_fwd[(triton.cdiv(n, block),)](
            out,
            c.contiguous(),
            vs,
            out,
            n,
            out,
            out,
            out,
            K=len(vs),
            WRITE_OUT=True,
            GRAM=False,
            SEGMENTED=False,
            ACC=_acc(vs[0]),
            BLOCK=block,
        )
    return out


@combine_op.register_fake
def _(coefficients: torch.Tensor, vertices: list[torch.Tensor]) -> torch.Tensor:
    return torch.empty_like(vertices[0])


@torch.library.custom_op("subspace_param::combine_grad", mutates_args=())
def combine_grad_op(
    coefficients: torch.Tensor,
    grad: torch.Tensor,
    lincomb: torch.Tensor,
    vertices: list[torch.Tensor],
    has_grad: bool,
    has_lincomb: bool,
) -> list[torch.Tensor]:
    _check(vertices, "combine_grad")
    vs = tuple(v.contiguous() for v in vertices)
    acc_dtype = torch.float64 if vs[0].dtype == torch.float64 else torch.float32
    c = coefficients.to(device=vs[0].device, dtype=acc_dtype).contiguous()
    a = lincomb.to(device=vs[0].device, dtype=acc_dtype).contiguous()
    grads = [torch.empty_like(vs[0]) for _ in vs]
    n = vs[0].numel()
    if n:
        block = _block(n)
        combine_bwd[(triton.cdiv(n, block),)](
            tuple(grads), grad.contiguous(), c, a, vs, n, c, c, c, c,
            K=len(vs), HAS_G=has_grad, HAS_A=has_lincomb, SEGMENTED=False, ACC=_acc(vs[0]), BLOCK=block,
        )  # fmt: skip
    return grads


@combine_grad_op.register_fake
def _(coefficients, grad, lincomb, vertices, has_grad, has_lincomb):  # type: ignore[no-untyped-def]
    return [torch.empty_like(v) for v in vertices]


@torch.library.custom_op("subspace_param::gram", mutates_args=())
def gram_op(vertices: list[torch.Tensor]) -> torch.Tensor:
    _check(vertices, "gram")
    vs = tuple(v.contiguous() for v in vertices)
    k = len(vs)
    acc_dtype = torch.float64 if vs[0].dtype == torch.float64 else torch.float32
    n = vs[0].numel()
    block = _block(max(n, 1))
    programs = max(1, triton.cdiv(n, block))
    partials = torch.zeros(programs, k * (k + 1) // 2, dtype=acc_dtype, device=vs[0].device)
    if n:
        combine_fwd[(programs,)](
            vs[0], vs[0], vs, partials, n, vs[0], vs[0], vs[0],
            K=k, WRITE_OUT=False, GRAM=True, SEGMENTED=False, ACC=_acc(vs[0]), BLOCK=block,
        )  # fmt: skip
    return unpack_upper(partials.sum(0), k)


@gram_op.register_fake
def _(vertices: list[torch.Tensor]) -> torch.Tensor:
    k = len(vertices)
    dtype = torch.float64 if vertices[0].dtype == torch.float64 else torch.float32
    return vertices[0].new_empty((k, k), dtype=dtype)


def unpack_upper(upper: torch.Tensor, k: int) -> torch.Tensor:
    """``(..., K(K+1)/2)`` upper-triangle entries (row-major) → symmetric ``(..., K, K)``."""
    iu = torch.triu_indices(k, k, device=upper.device)
    full = upper.new_zeros(*upper.shape[:-1], k, k)
    full[..., iu[0], iu[1]] = upper
    return full + full.triu(1).transpose(-1, -2)


# -- autograd -------------------------------------------------------------------------------------
def _combine_setup(ctx, inputs, output):  # type: ignore[no-untyped-def]
    coefficients, vertices = inputs
    ctx.save_for_backward(coefficients, *vertices)


def _combine_backward(ctx, grad):  # type: ignore[no-untyped-def]
    coefficients, *vertices = ctx.saved_tensors
    k = len(vertices)
    unused = coefficients.new_zeros(k, k)
    grads = combine_grad_op(coefficients, grad, unused, vertices, True, False)
    return None, grads


combine_op.register_autograd(_combine_backward, setup_context=_combine_setup)


def _gram_setup(ctx, inputs, output):  # type: ignore[no-untyped-def]
    (vertices,) = inputs
    ctx.save_for_backward(*vertices)


def _gram_backward(ctx, grad_gram):  # type: ignore[no-untyped-def]
    vertices = ctx.saved_tensors
    k = len(vertices)
    a = grad_gram + grad_gram.T  # ∂⟨V_a, V_b⟩/∂V_a = V_b: A[k, m] = G[k, m] + G[m, k]
    unused = torch.zeros(1, dtype=a.dtype, device=a.device)
    return (combine_grad_op(a.new_zeros(k), unused, a, list(vertices), False, True),)


gram_op.register_autograd(_gram_backward, setup_context=_gram_setup)
