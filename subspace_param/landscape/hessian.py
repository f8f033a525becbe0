"""Hessian directions: the top-k eigenvectors of the loss Hessian by Lanczos iteration on
Hessian-vector products (forward-over-reverse, ``torch.func.jvp`` of ``torch.func.grad``).

L(θ) = Σ_b (n_b / N) · loss_fn(f(x_b; θ), y_b) over the (fixed) batches, model in eval mode (BN
uses its running statistics, as PyHessian does). Lanczos with full reorthogonalisation builds
the m-step Krylov basis Q and tridiagonal T = Qᵀ H Q; the Ritz pairs (θ_j, Q s_j) of the k largest
eigenvalues of T are returned, with their residuals ‖H y − θ y‖.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import nn

from .base import Directions, State, check_plain_model, unflatten

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def hessian_vector_product(
    model: nn.Module,
    loss_fn: LossFn,
    data: Iterable,
    *,
    max_batches: int | None = None,
    device: torch.device | str = "cpu",
) -> tuple[Callable[[torch.Tensor], torch.Tensor], State]:
    """(hvp, params): ``hvp(v)`` = H v for a flat vector v over ``params`` (the model's floating
    parameters at which H is taken, in order), summed over the batches with weights n_b / N."""
    from torch.func import functional_call, grad, jvp

    check_plain_model(model, "hessian_vector_product")
    model = model.to(device).eval()
    params = {n: p.detach() for n, p in model.named_parameters() if p.is_floating_point()}
    fixed = {n: p.detach() for n, p in model.named_parameters() if not p.is_floating_point()}
    buffers = dict(model.named_buffers())
    batches = [
        (x.to(device), y.to(device))
        for x, y in (data if max_batches is None else itertools.islice(data, max_batches))
    ]
    if not batches:
        raise ValueError("hessian_vector_product: data yielded no batches")
    total = sum(len(y) for _, y in batches)
    like = dict(params)

    def loss_of(p: State, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return loss_fn(functional_call(model, {**p, **fixed, **buffers}, (x,)), y)

    def hvp(vector: torch.Tensor) -> torch.Tensor:
        v = unflatten(vector.to(device), like)
        out = torch.zeros(vector.numel(), dtype=torch.float64, device=device)
        for x, y in batches:
            _, hv = jvp(lambda p, x=x, y=y: grad(loss_of)(p, x, y), (params,), (v,))
            out += torch.cat([hv[n].reshape(-1).double() for n in like]) * (len(y) / total)
        return out

    return hvp, params


def lanczos(
    matvec: Callable[[torch.Tensor], torch.Tensor],
    dim: int,
    k: int = 2,
    *,
    iterations: int | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The k largest eigenpairs of a symmetric operator: (eigenvalues (k,), eigenvectors (dim, k),
    residual norms (k,)), float64, from ``iterations`` (default min(dim, max(4k, 30))) Lanczos steps
    with full reorthogonalisation, started from a seeded Gaussian vector."""
    m = min(dim, iterations if iterations is not None else max(4 * k, 30))
    if not 1 <= k <= m:
        raise ValueError(f"need 1 ≤ k ≤ iterations ≤ dim, got k={k}, iterations={m}, dim={dim}")
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(dim, generator=gen, dtype=torch.float64).to(device)
    q /= q.norm()
    basis = [q]
    alphas, betas = [], []
    for j in range(m):
        w = matvec(basis[j]).double()
        alpha = float(w @ basis[j])
        alphas.append(alpha)
        Q = torch.stack(basis, 1)
        for _ in range(2):  # full reorthogonalisation, twice ("twice is enough")
            w = w - Q @ (Q.T @ w)
        beta = float(w.norm())
        if j == m - 1 or beta < 1e-10 * max(1.0, abs(alpha)):
            break
        betas.append(beta)
        basis.append(w / beta)
    n = len(alphas)
    T = torch.diag(torch.tensor(alphas, dtype=torch.float64))
    if n > 1:
        off = torch.tensor(betas[: n - 1], dtype=torch.float64)
        T += torch.diag(off, 1) + torch.diag(off, -1)
    theta, s = torch.linalg.eigh(T)
    top = torch.argsort(theta, descending=True)[:k]
    if len(top) < k:
        raise ValueError(f"the Krylov space closed after {n} steps: fewer than k = {k} eigenpairs")
    Q = torch.stack(basis[:n], 1)
    vecs = Q @ s[:, top].to(Q.device)
    vals = theta[top].to(Q.device)
    residuals = torch.stack([(matvec(vecs[:, i]).double() - vals[i] * vecs[:, i]).norm() for i in range(k)])
    return vals, vecs, residuals


def hessian_directions(
    model: nn.Module,
    loss_fn: LossFn,
    data: Iterable,
    k: int = 2,
    *,
    iterations: int | None = None,
    max_batches: int | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> Directions:
    """The top-k Hessian eigenvectors of ``loss_fn`` over ``data`` at ``model``'s weights (unit norm,
    sign fixed so the largest entry is positive), with the eigenvalues as ``values``; ``info`` gives
    the Lanczos steps and the residuals ‖H y − λ y‖."""
    hvp, params = hessian_vector_product(model, loss_fn, data, max_batches=max_batches, device=device)
    dim = sum(p.numel() for p in params.values())
    vals, vecs, res = lanczos(hvp, dim, k, iterations=iterations, seed=seed, device=device)
    directions = []
    for i in range(k):
        y = vecs[:, i]
        y = y * torch.sign(y[y.abs().argmax()])
        directions.append(unflatten(y.cpu(), {n: p.cpu() for n, p in params.items()}))
    return Directions(
        directions,
        vals.cpu().numpy().astype(np.float64),
        "hessian",
        {
            "eigenvalues": [float(v) for v in vals],
            "residuals": [float(r) for r in res],
            "iterations": min(dim, iterations if iterations is not None else max(4 * k, 30)),
            "batches": max_batches,
        },
    )
