"""Triton kernels against float64 references. Without a GPU they run under TRITON_INTERPRET=1
(set in conftest.py before triton is imported); bf16 is checked on GPU only (the interpreter
computes bf16 wrongly)."""

from __future__ import annotations

import pytest
import torch
from helpers import small_cnn, small_mlp
from subspace_param.kernels.combine import combine_grad_op, combine_op, gram_op

import subspace_param as sp

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _vertices(k, n, dtype=torch.float32, device=DEVICE):
    return [torch.randn(n, dtype=dtype, device=device) * (1 + i) + 0.1 * i for i in range(k)]


@pytest.mark.parametrize("n", [1, 7, 10**4 + 3])
@pytest.mark.parametrize("k", [2, 3, 5, 8])
def test_combine_forward_matches_float64(n, k):
    vs = _vertices(k, n)
    c = torch.randn(k, dtype=torch.float64)
    c = c / c.sum()
    ref = sum(c[i] * vs[i].double() for i in range(k))
    out = combine_op(c.float(), vs)
    assert out.dtype == torch.float32 and out.shape == (n,)
    torch.testing.assert_close(out.double(), ref.to(out.device), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float64])
def test_combine_other_dtypes(dtype):
    vs = _vertices(3, 1001, dtype)
    c = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    ref = sum(c[i] * vs[i].double() for i in range(3))
    tol = 1e-12 if dtype == torch.float64 else 2e-3
    torch.testing.assert_close(combine_op(c, vs).double(), ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("k", [2, 4, 8])
def test_combine_grad_fuses_task_and_regulariser_terms(k):
    n = 999
    vs = _vertices(k, n)
    g = torch.randn(n, device=DEVICE)
    c = torch.rand(k, dtype=torch.float64)
    a = torch.randn(k, k, dtype=torch.float64)
    grads = combine_grad_op(c.float(), g, a.float(), vs)
    for i in range(k):
        ref = c[i] * g.double() + sum(a[i, m] * vs[m].double() for m in range(k))
        torch.testing.assert_close(grads[i].double(), ref, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("n", [1, 7, 10**4 + 3])
def test_gram_matches_float64(n):
    vs = _vertices(4, n)
    ref = torch.stack([torch.stack([(a.double() * b.double()).sum() for b in vs]) for a in vs])
    torch.testing.assert_close(gram_op(vs).double(), ref, rtol=1e-5, atol=1e-3)


def test_gradcheck_combine_and_gram():
    vs = [torch.randn(37, dtype=torch.float64, device=DEVICE, requires_grad=True) for _ in range(3)]
    c = torch.tensor([0.3, -0.2, 0.9], dtype=torch.float64, device=DEVICE)
    assert torch.autograd.gradcheck(lambda *v: combine_op(c, list(v)), tuple(vs))
    assert torch.autograd.gradcheck(lambda *v: gram_op(list(v)), tuple(vs))


def test_opcheck_custom_ops():
    vs = [torch.randn(19, device=DEVICE, requires_grad=True) for _ in range(3)]
    c = torch.tensor([0.2, 0.3, 0.5], device=DEVICE)
    torch.library.opcheck(combine_op, (c, vs))
    torch.library.opcheck(gram_op, (vs,))


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match=r"2\.\.8 vertices"):
        combine_op(torch.ones(9), _vertices(9, 5))
    with pytest.raises(ValueError, match="vertex 1"):
        combine_op(torch.ones(2), [torch.randn(5, device=DEVICE), torch.randn(6, device=DEVICE)])


@pytest.mark.parametrize("kind", ["line", "curve", "chain", "simplex"])
def test_wrapped_model_triton_backend_equals_torch_backend(kind):
    wrap = {"line": sp.line, "curve": sp.curve, "chain": sp.chain, "simplex": sp.simplex}[kind]
    torch.manual_seed(0)
    a = small_cnn().to(DEVICE)
    sa = wrap(a, seed=0, backend="torch")
    torch.manual_seed(0)
    b = small_cnn().to(DEVICE)
    sb = wrap(b, seed=0, backend="triton")
    b.load_state_dict(a.state_dict())
    x = torch.randn(3, 3, 9, 9, device=DEVICE)
    for _ in range(2):
        p = sa.sample()
        sb.set_point(p)
        ya, yb = a(x), b(x)
        torch.testing.assert_close(yb, ya, rtol=1e-5, atol=1e-5)
        (ya.square().sum() + sa.regularizer(pairs="all")).backward()
        (yb.square().sum() + sb.regularizer(pairs="all")).backward()
    for va, vb in zip(sa.parameters(), sb.parameters()):
        torch.testing.assert_close(vb.grad, va.grad, rtol=1e-4, atol=1e-5)


def test_triton_regularizer_gradcheck_against_closed_form():
    from subspace_param.regularizer import cosine_regularizer

    rows = [[torch.randn(s, dtype=torch.float64, device=DEVICE, requires_grad=True) for _ in range(3)]
            for s in ((4, 3), (9,))]  # fmt: skip
    flat = tuple(v for r in rows for v in r)

    def f(use_triton):
        def g(*ts):
            rr = [list(ts[0:3]), list(ts[3:6])]
            return torch.stack([cosine_regularizer(rr, [(0, 2), (1, 2)], per_layer=p, use_triton=use_triton)
                                for p in (False, True)])  # fmt: skip

        return g

    torch.testing.assert_close(f(True)(*flat), f(False)(*flat))
    assert torch.autograd.gradcheck(f(True), flat)


def test_compile_fullgraph_with_triton_backend():
    from torch._dynamo.testing import CompileCounter

    torch._dynamo.reset()
    model = small_mlp(torch.float32).to(DEVICE)
    sub = sp.simplex(model, 3, seed=0, backend="triton")
    counter = CompileCounter()
    compiled = torch.compile(model, backend=counter, fullgraph=True)
    x = torch.randn(4, 7, device=DEVICE)
    for _ in range(3):
        sub.sample()
        y = compiled(x)
        torch.testing.assert_close(y, model(x))
        y.sum().backward()
    assert counter.frame_count == 1


def test_env_variable_selects_backend(monkeypatch):
    monkeypatch.setenv("SUBSPACE_PARAM_BACKEND", "torch")
    sub = sp.line(small_mlp())
    assert sub.spec["backend"] == "torch"
    monkeypatch.setenv("SUBSPACE_PARAM_BACKEND", "fast")
    with pytest.raises(ValueError, match="SUBSPACE_PARAM_BACKEND"):
        sp.line(small_mlp())


@pytest.mark.gpu
def test_bf16_on_gpu():
    vs = _vertices(3, 10**5 + 7, torch.bfloat16, "cuda")
    c = torch.tensor([0.25, 0.25, 0.5], device="cuda")
    ref = sum(c[i].double() * vs[i].double() for i in range(3))
    torch.testing.assert_close(combine_op(c, vs).double(), ref, rtol=1e-2, atol=1e-2)


def test_bf16_pytorch_backend_keeps_fp32_coefficients():
    """Like the Triton kernels, the PyTorch backend applies fp32 coefficients and rounds once: an α
    that bf16 cannot represent is not quantised first."""
    from subspace_param.ops import combine_torch

    torch.manual_seed(0)
    for k in (2, 3):
        vs = [torch.randn(10**4 + 7).bfloat16() for _ in range(k)]
        c = torch.softmax(torch.randn(k), 0) + torch.tensor([1e-3] + [0.0] * (k - 1))
        c = c / c.sum()
        expected = sum(c[i] * vs[i].float() for i in range(k)).bfloat16()  # fp32 accumulation, one rounding
        quantised = sum(c[i].bfloat16() * vs[i] for i in range(k))
        got = combine_torch(c, vs)
        assert got.dtype == torch.bfloat16
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
        assert not torch.equal(quantised, expected)  # the check can fail: the old rule differs


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_bf16_backends_agree_on_gpu():
    from subspace_param.ops import combine_torch

    vs = _vertices(3, 10**5 + 7, torch.bfloat16, "cuda")
    c = torch.tensor([0.2501, 0.2499, 0.5], device="cuda")
    torch.testing.assert_close(combine_op(c, vs), combine_torch(c, vs), rtol=0, atol=2**-7)


def test_segmented_kernels_skip_frozen_vertices_and_read_gradients_in_place():
    from subspace_param.kernels.segmented import chunk_table, segment_offsets, segmented_combine_grad

    torch.manual_seed(1)
    sizes, k = [5, 48, 1, 33], 3
    offsets = segment_offsets(sizes)
    vs = [torch.zeros(offsets[-1], dtype=torch.float64) for _ in range(k)]
    for v in vs:
        for i, n in enumerate(sizes):
            v[offsets[i] : offsets[i] + n] = torch.randn(n, dtype=torch.float64)
    table = chunk_table(sizes, [0] * len(sizes), "cpu", torch.float64, block=16)
    grads = [torch.randn(n, dtype=torch.float64) for n in sizes]
    c = torch.rand(1, k, dtype=torch.float64)
    lincomb = torch.randn(len(sizes), k, k, dtype=torch.float64)
    out = segmented_combine_grad(c, grads, lincomb, vs, table, wanted=[True, False, True])
    assert out[1] is None
    for i, n in enumerate(sizes):
        seg = slice(offsets[i], offsets[i] + n)
        stacked = torch.stack([v[seg] for v in vs])
        for j in (0, 2):
            torch.testing.assert_close(out[j][seg], c[0, j] * grads[i] + lincomb[i, j] @ stacked)


def test_forcing_triton_where_it_cannot_run_is_a_clear_error(monkeypatch):
    import subspace_param.subspace as engine

    monkeypatch.setattr(engine, "triton_usable", lambda: False)
    with pytest.raises(sp.SubspaceError, match="backend='triton' needs triton"):
        sp.line(small_mlp(), backend="triton")
    assert not sp.is_wrapped(small_mlp())
