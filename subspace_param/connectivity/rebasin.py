"""Align any two networks of one architecture: permute B's channels to match A, B's function kept.

The groups of axes that permute together come from tracing (:mod:`.permutation_spec`); each free
group g gets a permutation π_g, chosen by one of:

* ``"weights"`` — Ainsworth et al. (2022) weight matching: maximise Σ_w ⟨W_a, π(W_b)⟩ over all
  parameters and statistics, by coordinate descent over the groups in random order; each step is
  the linear assignment max_π Σ_ij C_ij π_ij with C = Σ_{axes of g} A_(g) · π_others(B)_(g)ᵀ
  (``scipy.optimize.linear_sum_assignment``), until no permutation changes (or ``max_iter``);
* ``"ot"`` — the same steps solved as the exact optimal-transport pairing of seed 001 (``ot.emd``
  with uniform marginals on the cost −C; its optimum is a permutation);
* ``"activations"`` — activation matching: the correlation of A's and B's activations carrying
  the group (every traced value of it, over ``data``), one assignment per group.

Fixed groups (the input and output, concatenations, attention heads, what tracing does not
understand) keep the identity; :attr:`Alignment.report` says which and why.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import fx, nn

from .permutation_spec import Axis, PermutationSpec, permutation_spec

Method = Literal["weights", "activations", "ot"]


@dataclass
class Alignment:
    """The result of :func:`align`: the permuted copy of B, the permutation of every group, and
    the per-group report (channels, permuted or not and why, the axes moved)."""

    model: nn.Module
    permutations: dict[int, torch.Tensor]
    spec: PermutationSpec
    iterations: int

    @property
    def report(self) -> list[dict[str, Any]]:
        rows = self.spec.report()
        for row in rows:
            perm = self.permutations.get(row["group"])
            row["moved"] = int((perm != torch.arange(len(perm))).sum()) if perm is not None else 0
        return rows


def _tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    return {**dict(model.named_parameters()), **dict(model.named_buffers())}


def _along(t: torch.Tensor, axis: Axis, size: int) -> torch.Tensor:
    """``t`` with ``axis`` moved first and split as (size, rest): row i is channel i's entries."""
    moved = t.movedim(axis.dim, 0)
    if axis.block > 1:
        moved = moved.reshape(size, axis.block, *moved.shape[1:]).movedim(1, -1)
    return moved.reshape(size, -1)


def permute_axis(t: torch.Tensor, axis: Axis, perm: torch.Tensor) -> torch.Tensor:
    """``t`` with the channels of ``axis`` reordered by ``perm`` (new channel i = old perm[i])."""
    if axis.block == 1:
        return t.index_select(axis.dim, perm)
    n = t.shape[axis.dim]
    shape = list(t.shape)
    split = [*shape[: axis.dim], len(perm), axis.block, *shape[axis.dim + 1 :]]
    out = t.reshape(split).index_select(axis.dim, perm)
    assert out.numel() == t.numel() and n == len(perm) * axis.block
    return out.reshape(shape)


def _apply(
    tensors: dict[str, torch.Tensor],
    spec: PermutationSpec,
    perms: dict[int, torch.Tensor],
    skip: int | None = None,
) -> dict[str, torch.Tensor]:
    """B's tensors with every group's permutation applied (but group ``skip``'s)."""
    out = dict(tensors)
    for index, group in enumerate(spec.groups):
        if index == skip or index not in perms:
            continue
        for axis in group.axes:
            out[axis.name] = permute_axis(out[axis.name], axis, perms[index].to(out[axis.name].device))
    return out


def _guess_example(model: nn.Module) -> torch.Tensor:
    """A batch for tracing a model whose first layer is a linear (an MLP); others need ``example``."""
    first = next((m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))), None)
    if isinstance(first, nn.Linear):
        return torch.randn(2, first.in_features, device=first.weight.device, dtype=first.weight.dtype)
    raise ValueError(
        f"align: pass example= (an input batch) or data= to trace {type(model).__name__} "
        "(only a model that starts with nn.Linear can be traced without one)"
    )


def _solve(cost: torch.Tensor, method: Method) -> torch.Tensor:
    """The permutation maximising Σ_i cost[i, π(i)]."""
    import numpy as np

    c = cost.double().cpu().numpy()
    if method == "ot":
        import ot

        n = len(c)
        loss = c.max() - c
        plan = ot.emd(np.full(n, 1.0 / n), np.full(n, 1.0 / n), loss / max(loss.max(), 1e-300))
        return torch.as_tensor(plan.argmax(1), dtype=torch.long)
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(c, maximize=True)
    return torch.as_tensor(cols[np.argsort(rows)], dtype=torch.long)


def weight_matching(
    model_a: nn.Module,
    model_b: nn.Module,
    spec: PermutationSpec,
    method: Method = "weights",
    max_iter: int = 100,
    seed: int = 0,
) -> tuple[dict[int, torch.Tensor], int]:
    """Coordinate descent over the free groups (Ainsworth et al., Algorithm 1). Each step reads
    only the tensors with an axis in the group, with B's other axes permuted."""
    ta = {k: v.detach().float().cpu() for k, v in _tensors(model_a).items() if v.is_floating_point()}
    tb = {k: v.detach().float().cpu() for k, v in _tensors(model_b).items() if v.is_floating_point()}
    axes_of: dict[str, list[tuple[int, Axis]]] = {}
    for index, group in enumerate(spec.groups):
        for axis in group.axes:
            axes_of.setdefault(axis.name, []).append((index, axis))
    free = [i for i, g in enumerate(spec.groups) if g.free and g.axes]
    perms = {i: torch.arange(spec.groups[i].size) for i in free}

    def cost_of(g: int) -> torch.Tensor:
        group = spec.groups[g]
        cost = torch.zeros(group.size, group.size, dtype=torch.float64)
        for axis in group.axes:
            b = tb[axis.name]
            for other, other_axis in axes_of[axis.name]:
                if other != g and other in perms:
                    b = permute_axis(b, other_axis, perms[other])
            cost += (_along(ta[axis.name], axis, group.size) @ _along(b, axis, group.size).T).double()
        return cost

    generator = torch.Generator().manual_seed(seed)
    iterations = 0
    for iterations in range(1, max_iter + 1):  # noqa: B007 (the count is returned)
        changed = False
        for i in torch.randperm(len(free), generator=generator).tolist():
            g = free[i]
            cost = cost_of(g)
            new = _solve(cost, method)
            rows = torch.arange(len(new))
            old_score, new_score = cost[rows, perms[g]].sum(), cost[rows, new].sum()
            if new_score > old_score + 1e-12 * max(1.0, float(abs(old_score))):
                perms[g], changed = new, True
        if not changed:
            break
    return perms, iterations


def activation_matching(
    model_a: nn.Module,
    model_b: nn.Module,
    spec: PermutationSpec,
    data: Iterable[Any],
    num_batches: int | None = None,
) -> dict[int, torch.Tensor]:
    """One assignment per free group on the correlation of A's and B's activations carrying it."""
    wanted = {name for g in spec.free_groups for name in g.nodes}
    stats_a: dict[str, list[torch.Tensor]] = {}
    stats_b: dict[str, list[torch.Tensor]] = {}

    def record(model: nn.Module, store: dict[str, list[torch.Tensor]], x: Any) -> None:
        gm = fx.symbolic_trace(model)
        channel_dims = spec.channel_dims

        class Capture(fx.Interpreter):
            def run_node(self, n: fx.Node) -> Any:
                out = super().run_node(n)
                if n.name in wanted and isinstance(out, torch.Tensor):
                    dim = channel_dims[n.name]
                    store.setdefault(n.name, []).append(
                        out.detach().movedim(dim, -1).reshape(-1, out.shape[dim]).double().cpu()
                    )
                return out

        Capture(gm).run(x)

    for b, batch in enumerate(data):
        if num_batches is not None and b >= num_batches:
            break
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        with torch.no_grad():
            record(model_a, stats_a, x)
            record(model_b, stats_b, x)
    perms: dict[int, torch.Tensor] = {}
    for index, group in enumerate(spec.groups):
        if not (group.free and group.axes):
            continue
        corr = torch.zeros(group.size, group.size, dtype=torch.float64)
        for name in group.nodes:
            if name not in stats_a:
                continue
            za, zb = torch.cat(stats_a[name]), torch.cat(stats_b[name])
            za = (za - za.mean(0)) / za.std(0).clamp_min(1e-12)
            zb = (zb - zb.mean(0)) / zb.std(0).clamp_min(1e-12)
            corr += za.T @ zb / len(za)
        perms[index] = _solve(corr, "weights")
    return perms


def alignment(
    model_a: nn.Module,
    model_b: nn.Module,
    method: Method = "weights",
    data: Iterable[Any] | None = None,
    example: torch.Tensor | None = None,
    *,
    max_iter: int = 100,
    num_batches: int | None = 8,
    seed: int = 0,
) -> Alignment:
    """A copy of ``model_b`` with its channels permuted to match ``model_a``, computing exactly
    ``model_b``'s function (eval mode). ``example``: an input batch for tracing (else the first
    batch of ``data``); ``method``: ``"weights"`` (default), ``"ot"`` or ``"activations"`` (needs
    ``data``)."""
    if method not in ("weights", "activations", "ot"):
        raise ValueError(f"align: method must be 'weights', 'activations' or 'ot', got {method!r}")
    if method == "activations" and data is None:
        raise ValueError("align: method='activations' needs data (an iterable of input batches)")
    if example is None:
        if data is not None:
            first = next(iter(data))
            example = first[0] if isinstance(first, (tuple, list)) else first
        else:
            example = _guess_example(model_b)
    names_a = {k: tuple(v.shape) for k, v in _tensors(model_a).items()}
    names_b = {k: tuple(v.shape) for k, v in _tensors(model_b).items()}
    if names_a != names_b:
        diff = sorted(set(names_a.items()) ^ set(names_b.items()))[:3]
        raise ValueError(f"align: the two models differ in parameters or shapes (e.g. {diff})")
    spec = permutation_spec(model_b, example)
    if method == "activations":
        perms, iterations = activation_matching(model_a, model_b, spec, data, num_batches), 1
    else:
        perms, iterations = weight_matching(model_a, model_b, spec, method, max_iter, seed)
    aligned = copy.deepcopy(model_b)
    new = _apply(_tensors(model_b), spec, perms)
    with torch.no_grad():
        for name, tensor in _tensors(aligned).items():
            tensor.copy_(new[name])
    return Alignment(aligned, perms, spec, iterations)
