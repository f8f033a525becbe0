"""Geometry coefficients: affine, exact at the corners, correct formulas, clear errors."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from subspace_param import Bezier, Chain, Line, PointError, Simplex
from subspace_param.geometry import geometry_from_spec

GEOMETRIES = [Line(), Bezier(), Chain(1), Chain(3), Simplex(2), Simplex(3), Simplex(5)]


@pytest.mark.parametrize("geo", GEOMETRIES, ids=repr)
def test_samples_are_inside_and_affine(geo):
    g = torch.Generator().manual_seed(0)
    pts = geo.sample(257, generator=g, dtype=torch.float64)
    assert pts.shape == (257, geo.point_dim)
    for p in pts[:20]:
        geo.as_point(p)  # does not raise
    c = geo.coefficients(pts)
    assert c.shape == (257, geo.num_vertices)
    torch.testing.assert_close(c.sum(-1), torch.ones(257, dtype=torch.float64))
    assert (c >= -1e-12).all()


@pytest.mark.parametrize("geo", GEOMETRIES, ids=repr)
def test_corners_reach_vertices_exactly(geo):
    for k in range(geo.num_vertices):
        if isinstance(geo, Bezier) and k == 1:
            with pytest.raises(ValueError, match="control point"):
                geo.vertex_point(k)
            continue
        c = geo.coefficients(geo.vertex_point(k))
        expected = torch.zeros(geo.num_vertices, dtype=torch.float64)
        expected[k] = 1
        assert torch.equal(c, expected), (k, c)


@settings(max_examples=200, deadline=None)
@given(a=st.floats(0, 1))
def test_line_and_bezier_formulas(a):
    t = torch.tensor([a], dtype=torch.float64)
    torch.testing.assert_close(Line().coefficients(t), torch.tensor([1 - a, a], dtype=torch.float64))
    torch.testing.assert_close(
        Bezier().coefficients(t), torch.tensor([(1 - a) ** 2, 2 * a * (1 - a), a * a], dtype=torch.float64)
    )


@settings(max_examples=200, deadline=None)
@given(a=st.floats(-0.5, 1.5), bends=st.integers(0, 5))
def test_chain_is_piecewise_linear_and_continuous(a, bends):
    geo = Chain(bends)
    c = geo.coefficients(torch.tensor([a], dtype=torch.float64))
    assert math.isclose(float(c.sum()), 1.0, abs_tol=1e-12)
    assert int((c != 0).sum()) <= 2
    # position along the chain with vertices at integer "positions": Σ k c_k = a·S
    pos = float((c * torch.arange(geo.num_vertices, dtype=torch.float64)).sum())
    assert math.isclose(pos, a * (bends + 1), abs_tol=1e-9)


@settings(max_examples=100, deadline=None)
@given(w=st.lists(st.floats(0.01, 10), min_size=2, max_size=7))
def test_simplex_point_is_its_coefficients(w):
    p = torch.tensor(w, dtype=torch.float64)
    p = p / p.sum()
    geo = Simplex(len(w))
    torch.testing.assert_close(geo.coefficients(geo.as_point(p)), p)


def test_simplex_sampling_is_uniform():
    """Dirichlet(1,…,1): each marginal is Beta(1, n−1) with mean 1/n and variance (n−1)/(n²(n+1))."""
    n = 4
    pts = Simplex(n).sample(40000, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    torch.testing.assert_close(pts.mean(0), torch.full((n,), 1 / n, dtype=torch.float64), atol=5e-3, rtol=0)
    var = (n - 1) / (n**2 * (n + 1))
    torch.testing.assert_close(pts.var(0), torch.full((n,), var, dtype=torch.float64), atol=2e-3, rtol=0)


@pytest.mark.parametrize(
    ("geo", "point", "match"),
    [
        (Line(), 1.5, "outside"),
        (Line(), -0.1, "outside"),
        (Line(), float("nan"), "NaN"),
        (Line(), [0.2, 0.3], "1 coordinate"),
        (Bezier(), 2.0, "outside"),
        (Chain(2), -1.0, "outside"),
        (Simplex(3), [0.5, 0.5, 0.5], "summing to 1"),
        (Simplex(3), [1.2, -0.2, 0.0], "negative"),
        (Simplex(3), [0.5, 0.5], "3 coordinate"),
        (Simplex(3), [float("inf"), 0, 0], "NaN or inf"),
    ],
)
def test_bad_points_are_refused(geo, point, match):
    with pytest.raises(PointError, match=match):
        geo.as_point(point)


def test_extrapolation_only_when_asked():
    Line().as_point(1.5, extrapolate=True)
    Chain(1).as_point(-0.5, extrapolate=True)
    Simplex(3).as_point([1.2, -0.2, 0.0], extrapolate=True)
    with pytest.raises(PointError, match="summing to 1"):
        Simplex(3).as_point([1.2, 0.2, 0.0], extrapolate=True)
    c = Line().coefficients(torch.tensor([1.5], dtype=torch.float64))
    torch.testing.assert_close(c, torch.tensor([-0.5, 1.5], dtype=torch.float64))


@pytest.mark.parametrize("geo", GEOMETRIES, ids=repr)
def test_spec_round_trip(geo):
    assert geometry_from_spec(geo.spec()) == geo


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="vertices"):
        Simplex(1)
    with pytest.raises(ValueError, match="bends"):
        Chain(-1)
