"""``torch.library`` custom ops around the Triton kernels (opaque to Inductor, so
``torch.compile(fullgraph=True)`` works, with ``register_fake`` and ``register_autograd``).

* ``subspace_param::combine(c, V) -> w``                    w = Σ_k c_k V_k
* ``subspace_param::combine_grad(c, g?, A?, V)``           ∂/∂V_k = c_k g + Σ_m A[k, m] V_m
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


#: (BLOCK, num_warps) per vertex dtype on a GPU: 4 fp64 / 8 fp32 / 8 half-precision elements per
#: thread, i.e. one or two 128-bit accesses per vertex per thread. From the compile report
#: (``benchmarks/aot_compile.py --arch 80 90``): every configuration has 128-bit loads and stores and
#: none spills; 16 half-precision elements per thread (BLOCK 2048) spilled on sm_80 at K = 5 with
#: the regulariser term (128 registers, 16 bytes), hence 1024 for every dtype but fp64.
LAUNCH_CONFIG: dict[torch.dtype, tuple[int, int]] = {
    torch.float64: (512, 4),
    torch.float32: (1024, 4),
    torch.bfloat16: (1024, 4),
    torch.float16: (1024, 4),
}


def launch_config(dtype: torch.dtype, n: int) -> tuple[int, int]:
    """(BLOCK, num_warps) for ``n`` elements of ``dtype``; under the interpreter one large block
    (its cost grows with the number of programs)."""
    if _interpreting():
        return max(16, min(8192, triton.next_power_of_2(max(n, 1)))), 4
    return LAUNCH_CONFIG.get(dtype, (1024, 4))


def _block(n: int, dtype: torch.dtype = torch.float32) -> int:
    return launch_config(dtype, n)[0]


def _acc(t: torch.Tensor):
    import triton.language as tl

    return tl.float64 if t.dtype == torch.float64 else tl.float32


def acc_dtype(t: torch.Tensor) -> torch.dtype:
    """The accumulation (and coefficient) dtype of the kernels for vertices like ``t``."""
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def want_mask(wanted: list[bool] | None, k: int) -> int:
    """Bit mask of the vertices whose gradient is written (all when ``wanted`` is None)."""
    return (1 << k) - 1 if wanted is None else sum(1 << i for i, w in enumerate(wanted) if w)


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
    c = coefficients.to(device=vs[0].device, dtype=acc_dtype(vs[0])).contiguous()
    out = torch.empty_like(vs[0])
    n = out.numel()
    if n:
        block, warps = launch_config(vs[0].dtype, n)
        combine_fwd[(triton.cdiv(n, block),)](
            out, c, vs, out, n, c,
            K=len(vs), WRITE_OUT=True, GRAM=False, SEGMENTED=False, ACC=_acc(vs[0]), BLOCK=block,
            num_warps=warps,
        )  # fmt: skip
    return out


@combine_op.register_fake
def _(coefficients: torch.Tensor, vertices: list[torch.Tensor]) -> torch.Tensor:
    return torch.empty_like(vertices[0])


@torch.library.custom_op("subspace_param::combine_grad", mutates_args=())
def combine_grad_op(
    coefficients: torch.Tensor,
    grad: torch.Tensor | None,
    lincomb: torch.Tensor | None,
    vertices: list[torch.Tensor],
) -> list[torch.Tensor]:
    """∂/∂V_k = c_k g + Σ_m A[k, m] V_m; ``grad`` g or ``lincomb`` A may be None (not both)."""
    _check(vertices, "combine_grad")
    if grad is None and lincomb is None:
        raise ValueError("combine_grad needs the weight gradient, the Gram term, or both")
    vs = tuple(v.contiguous() for v in vertices)
    c = coefficients.to(device=vs[0].device, dtype=acc_dtype(vs[0])).contiguous()
    a = c if lincomb is None else lincomb.to(device=vs[0].device, dtype=c.dtype).contiguous()
    g = vs[0] if grad is None else grad.contiguous()
    grads = [torch.empty_like(vs[0]) for _ in vs]
    n = vs[0].numel()
    if n:
        block, warps = launch_config(vs[0].dtype, n)
        combine_bwd[(triton.cdiv(n, block),)](
            tuple(grads), (g,), c, a, vs, n, c,
            K=len(vs), T=1, WANT=want_mask(None, len(vs)), HAS_G=grad is not None,
            HAS_A=lincomb is not None, SEGMENTED=False, ACC=_acc(vs[0]), BLOCK=block, num_warps=warps,
        )  # fmt: skip
    return grads


@combine_grad_op.register_fake
def _(coefficients, grad, lincomb, vertices):  # type: ignore[no-untyped-def]
    return [torch.empty_like(v) for v in vertices]


@torch.library.custom_op("subspace_param::gram", mutates_args=())
def gram_op(vertices: list[torch.Tensor]) -> torch.Tensor:
    _check(vertices, "gram")
    vs = tuple(v.contiguous() for v in vertices)
    k = len(vs)
    n = vs[0].numel()
    block, warps = launch_config(vs[0].dtype, n)
    programs = max(1, triton.cdiv(n, block))
    partials = torch.zeros(programs, k * (k + 1) // 2, dtype=acc_dtype(vs[0]), device=vs[0].device)
    if n:
        combine_fwd[(programs,)](
            vs[0], vs[0], vs, partials, n, partials,
            K=k, WRITE_OUT=False, GRAM=True, SEGMENTED=False, ACC=_acc(vs[0]), BLOCK=block,
            num_warps=warps,
        )  # fmt: skip
    return unpack_upper(partials.sum(0), k)


@gram_op.register_fake
def _(vertices: list[torch.Tensor]) -> torch.Tensor:
    k = len(vertices)
    return vertices[0].new_empty((k, k), dtype=acc_dtype(vertices[0]))


_UPPER_INDEX: dict[tuple[int, torch.device], torch.Tensor] = {}


def unpack_upper(upper: torch.Tensor, k: int) -> torch.Tensor:
    """``(..., K(K+1)/2)`` upper-triangle entries (row-major) → symmetric ``(..., K, K)``: one
    gather through a cached K × K index (entry (a, b) reads pair (min, max))."""
    key = (k, upper.device)
    if key not in _UPPER_INDEX:
        pair = {}
        for a in range(k):
            for b in range(a, k):
                pair[(a, b)] = len(pair)
        index = [pair[(min(a, b), max(a, b))] for a in range(k) for b in range(k)]
        _UPPER_INDEX[key] = torch.tensor(index, device=upper.device)
    return upper.index_select(-1, _UPPER_INDEX[key]).reshape(*upper.shape[:-1], k, k)


# -- autograd -------------------------------------------------------------------------------------
def _combine_setup(ctx, inputs, output):  # type: ignore[no-untyped-def]
    coefficients, vertices = inputs
    ctx.save_for_backward(coefficients, *vertices)


def _combine_backward(ctx, grad):  # type: ignore[no-untyped-def]
    coefficients, *vertices = ctx.saved_tensors
    return None, combine_grad_op(coefficients, grad, None, vertices)


combine_op.register_autograd(_combine_backward, setup_context=_combine_setup)


def _gram_setup(ctx, inputs, output):  # type: ignore[no-untyped-def]
    (vertices,) = inputs
    ctx.save_for_backward(*vertices)


def _gram_backward(ctx, grad_gram):  # type: ignore[no-untyped-def]
    vertices = ctx.saved_tensors
    a = grad_gram + grad_gram.T  # ∂⟨V_a, V_b⟩/∂V_a = V_b: A[k, m] = G[k, m] + G[m, k]
    return (combine_grad_op(a.new_zeros(len(vertices)), None, a, list(vertices)),)


gram_op.register_autograd(_gram_backward, setup_context=_gram_setup)
