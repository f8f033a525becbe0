"""Random-projection subspaces θ = θ0 + P ω: every method, against float64 references."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from helpers import small_cnn, small_mlp
from subspace_param.kernels import rademacher
from torch import nn

import subspace_param as sp
from subspace_param.projections import available_methods
from subspace_param.projections.fastfood import fwht

METHODS = ["dense", "fastfood", "generated", "hashed", "orthonormal", "sparse"]
OFFSET_METHODS = [m for m in METHODS if m != "orthonormal"]


def _projected(method: str, dim: int = 13, seed: int = 5, **kw) -> tuple[nn.Module, sp.ProjectedSubspace]:
    net = small_mlp(torch.float64)  # D = 7·11 + 11 + 11·5 + 5 = 148
    return net, sp.projection(net, dim=dim, method=method, seed=seed, **kw)


def test_all_methods_registered() -> None:
    assert available_methods() == METHODS


@pytest.mark.parametrize("method", METHODS)
def test_only_omega_is_trainable_and_model_unchanged_at_start(method: str) -> None:
    net = small_mlp(torch.float64)
    x = torch.randn(9, 7, dtype=torch.float64)
    before = net(x)
    sub = sp.projection(net, dim=13, method=method, seed=1)
    trainable = [p for p in net.parameters() if p.requires_grad]
    assert len(trainable) == 1 and trainable[0] is sub.omega and sub.omega.shape == (13,)
    if method == "orthonormal":  # θ = P ω₀ reproduces θ_init up to fp32 rounding of P
        torch.testing.assert_close(net(x), before, rtol=1e-5, atol=1e-6)
    else:  # ω = 0: exactly the initial model
        assert torch.equal(sub.omega.detach(), torch.zeros(13, dtype=torch.float64))
        assert torch.equal(net(x), before)


@pytest.mark.parametrize("method", ["dense", "generated", "hashed", "orthonormal", "sparse"])
def test_unit_column_norms(method: str) -> None:
    _, sub = _projected(method)
    norms = sub.projector.dense().norm(dim=0)
    torch.testing.assert_close(norms, torch.ones_like(norms), rtol=0, atol=1e-6)


def test_fastfood_columns_exact_when_block_divides_D_and_close_otherwise() -> None:
    exact = sp.projection(nn.Linear(31, 4), dim=16, method="fastfood", seed=0)  # D = 128 = 8 blocks of 16
    norms = exact.projector.dense().norm(dim=0)
    torch.testing.assert_close(norms, torch.ones_like(norms), rtol=0, atol=1e-6)
    _, approx = _projected("fastfood", dim=13)  # D = 148, blocks of 16
    norms = approx.projector.dense().norm(dim=0)
    assert ((norms - 1).abs() < 0.15).all(), norms


def test_orthonormal_columns_are_orthonormal_and_first_is_theta_init() -> None:
    net = small_mlp(torch.float64)
    theta = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
    sub = sp.projection(net, dim=13, method="orthonormal", seed=0)
    p = sub.projector.dense()
    torch.testing.assert_close(p.T @ p, torch.eye(13, dtype=torch.float64), atol=1e-6, rtol=0)
    cos = (p[:, 0] @ theta).abs() / theta.norm()
    assert cos > 1 - 1e-6


def test_fwht_matches_hadamard_matrix() -> None:
    n = 16
    h = torch.ones(1, 1, dtype=torch.float64)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    x = torch.randn(3, n, dtype=torch.float64)
    torch.testing.assert_close(fwht(x), x @ h.T)


@pytest.mark.parametrize("method", METHODS)
def test_adjointness(method: str) -> None:
    _, sub = _projected(method)
    x = torch.randn(13, dtype=torch.float64)
    y = torch.randn(sub.num_params, dtype=torch.float64)
    lhs = sub.projector.matvec(x) @ y
    rhs = x @ sub.projector.rmatvec(y)
    torch.testing.assert_close(lhs, rhs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", OFFSET_METHODS)
def test_omega_gradient_against_float64_dense_reference(method: str) -> None:
    net, sub = _projected(method)
    with torch.no_grad():
        sub.omega.normal_()
    p = sub.projector.dense().to(torch.float64)
    theta0 = sub.initial_point()
    omega_ref = sub.omega.detach().clone().requires_grad_(True)
    x = torch.randn(9, 7, dtype=torch.float64)
    target = torch.randint(0, 5, (9,))

    theta = theta0 + p @ omega_ref
    w1, b1, w2, b2 = torch.split(theta, [77, 11, 55, 5])
    ref_logits = F.linear(torch.tanh(F.linear(x, w1.view(11, 7), b1)), w2.view(5, 11), b2)
    F.cross_entropy(ref_logits, target).backward()

    logits = net(x)
    torch.testing.assert_close(logits, ref_logits.detach(), rtol=1e-5, atol=1e-6)
    F.cross_entropy(logits, target).backward()
    torch.testing.assert_close(sub.omega.grad, omega_ref.grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("method", ["fastfood", "sparse", "dense"])
def test_gradcheck_rows(method: str) -> None:
    _, sub = _projected(method, dim=5)
    omega = torch.randn(5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda w: sub.projector.rows(w, 88, 143), (omega,))


def test_gradcheck_generated_torch_path() -> None:
    _, sub = _projected("generated", dim=5, backend="torch", materialize_entries=0)
    omega = torch.randn(5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda w: sub.projector.rows(w, 88, 143), (omega,))


@pytest.mark.parametrize("method", METHODS)
def test_same_seed_same_projection_other_seed_different(method: str) -> None:
    torch.manual_seed(0)
    _, a = _projected(method, seed=11)
    torch.manual_seed(0)  # orthonormal depends on θ_init too: same init for a and b
    _, b = _projected(method, seed=11)
    torch.manual_seed(0)
    _, c = _projected(method, seed=12)
    pa, pb, pc = (s.projector.dense() for s in (a, b, c))
    assert torch.equal(pa, pb)
    assert not torch.allclose(pa, pc)


def test_generated_entries_are_plus_minus_one_over_sqrt_D() -> None:
    _, sub = _projected("generated", dim=40)
    p = sub.projector.dense()
    assert torch.equal(p.abs(), torch.full_like(p, 148**-0.5))
    assert abs(float((p > 0).double().mean()) - 0.5) < 0.03


def test_generated_chunked_and_materialised_paths_are_bit_identical() -> None:
    omega = torch.randn(70, dtype=torch.float64)
    _, kept = _projected("generated", dim=70, backend="torch")
    _, chunked = _projected("generated", dim=70, backend="torch", materialize_entries=0)
    assert torch.equal(kept.projector.matvec(omega), chunked.projector.matvec(omega))


@pytest.mark.parametrize(
    ("start", "rows", "dim"),
    [
        (0, 1, 1),
        (5, 7, 33),
        (123, 10_003, 70),
        (2**31 + 7, 300, 64),
        (2**32 - 150, 300, 40),
        (2**33 + 5, 90, 40),
    ],
)
def test_triton_rademacher_kernels_match_torch(start: int, rows: int, dim: int) -> None:
    pytest.importorskip("triton")
    seed = 987654321987
    omega = torch.randn(dim)
    grad = torch.randn(rows)
    s = rademacher.sign_block(seed, start, start + rows, dim, "cpu").double()
    fwd = rademacher.rows_matvec_triton(seed, start, start + rows, omega, 0.5)
    bwd = rademacher.rows_rmatvec_triton(seed, start, start + rows, grad, dim, 0.5)
    torch.testing.assert_close(fwd.double(), 0.5 * s @ omega.double(), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(bwd.double(), 0.5 * grad.double() @ s, rtol=1e-5, atol=1e-3)


def test_rows_past_two_to_the_32_do_not_repeat_the_signs() -> None:
    """The row hash mixes in the high word of 64-bit row indices (rows past 2³² of a projection of
    a model with more than 4 G parameters): the block at 2³² + i is not the block at i, and rows
    below 2³² keep the signs they always had."""
    seed, dim = 11, 70
    low = rademacher.sign_block(seed, 3, 40, dim, "cpu")
    high = rademacher.sign_block(seed, 2**32 + 3, 2**32 + 40, dim, "cpu")
    assert not torch.equal(low, high)
    assert (low != high).float().mean() > 0.3  # unrelated signs, not a shifted copy
    s0, s1, s2 = rademacher.seed_salts(seed)
    rows = torch.arange(3, 40)
    expected = rademacher.mix32(
        rademacher.mix32(rows ^ s0)[:, None] ^ rademacher.mix32(torch.arange(3) ^ s1)[None]
    )
    assert torch.equal(rademacher.row_keys(rows, s0, s2), rademacher.mix32(rows ^ s0))
    assert expected.shape == (37, 3)


def test_triton_entries_bit_identical_to_torch() -> None:
    pytest.importorskip("triton")
    seed, start, rows, dim = 3, 1000, 257, 45
    s = rademacher.sign_block(seed, start, start + rows, dim, "cpu")
    cols = [0, 1, 31, 32, 44]
    eye = torch.eye(dim)
    got = torch.stack([rademacher.rows_matvec_triton(seed, start, start + rows, eye[j]) for j in cols], 1)
    assert torch.equal(got, s[:, cols])


def test_generated_triton_backend_trains_like_torch_backend() -> None:
    pytest.importorskip("triton")
    x, y = torch.randn(16, 7), torch.randint(0, 5, (16,))
    grads = []
    for backend in ("torch", "triton"):
        torch.manual_seed(0)
        net = small_mlp(torch.float32)
        sub = sp.projection(net, dim=40, method="generated", seed=2, backend=backend)
        with torch.no_grad():
            sub.omega.normal_(generator=torch.Generator().manual_seed(0))
        F.cross_entropy(net(x), y).backward()
        grads.append(sub.omega.grad.clone())
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-5)


def test_per_tensor_scales_said_variant() -> None:
    net, sub = _projected("fastfood", per_tensor_scale=True)
    params = list(sub.parameters())
    assert [tuple(p.shape) for p in params] == [(13,), (4,)]
    with torch.no_grad():
        sub.omega.normal_()
        sub.state.scales.copy_(torch.tensor([0.5, 2.0, -1.0, 3.0]))
    offset = sub.projector.matvec(sub.omega.detach())
    theta = sub.flat_weights().detach()
    scales = torch.repeat_interleave(
        torch.tensor([0.5, 2.0, -1.0, 3.0], dtype=torch.float64), torch.tensor([77, 11, 55, 5])
    )
    torch.testing.assert_close(theta, sub.initial_point() + scales * offset)
    F.cross_entropy(net(torch.randn(4, 7, dtype=torch.float64)), torch.tensor([0, 1, 2, 3])).backward()
    assert sub.state.scales.grad is not None and sub.state.scales.grad.abs().sum() > 0


@pytest.mark.parametrize("method", METHODS)
def test_training_in_100_dims_reduces_loss(method: str) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(256, 10, generator=gen)
    y = (x[:, :3].sum(1) > 0).long() + (x[:, 3] > 0.5).long()
    net = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 3))
    sp.projection(net, dim=100, method=method, seed=0)
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    first = F.cross_entropy(net(x), y).item()
    for _ in range(60):
        opt.zero_grad()
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
    assert loss.item() < 0.6 * first


@pytest.mark.parametrize("method", METHODS)
def test_export_save_load_roundtrip(method: str, tmp_path) -> None:
    torch.manual_seed(3)
    net = small_cnn()
    x = torch.randn(2, 3, 9, 9)
    sub = sp.projection(net, dim=17, method=method, seed=4)
    with torch.no_grad():
        sub.omega.add_(torch.randn(17) * 0.1)
    net.eval()
    out = net(x)
    plain = sub.export()
    assert not any(isinstance(m, type(sub.state)) for m in plain.modules())
    torch.testing.assert_close(plain.eval()(x), out)
    path = sp.save(sub, tmp_path / "proj.pt")
    blob = torch.load(path, weights_only=True)
    assert not any("matrix" in k or "vals" in k for k in blob["state_dict"])  # P is never saved
    fresh = small_cnn()  # a different random init: θ0 comes from the file
    loaded = sp.load(path, fresh)
    assert isinstance(loaded, sp.ProjectedSubspace) and loaded.method == method
    torch.testing.assert_close(fresh.eval()(x), out, rtol=1e-5, atol=1e-6)


def test_to_and_state_dict_reach_omega() -> None:
    net, sub = _projected("generated")
    assert any(k.endswith("state.omega") for k in net.state_dict())
    net.to(torch.float32)
    assert sub.omega.dtype == torch.float32
    net.eval()
    assert not net.training


def test_bad_input_errors() -> None:
    with pytest.raises(ValueError, match="unknown projection method 'nope'"):
        sp.projection(small_mlp(), dim=3, method="nope")
    with pytest.raises(ValueError, match="dim must be a positive int"):
        sp.projection(small_mlp(), dim=0)
    with pytest.raises(MemoryError, match=r"method='dense' would store a 148 × 100 matrix"):
        sp.projection(small_mlp(), dim=100, method="dense", max_bytes=1000)
    with pytest.raises(ValueError, match="dim=149 exceeds the 148 scalars of the 4 covered tensors"):
        sp.projection(small_mlp(), dim=149)
    from subspace_param.projections.base import projector_class

    with pytest.raises(ValueError, match="orthonormal' needs dim ≤ D = 148"):  # the projector's own check
        projector_class("orthonormal")([(0, 148)], 149, seed=0, theta_init=torch.randn(148))
    with pytest.raises(TypeError, match="method='fastfood'"):
        sp.projection(small_mlp(), dim=3, method="fastfood", density=0.1)
    net, _ = _projected("generated")
    with pytest.raises(sp.SubspaceError, match="already wrapped"):
        sp.projection(net, dim=3)
    with pytest.raises(sp.SubspaceError):
        sp.line(net)


def test_peak_memory_of_never_stored_methods_is_far_below_dense(tmp_path) -> None:
    """A 10M-parameter model at d = 1000 (dense P: 40 GB) for fastfood, and a 1M-parameter model
    at d = 1000 (dense P: 4 GB) for generated on the chunked CPU path (10^9 entries per pass);
    forward + backward each in a fresh process, peak RSS growth measured."""
    script = textwrap.dedent(
        """
        import resource, sys, torch
        import subspace_param as sp
        torch.set_num_threads(2)
        method, width = sys.argv[1], int(sys.argv[2])
        net = torch.nn.Sequential(torch.nn.Linear(width, width), torch.nn.Linear(width, 10))
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        extra = {"materialize_entries": 0} if method == "generated" else {}
        sub = sp.projection(net, dim=1000, method=method, seed=0, **extra)
        net(torch.randn(8, width)).sum().backward()
        assert sub.omega.grad is not None
        print(sub.num_params, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024)
        """
    )
    for method, width, limit in (("fastfood", 3162, 2**30), ("generated", 1000, 2**28)):
        out = subprocess.run(
            [sys.executable, "-c", script, method, str(width)], capture_output=True, text=True, check=True
        )
        num_params, peak = map(int, out.stdout.split())
        dense_bytes = num_params * 1000 * 4
        assert peak < limit and peak < dense_bytes / 30, (method, num_params, peak)


def test_generated_cache_is_dropped_when_the_model_moves() -> None:
    net, sub = _projected("generated", backend="torch")
    net(torch.randn(2, 7, dtype=torch.float64))
    assert sub.projector._blocks
    net.to(torch.float32)
    assert not sub.projector._blocks
    net(torch.randn(2, 7))
    assert sub.projector._blocks


def test_hashed_rows_have_s_distinct_nonzeros_and_columns_their_exact_count() -> None:
    from subspace_param.kernels import hashing

    _, sub = _projected("hashed", dim=13, nonzeros=4)
    p = sub.projector.dense()
    assert torch.equal((p != 0).sum(1), torch.full((148,), 4))  # one per column block: distinct columns
    counts = hashing.column_counts(5, 148, 13, 4)
    torch.testing.assert_close(p.abs().max(0).values, counts.double().rsqrt(), rtol=1e-6, atol=0)
    lo, width = hashing.block_bounds(13, 4)
    cols, _ = hashing.columns_and_signs(5, 0, 148, 13, 4)
    assert ((cols >= lo) & (cols < lo + width)).all()  # the k-th nonzero lies in block k
    assert sp.projection(small_mlp(), dim=3, method="hashed", nonzeros=8).projector.nonzeros == 3  # s ≤ d


def test_hashed_cached_and_hashed_paths_are_bit_identical() -> None:
    omega, grad = torch.randn(31), torch.randn(148)
    outs = []
    for cache in (0, 10**9):
        _, sub = _projected("hashed", dim=31, cache_entries=cache)
        net_p = sub.projector
        outs.append((net_p.matvec(omega), net_p.rmatvec(grad)))
    assert torch.equal(outs[0][0], outs[1][0])
    torch.testing.assert_close(outs[0][1], outs[1][1], rtol=1e-6, atol=1e-6)  # index_add order


def test_hashed_refuses_columns_without_a_nonzero() -> None:
    with pytest.raises(ValueError, match="received no nonzero"):
        sp.projection(nn.Linear(3, 2, bias=False), dim=6, method="hashed", nonzeros=1)


@pytest.mark.parametrize(("start", "rows", "dim", "nnz"), [(0, 1500, 37, 8), (2**32 - 700, 1300, 1000, 3)])
def test_triton_hashed_entries_bit_identical_and_kernels_match_torch(start, rows, dim, nnz) -> None:
    pytest.importorskip("triton")
    from subspace_param.kernels import hashing

    seed = 123456789123
    ref_cols, ref_signs = hashing.columns_and_signs(seed, start, start + rows, dim, nnz)
    cols, signs = hashing.columns_and_signs_triton(seed, start, start + rows, dim, nnz, "cpu")
    assert torch.equal(cols, ref_cols) and torch.equal(signs, ref_signs)
    omega, grad = torch.randn(dim), torch.randn(rows)
    fwd = hashing.gather_triton(seed, start, start + rows, omega, nnz)
    bwd = hashing.scatter_triton(seed, start, start + rows, grad, dim, nnz)
    torch.testing.assert_close(fwd, hashing.gather_torch(seed, start, start + rows, omega, nnz))
    torch.testing.assert_close(bwd, hashing.scatter_torch(seed, start, start + rows, grad, dim, nnz))


def test_auto_method_follows_size_and_device() -> None:
    from subspace_param.projections.choice import choose_method

    assert sp.projection(small_mlp(), dim=10).method == "dense"  # 148 × 10 floats
    assert choose_method(11_000_000, 100, "cpu") == "sparse"
    assert choose_method(11_000_000, 100_000, "cpu") == "fastfood"
    assert choose_method(11_000_000, 100_000, "cuda") == "hashed"
