"""The fused (multi-tensor) path: one launch materialises every covered tensor of a model.

Triton cases run the segmented kernels under TRITON_INTERPRET=1 on CPU (conftest.py) against
float64 references; launch counts are read by wrapping the kernel objects.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager

import pytest
import torch
from helpers import small_cnn, small_mlp
from subspace_param.kernels import combine as per_tensor_kernels
from subspace_param.kernels import segmented as segmented_kernels
from torch import nn

import subspace_param as sp
from subspace_param.fused import fused_weights
from subspace_param.parametrization import point_coefficients
from subspace_param.regularizer import EPS

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
SHAPES = [(1, 1), (7, 1), (5,), (1, 10**4 + 3), (3, 3, 2)]


class Bag(nn.Module):
    """Parameters of odd shapes read by attribute access; output Σ_L ⟨p_L, x_L⟩."""

    def __init__(self, shapes=SHAPES, dtype=torch.float64) -> None:
        super().__init__()
        self.n = len(shapes)
        for i, s in enumerate(shapes):
            setattr(self, f"p{i}", nn.Parameter(torch.randn(*s, dtype=dtype, device=DEVICE)))

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return sum((getattr(self, f"p{i}") * x).sum() for i, x in enumerate(xs))


GEOMETRIES = {
    "line": sp.line,
    "bezier": sp.curve,
    "chain2": lambda m, **kw: sp.chain(m, bends=2, **kw),
    "simplex5": lambda m, **kw: sp.simplex(m, 5, **kw),
    "simplex8": lambda m, **kw: sp.simplex(m, 8, **kw),
}


class _Counted:
    def __init__(self, kernel) -> None:
        self.kernel, self.launches = kernel, 0

    def __getitem__(self, grid):
        self.launches += 1
        return self.kernel[grid]


@contextmanager
def count_launches(monkeypatch):
    counters = {}
    for module, name, key in (
        (segmented_kernels, "combine_fwd", "fused fwd"),
        (segmented_kernels, "combine_bwd", "fused bwd"),
        (per_tensor_kernels, "combine_fwd", "per-tensor fwd"),
        (per_tensor_kernels, "combine_bwd", "per-tensor bwd"),
    ):
        counters[key] = _Counted(getattr(module, name))
        monkeypatch.setattr(module, name, counters[key])
    yield counters
    monkeypatch.undo()


def _reference(vertices, c, xs, beta, pairs, per_layer, covered):
    """Float64 loss Σ_L ⟨Σ_k c_k V_k^L, x_L⟩ + β · mean_pairs cos² and its vertex gradients."""
    leaves = [[v.detach().double().clone().requires_grad_() for v in row] for row in vertices]
    loss = sum((sum(c[k].double() * row[k] for k in range(len(row))) * x.double()).sum()
               for row, x in zip(leaves, xs))  # fmt: skip
    if beta:
        terms = []
        for i, j in pairs:
            d = torch.stack([(leaves[L][i] * leaves[L][j]).sum() for L in covered])
            ni = torch.stack([leaves[L][i].square().sum() for L in covered])
            nj = torch.stack([leaves[L][j].square().sum() for L in covered])
            if per_layer:
                terms.append((d.square() / (ni * nj).clamp_min(EPS)).mean())
            else:
                terms.append(d.sum().square() / (ni.sum() * nj.sum()))
        loss = loss + beta * torch.stack(terms).mean()
    grads = torch.autograd.grad(loss, [v for row in leaves for v in row])
    return loss.detach(), grads


@pytest.mark.parametrize("regularizer", ["none", "global", "per_layer"])
@pytest.mark.parametrize("geometry", list(GEOMETRIES))
def test_fused_triton_step_matches_float64_in_one_launch_each_way(geometry, regularizer, monkeypatch):
    model = Bag()
    sub = GEOMETRIES[geometry](model, seed=3, backend="triton")
    k = sub.num_vertices
    fused = fused_weights(model)
    assert fused is not None and fused.unsupported is None
    pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
    beta = 0.0 if regularizer == "none" else 0.7
    covered = [i for i, s in enumerate(SHAPES) if len(s) >= 2]
    xs = [torch.randn(*s, dtype=torch.float64, device=DEVICE) for s in SHAPES]
    for step in range(2):  # step 0 asks for the Gram entries, step 1 gets them from the forward
        sub.sample()
        vertices = [[v.detach().clone() for v in row] for row in sub.vertices()]
        for p in sub.parameters():
            p.grad = None
        with count_launches(monkeypatch) as launches:
            loss = model(xs)
            if beta:
                loss = loss + sub.regularizer(beta, pairs="all", per_layer=regularizer == "per_layer")
            loss.backward()
        ref_loss, ref_grads = _reference(
            vertices, sub.coefficients, xs, beta, pairs, regularizer == "per_layer", covered
        )
        torch.testing.assert_close(loss.detach(), ref_loss, rtol=1e-10, atol=1e-10)
        for p, g in zip(sub.parameters(), ref_grads):
            torch.testing.assert_close(p.grad, g, rtol=1e-9, atol=1e-9)
        if step == 1 or not beta:
            counts = {name: c.launches for name, c in launches.items()}
            assert counts == {"fused fwd": 1, "fused bwd": 1, "per-tensor fwd": 0, "per-tensor bwd": 0}


def test_fused_triton_launch_count_does_not_grow_with_layers(monkeypatch):
    for depth in (2, 9):
        layers = [nn.Linear(6, 6, dtype=torch.float64, device=DEVICE) for _ in range(depth)]
        model = nn.Sequential(*layers)
        sub = sp.line(model, seed=0, backend="triton")
        x = torch.randn(3, 6, dtype=torch.float64, device=DEVICE)
        model(x).sum().backward()  # first step: the regulariser is not yet requested
        with count_launches(monkeypatch) as launches:
            (model(x).sum() + sub.regularizer(1.0)).backward()
            sub.regularizer(1.0).backward()  # requests Gram entries for later forwards
            (model(x).sum() + sub.regularizer(1.0)).backward()
        assert len(sub.tensor_names) == 2 * depth
        # forward+backward of each step: 1 + 1; the standalone regulariser: per-tensor Gram passes
        assert launches["fused fwd"].launches == 2
        assert launches["fused bwd"].launches == 2


def test_fused_triton_gradcheck_weights_and_gram():
    model = Bag([(1, 1), (7, 1), (5,), (3, 2)])
    sub = sp.simplex(model, 3, seed=0, backend="triton")
    sub.set_point([0.2, 0.5, 0.3])
    fused = fused_weights(model)
    fused.want_gram = True
    coefficients = point_coefficients(model)

    def f(*params):
        weights = fused.materialize(coefficients)
        fused.close_window()
        return (*weights, fused.fresh_gram())

    params = tuple(sub.parameters())
    assert torch.autograd.gradcheck(f, params, eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_fused_matches_per_tensor_path_on_a_cnn(backend):
    torch.manual_seed(0)
    a = small_cnn(torch.float64).to(DEVICE)
    b = copy.deepcopy(a)
    sa = sp.curve(a, seed=1, backend=backend, fused=True)
    sb = sp.curve(b, seed=1, backend="torch", fused=False)
    x = torch.randn(5, 3, 8, 8, dtype=torch.float64, device=DEVICE)
    for s in (sa, sb):
        s.set_point(0.3)
    ya, yb = a(x), b(x)
    torch.testing.assert_close(ya, yb, rtol=1e-12, atol=1e-12)
    (ya.square().sum() + sa.regularizer(0.5)).backward()
    (yb.square().sum() + sb.regularizer(0.5)).backward()
    for pa, pb in zip(sa.parameters(), sb.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, rtol=1e-10, atol=1e-12)
    assert fused_weights(a).fused_forwards == 1 and fused_weights(b) is None


def test_fused_layerwise_triton_uses_one_row_per_module(monkeypatch):
    a = small_mlp().to(DEVICE)
    b = copy.deepcopy(a)
    sa = sp.simplex(a, 3, layerwise=True, seed=2, backend="triton")
    sb = sp.simplex(b, 3, layerwise=True, seed=2, backend="torch", fused=False)
    point = sa.sample()
    sb.set_point(point)
    assert point.shape[0] > 1 and not torch.allclose(point[0], point[1])
    x = torch.randn(4, a[0].in_features, dtype=torch.float64, device=DEVICE)
    with count_launches(monkeypatch) as launches:
        ya = a(x)
        ya.sum().backward()
    yb = b(x)
    yb.sum().backward()
    torch.testing.assert_close(ya, yb, rtol=1e-12, atol=1e-12)
    for pa, pb in zip(sa.parameters(), sb.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, rtol=1e-12, atol=1e-12)
    assert launches["fused fwd"].launches == 1 and launches["per-tensor fwd"].launches == 0


def test_layerwise_on_the_torch_backend_falls_back_per_tensor():
    model = small_mlp()
    sub = sp.line(model, layerwise=True, seed=0, backend="torch", fused=True)
    fused = fused_weights(model)
    assert fused.unsupported and "layerwise" in fused.unsupported
    sub.sample()
    x = torch.randn(3, model[0].in_features, dtype=torch.float64)
    torch.testing.assert_close(model(x), sub.export()(x))
    assert fused.fused_forwards == 0


def test_by_default_cpu_tensors_are_fused_and_buffers_are_reused_across_steps():
    model = small_mlp()
    sub = sp.line(model, seed=0, backend="torch")
    fused = fused_weights(model)
    assert not fused.always and fused._params is not None  # flattened at wrap time on CPU
    opt = torch.optim.SGD(sub.parameters(), lr=0.1)
    x = torch.randn(2, model[0].in_features, dtype=torch.float64)
    pointers = []
    for _ in range(3):
        opt.zero_grad(set_to_none=True)
        sub.sample()
        (model(x).square().sum() + sub.regularizer()).backward()
        opt.step()
        pointers.append({key: buf.data_ptr() for key, (buf, _) in fused._spares._buffers.items()})
    assert fused.fused_forwards == 3
    assert pointers[1] == pointers[2] and pointers[1]  # nothing full-size is allocated once warm


def test_a_held_weight_buffer_is_not_reused():
    model = small_mlp()
    sub = sp.line(model, seed=0, fused=True)
    x = torch.randn(2, model[0].in_features, dtype=torch.float64)
    held = []
    model.register_forward_hook(lambda m, a, o: held.append(m[0].weight))
    model(x)
    first = held[-1].clone()
    sub.sample()
    model(x)
    torch.testing.assert_close(held[0], first)  # the first forward's weights were not overwritten
    assert held[0].data_ptr() != held[1].data_ptr()


def test_vertices_are_views_of_one_flat_buffer_per_vertex():
    model = small_cnn()
    sub = sp.line(model, seed=0, fused=True)
    flats = fused_weights(model)._flats
    assert len(flats) == 2
    for k, flat in enumerate(flats):
        params = list(sub.vertex(k).values())
        assert flat.numel() == sum(-(-p.numel() // 16) * 16 for p in params)  # 16-element segments
        assert all(p.data_ptr() % 64 == 0 for p in params)
        assert all(p.untyped_storage().data_ptr() == flat.untyped_storage().data_ptr() for p in params)
        assert all(p.is_leaf and p.requires_grad for p in params)
    x = torch.randn(2, 3, 8, 8)
    model(x).sum().backward()
    # the gradients of one vertex are views of one flat gradient buffer as well
    grads = [p.grad for p in sub.vertex(1).values()]
    assert len({g.untyped_storage().data_ptr() for g in grads}) == 1


def test_layout_is_rebuilt_after_to_and_deepcopy_and_assignment():
    model = small_mlp(torch.float32)
    sub = sp.line(model, seed=0, fused=True)
    x = torch.randn(3, model[0].in_features)
    expected = model(x).double()
    model.double()  # new storage for every parameter: the flat layout is rebuilt at the next forward
    torch.testing.assert_close(model(x.double()), expected, rtol=1e-6, atol=1e-6)
    fused = fused_weights(model)
    assert fused._flats[0].dtype == torch.float64 and fused._state() == "ok"
    clone = copy.deepcopy(model)  # the copy owns its parameters and flattens them itself
    torch.testing.assert_close(clone(x.double()), model(x.double()))
    assert fused_weights(clone)._flats[0].data_ptr() != fused._flats[0].data_ptr()
    with torch.no_grad():
        clone[0].weight = torch.zeros_like(clone[0].weight)  # right_inverse: every vertex := 0
    out = clone(x.double())
    with torch.no_grad():
        clone_sub = sp.get_subspace(clone)
        assert all((row[0] == 0).all() for row in clone_sub.vertices()[:1])
    torch.testing.assert_close(out, clone_sub.export()(x.double()))
    assert sub is not None


def test_functional_call_with_swapped_vertices_is_not_fused_and_not_stale():
    model = small_mlp()
    sub = sp.line(model, seed=0, fused=True)
    x = torch.randn(3, model[0].in_features, dtype=torch.float64)
    zeros = {n: torch.zeros_like(p) for n, p in model.named_parameters() if "original" in n}
    out = torch.func.functional_call(model, zeros, (x,))
    bias_free = copy.deepcopy(model)
    with torch.no_grad():
        for p in sp.get_subspace(bias_free).parameters():
            p.zero_()
    torch.testing.assert_close(out, bias_free(x))
    assert fused_weights(model)._state() == "ok"  # the model's own layout is untouched
    assert not torch.allclose(model(x), out) and sub is not None


def test_weights_outside_a_forward_take_the_per_tensor_path_and_errors_close_the_window():
    model = small_mlp()
    sub = sp.line(model, seed=0, fused=True)
    fused = fused_weights(model)
    with pytest.raises(RuntimeError):
        model(torch.randn(3, 999, dtype=torch.float64))  # wrong width: the forward raises
    assert fused.weights is None  # the forward hook ran anyway (always_call)
    sub.set_point(0.1)
    w = model[0].weight
    v0, v1 = sub.vertex(0)["0.weight"], sub.vertex(1)["0.weight"]
    torch.testing.assert_close(w, 0.9 * v0 + 0.1 * v1)


def test_regulariser_after_backward_recomputes_instead_of_reusing_a_freed_graph():
    model = small_mlp().to(DEVICE)
    sub = sp.line(model, seed=0, backend="triton")
    x = torch.randn(3, model[0].in_features, dtype=torch.float64, device=DEVICE)
    sub.regularizer(1.0)  # request the Gram entries
    model(x).sum().backward()
    reg = sub.regularizer(1.0)  # the forward's Gram entries belong to a consumed graph
    reg.backward()
    model(x).sum()
    with torch.no_grad():
        next(iter(sub.parameters())).add_(1.0)  # an in-place change after the forward
    assert fused_weights(model).fresh_gram() is None


def test_in_place_change_before_the_fused_regulariser_backward_is_an_error():
    model = small_mlp().to(DEVICE)
    sub = sp.line(model, seed=0, backend="triton")
    x = torch.randn(3, model[0].in_features, dtype=torch.float64, device=DEVICE)
    sub.regularizer(1.0)
    loss = model(x).sum() + sub.regularizer(1.0)
    with torch.no_grad():
        next(iter(sub.parameters())).mul_(2.0)
    with pytest.raises(RuntimeError, match="modified in place"):
        loss.backward()


def test_mixed_dtypes_are_reported_and_fall_back():
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2).double())
    sub = sp.line(model, seed=0, fused=True)
    fused = fused_weights(model)
    assert "1.weight" in fused.unsupported or "one dtype" in fused.unsupported
    assert sub.num_vertices == 2


def test_torch_compile_of_a_fused_model_traces_the_per_tensor_ops():
    model = small_mlp(torch.float32)
    sp.line(model, seed=0, backend="torch", fused=True)
    x = torch.randn(3, model[0].in_features)
    eager = model(x)
    compiled = torch.compile(model, backend="eager")
    torch.testing.assert_close(compiled(x), eager)


@pytest.mark.gpu
def test_fused_triton_bf16_vertices_on_gpu():
    """bf16 is checked on GPU only (the interpreter computes bf16 wrongly)."""
    model = Bag(dtype=torch.bfloat16)
    sub = sp.simplex(model, 3, seed=0)  # auto on CUDA: Triton, fused
    sub.set_point([0.2, 0.3, 0.5])
    xs = [torch.randn(*s, dtype=torch.bfloat16, device="cuda") for s in SHAPES]
    vertices = [[v.detach().clone() for v in row] for row in sub.vertices()]
    loss = model(xs) + sub.regularizer(0.5, pairs="all")
    loss = model(xs) + sub.regularizer(0.5, pairs="all")  # second call: Gram entries from the forward
    loss.backward()
    covered = [i for i, s in enumerate(SHAPES) if len(s) >= 2]
    ref_loss, ref_grads = _reference(
        vertices, sub.coefficients, xs, 0.5, [(0, 1), (0, 2), (1, 2)], False, covered
    )
    assert fused_weights(model).fused_forwards == 2
    torch.testing.assert_close(loss.double(), ref_loss, rtol=2e-2, atol=2e-1)
    for p, g in zip(sub.parameters(), ref_grads):
        torch.testing.assert_close(p.grad.double(), g, rtol=2e-2, atol=2e-2)


@pytest.mark.gpu
def test_fused_triton_autocast_step_matches_per_tensor_on_gpu():
    a = small_cnn().cuda()
    b = copy.deepcopy(a)
    sa, sb = sp.line(a, seed=0), sp.line(b, seed=0, fused=False)
    x = torch.randn(8, 3, 16, 16, device="cuda")
    for sub, model in ((sa, a), (sb, b)):
        sub.set_point(0.3)
        sub.regularizer(1.0)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(x).float().square().mean()
        (loss + sub.regularizer(1.0)).backward()
    assert fused_weights(a).fused_forwards == 1 and fused_weights(b) is None
    for pa, pb in zip(sa.parameters(), sb.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, rtol=1e-3, atol=1e-4)


@pytest.mark.gpu
def test_compiled_fused_model_on_gpu_matches_eager():
    model = small_cnn().cuda()
    sp.line(model, seed=0)
    x = torch.randn(4, 3, 16, 16, device="cuda")
    model.eval()
    eager = model(x)
    torch.testing.assert_close(torch.compile(model, fullgraph=True)(x), eager, rtol=1e-4, atol=1e-4)


def test_more_vertices_than_the_kernels_unroll():
    with pytest.raises(sp.SubspaceError, match="at most 8 vertices"):
        sp.simplex(small_mlp(), 9, backend="triton")
    model = small_mlp()
    sub = sp.simplex(model, 9, seed=0)  # auto: PyTorch ops for K > 8, on every device
    sub.sample()
    x = torch.randn(2, model[0].in_features, dtype=torch.float64)
    torch.testing.assert_close(model(x), sub.export()(x))
