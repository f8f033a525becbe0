"""The cosine-similarity regulariser of Wortsman et al. (2021).

For a vertex pair (i, j) and covered tensors L (default: the weights, i.e. tensors with ≥ 2 dims —
conv, linear and embedding weights including the classifier; biases and norm affines excluded,
as in the reference which regularises conv weights only):

    global:     cos²(V_i, V_j) = (Σ_L ⟨V_i^L, V_j^L⟩)² / (Σ_L ‖V_i^L‖² · Σ_L ‖V_j^L‖²)
    per layer:  (1/|L|) Σ_L ⟨V_i^L, V_j^L⟩² / (‖V_i^L‖² ‖V_j^L‖²)

and R = β · mean over the chosen pairs (one random pair per step by default, or all pairs).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

EPS = 1e-12


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.dot(a.reshape(-1), b.reshape(-1))


def _gram_entries(
    vertices: Sequence[Sequence[torch.Tensor]], pairs: Sequence[tuple[int, int]]
) -> dict[tuple[int, int], torch.Tensor]:
    """Per-tensor dot products ⟨V_a^L, V_b^L⟩ for every entry the pairs need, each of shape (|L|,)."""
    acc = torch.float64 if vertices[0][0].dtype == torch.float64 else torch.float32
    needed = sorted({e for i, j in pairs for e in ((i, j), (i, i), (j, j))})
    return {(a, b): torch.stack([_dot(v[a], v[b]).to(acc) for v in vertices]) for a, b in needed}


def _pair_terms(
    gram: dict[tuple[int, int], torch.Tensor], i: int, j: int, per_layer: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(value, ∂r/∂D, ∂r/∂N_i, ∂r/∂N_j) of r = D²/(N_i N_j), globally or per tensor (then ÷|L|)."""
    d, ni, nj = gram[(i, j)], gram[(i, i)], gram[(j, j)]
    if not per_layer:
        d, ni, nj = d.sum(), ni.sum(), nj.sum()
    den = (ni * nj).clamp_min(EPS)
    value = d.square() / den
    scale = 1.0 / d.numel() if per_layer else 1.0
    return (
        value.mean() if per_layer else value,
        scale * 2 * d / den,
        -scale * value / ni.clamp_min(EPS),
        -scale * value / nj.clamp_min(EPS),
    )


class _CosineRegularizer(torch.autograd.Function):
    """Mean over pairs of cos²; backward in closed form, one fused op per vertex gradient:

    ∂r/∂V_i^L = (∂r/∂D)·V_j^L + 2(∂r/∂N_i)·V_i^L     (and symmetrically for V_j).
    """

    @staticmethod
    def forward(ctx, pairs, per_layer, k, *flat):  # type: ignore[override]
        vertices = [flat[L * k : (L + 1) * k] for L in range(len(flat) // k)]
        gram = _gram_entries(vertices, pairs)
        terms = [_pair_terms(gram, i, j, per_layer) for i, j in pairs]
        ctx.pairs, ctx.per_layer, ctx.k = pairs, per_layer, k
        ctx.terms = [t[1:] for t in terms]
        ctx.save_for_backward(*flat)
        return torch.stack([t[0] for t in terms]).mean()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):  # type: ignore[override]
        flat = ctx.saved_tensors
        k, n_layers = ctx.k, len(flat) // ctx.k
        # coefficient of V_m in ∂R/∂V_k, per tensor (scalar or per-layer vector)
        coef: dict[tuple[int, int], torch.Tensor] = {}
        w = grad_out / len(ctx.pairs)
        for (i, j), (dd, dni, dnj) in zip(ctx.pairs, ctx.terms):
            for key, val in (((i, j), dd), ((j, i), dd), ((i, i), 2 * dni), ((j, j), 2 * dnj)):
                coef[key] = coef.get(key, 0) + w * val
        grads: list[torch.Tensor | None] = [None] * len(flat)
        rows = sorted({a for a, _ in coef})
        for L in range(n_layers):
            for a in rows:
                terms = [(b, c if c.ndim == 0 else c[L]) for (r, b), c in sorted(coef.items()) if r == a]
                (b0, c0), rest = terms[0], terms[1:]
                v = flat[L * k + b0]
                g = torch.mul(v, c0.to(v.dtype))
                for b, c in rest:
                    g.addcmul_(flat[L * k + b], c.to(v.dtype))
                grads[L * k + a] = g
        return (None, None, None, *grads)


def _check_pairs(k: int, pairs: Sequence[tuple[int, int]]) -> None:
    if not pairs:
        raise ValueError("the regulariser needs at least one vertex pair (K ≥ 2)")
    bad = [(i, j) for i, j in pairs if not (0 <= i < k and 0 <= j < k) or i == j]
    if bad:
        raise ValueError(f"vertex pairs {bad} are invalid for K={k} (need 0 ≤ i ≠ j < K)")


def cosine_regularizer(
    vertices: Sequence[Sequence[torch.Tensor]],
    pairs: Sequence[tuple[int, int]],
    per_layer: bool = False,
    use_triton: bool = False,
) -> torch.Tensor:
    """Mean of cos²(V_i, V_j) over ``pairs`` (i ≠ j), differentiable in every vertex.

    ``use_triton``: compute it from one fused Gram pass per tensor (Triton kernels)."""
    if not vertices:
        raise ValueError("the regulariser covers no tensor")
    k = len(vertices[0])
    _check_pairs(k, pairs)
    if use_triton:
        from .kernels.dispatch import gram

        return cosine_from_grams(torch.stack([gram(list(row)) for row in vertices]), pairs, per_layer)
    flat = [v for row in vertices for v in row]
    return _CosineRegularizer.apply(tuple(pairs), per_layer, k, *flat)


def cosine_from_grams(grams: torch.Tensor, pairs: Sequence[tuple[int, int]], per_layer: bool) -> torch.Tensor:
    """The same value from per-tensor Gram matrices ``grams[L, a, b] = ⟨V_a^L, V_b^L⟩`` (|L| × K × K),
    computed by the Triton kernels (one pass per tensor, or the fused forward pass of the whole
    model); autograd runs through the kernels' fused backward."""
    if grams.ndim != 3 or grams.shape[0] == 0 or grams.shape[1] != grams.shape[2]:
        raise ValueError(f"grams must have shape (tensors ≥ 1, K, K), got {tuple(grams.shape)}")
    _check_pairs(grams.shape[1], pairs)
    terms = []
    for i, j in pairs:
        d, ni, nj = grams[:, i, j], grams[:, i, i], grams[:, j, j]
        if per_layer:
            terms.append((d.square() / (ni * nj).clamp_min(EPS)).mean())
        else:
            terms.append(d.sum().square() / (ni.sum() * nj.sum()).clamp_min(EPS))
    return torch.stack(terms).mean()


def is_weight(name: str, tensor: torch.Tensor) -> bool:
    """Default coverage: tensors with at least two dimensions."""
    return tensor.dim() >= 2
