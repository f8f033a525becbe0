"""θ = θ0 + P ω on any model through ``torch.nn.utils.parametrize``: :func:`projection` and the
:class:`ProjectedSubspace` handle.

Each covered tensor keeps its initial value θ0 as a frozen ``original`` and gets a
:class:`ProjectedParametrization` that returns θ0 + λ_l · (P ω)[rows of the tensor]. The
trainable state — ω ∈ R^d, and the per-tensor scales λ in the SAID variant — is one
:class:`ProjectionState` owned by the first tensor's parametrization (the others reference it),
so ``model.parameters()`` yields it, ``.to()`` moves it and ``state_dict`` saves it without
adding a child to the user's model (a ``Sequential`` would try to call it). P is rebuilt from
the seed and is never saved.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from .. import copying, recurrent, ties
from ..errors import SubspaceError
from ..selection import FilterFn, TensorRef, find_parametrized, select_by_names, select_tensors
from ..subspace import freeze_parametrized, is_wrapped
from .base import Projector, projector_class
from .choice import choose_method

PROJECTION_SPEC = "_subspace_projection_spec"
SPEC_VERSION = 1


class ProjectionState(nn.Module):
    """The trainable state: ``omega`` (d,) and, optionally, ``scales`` (one λ per tensor)."""

    def __init__(
        self, projector: Projector, omega: torch.Tensor, num_tensors: int, per_tensor_scale: bool
    ) -> None:
        super().__init__()
        self.projector = projector
        self.omega = nn.Parameter(omega)
        self.scales = nn.Parameter(omega.new_ones(num_tensors)) if per_tensor_scale else None


class ProjectedParametrization(nn.Module):
    """``forward(θ0) = θ0 + λ_index · (P ω)[start:stop]`` (or ``(P ω)[start:stop]`` when the
    projector includes the initial point), reshaped to the tensor's shape."""

    is_subspace_parametrization = True

    def __init__(self, state: ProjectionState, index: int, start: int, stop: int) -> None:
        super().__init__()
        if index == 0:
            self.state = state  # the owner: registered, so .to()/state_dict/parameters() reach it
        else:
            object.__setattr__(self, "state", state)
        self.index, self.start, self.stop = index, start, stop

    def forward(self, theta0: torch.Tensor) -> torch.Tensor:
        state = self.state
        offset = state.projector.rows(state.omega, self.start, self.stop)
        if state.scales is not None:
            offset = offset * state.scales[self.index]
        offset = offset.view(theta0.shape).to(theta0.dtype)
        return offset if state.projector.includes_init else theta0 + offset

    def extra_repr(self) -> str:
        return f"index={self.index}, rows=[{self.start}, {self.stop})"


class ProjectedSubspace:
    """Handle on a model trained in a random subspace θ = θ0 + P ω (see :func:`projection`)."""

    def __init__(self, model: nn.Module) -> None:
        spec = getattr(model, PROJECTION_SPEC, None)
        if spec is None:
            raise SubspaceError(f"{type(model).__name__} is not wrapped as a projection subspace")
        self.model = model
        self.tensor_names: list[str] = list(spec["tensors"])
        self.refs: list[TensorRef] = find_parametrized(model, ProjectedParametrization, self.tensor_names)

    @property
    def state(self) -> ProjectionState:
        ref = self.refs[0]
        return getattr(ref.module.parametrizations, ref.local_name)[0].state

    @property
    def projector(self) -> Projector:
        return self.state.projector

    @property
    def spec(self) -> dict[str, Any]:
        return copy.deepcopy(getattr(self.model, PROJECTION_SPEC))

    @property
    def method(self) -> str:
        return self.spec["method"]

    @property
    def dim(self) -> int:
        """d, the subspace dimension."""
        return self.projector.dim

    @property
    def num_params(self) -> int:
        """D, the number of scalars the subspace moves."""
        return self.projector.num_rows

    @property
    def omega(self) -> nn.Parameter:
        return self.state.omega

    def parameters(self) -> Iterator[nn.Parameter]:
        """The trainable state: ω, then the per-tensor scales when enabled."""
        return (p for p in self.state.parameters() if p.requires_grad)

    def initial_point(self) -> torch.Tensor:
        """θ0 (or θ_init for projectors that include it), flattened over the covered tensors."""
        return torch.cat([self._original(r).detach().reshape(-1) for r in self.refs])

    def flat_weights(self) -> torch.Tensor:
        """θ at the current ω, flattened over the covered tensors."""
        return torch.cat([getattr(r.module, r.local_name).reshape(-1) for r in self.refs])

    def _original(self, ref: TensorRef) -> torch.Tensor:
        return getattr(ref.module.parametrizations, ref.local_name).original

    def export(self) -> nn.Module:
        """A plain copy of the model (original classes, no parametrizations) at the current ω."""
        clone = copy.deepcopy(self.model)
        spec = getattr(clone, PROJECTION_SPEC)
        freeze_parametrized(ProjectedSubspace(clone).refs, spec["requires_grad"], clone, spec.get("ties", {}))
        clone.__dict__.pop(PROJECTION_SPEC, None)
        recurrent.uninstall(clone)
        return clone

    def __repr__(self) -> str:
        return (
            f"ProjectedSubspace(method={self.method!r}, D={self.num_params:,}, d={self.dim:,}, "
            f"tensors={len(self.refs)})"
        )


def is_projected(model: nn.Module) -> bool:
    return getattr(model, PROJECTION_SPEC, None) is not None


def get_projection(model: nn.Module) -> ProjectedSubspace:
    """The :class:`ProjectedSubspace` handle of a model wrapped by :func:`projection`."""
    return ProjectedSubspace(model)


def projection(
    model: nn.Module,
    dim: int,
    *,
    method: str = "auto",
    seed: int = 0,
    filter_fn: FilterFn | None = None,
    per_tensor_scale: bool = False,
    tensor_names: Sequence[str] | None = None,
    **options: Any,
) -> ProjectedSubspace:
    """Turn ``model`` in place into a d-dimensional random subspace θ = θ0 + P ω.

    θ0 are the model's current (initial) weights, frozen; ω ∈ R^d starts at 0, so the model is
    unchanged until the first step; ``model.parameters()`` then yields ω (and the per-tensor
    scales λ with ``per_tensor_scale=True``, the SAID variant θ_l = θ0_l + λ_l (P ω)_l) as the
    only trainable parameters. P has unit-norm columns over all D covered scalars.

    Args:
        dim: d, the subspace dimension.
        method: ``auto`` (default: chosen for D, d and the device by
            :func:`~subspace_param.projections.choice.choose_method` and recorded in the spec),
            ``hashed`` (s nonzeros per row, O(D·s)), ``generated`` (±1/√D entries from a
            counter-based hash, never stored), ``fastfood``, ``sparse``, ``dense`` or
            ``orthonormal`` (θ = P ω with QR of [θ_init | random], starting at θ_init).
        seed: seeds P; the same seed gives the same P on every device and backend.
        filter_fn: ``(module, qualified_name) -> bool`` choosing the tensors (as for the other kinds).
        options: passed to the projector (``max_bytes`` for dense/orthonormal, ``density`` for
            sparse, ``backend`` and ``materialize_entries`` for generated, ``nonzeros``,
            ``backend`` and ``cache_entries`` for hashed).

    >>> import torch, subspace_param as sp
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> sub = sp.projection(net, dim=10, seed=0)
    >>> [tuple(p.shape) for p in net.parameters() if p.requires_grad]
    [(10,)]
    >>> sub.num_params
    67
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if is_wrapped(model) or is_projected(model):
        raise SubspaceError(f"{type(model).__name__} is already wrapped; wrap a fresh model")
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
        raise ValueError(f"dim must be a positive int, got {dim!r}")
    refs = (
        select_by_names(model, list(tensor_names))
        if tensor_names is not None
        else select_tensors(model, filter_fn)
    )
    tied = ties.secondary_refs(model, refs)  # one θ0 slice and one row block of P per tied Parameter
    tie_map = {sec.qualified_name: refs[i].qualified_name for sec, i in tied}
    tensors = [getattr(r.module, r.local_name) for r in refs]
    num_scalars = sum(t.numel() for t in tensors)
    if dim > num_scalars:
        raise ValueError(
            f"dim={dim:,} exceeds the {num_scalars:,} scalars of the {len(tensors)} covered tensors of "
            f"{type(model).__name__}: a random subspace must be smaller than the space it lies in "
            f"(choose dim ≤ {num_scalars:,}, or train the model directly)"
        )
    device = tensors[0].device
    if method == "auto":
        method = choose_method(num_scalars, dim, device)
    cls = projector_class(method)
    dtype = tensors[0].dtype if tensors[0].dtype == torch.float64 else torch.float32
    segments, start = [], 0
    for t in tensors:
        segments.append((start, start + t.numel()))
        start += t.numel()
    theta_init = torch.cat([t.detach().reshape(-1).to(dtype) for t in tensors])
    if cls.includes_init:
        options = {**options, "theta_init": theta_init}
    try:
        projector = cls(segments, dim, seed=seed, **options)
    except TypeError as e:
        raise TypeError(f"method={method!r}: {e}") from None
    omega = projector.initial_omega(theta_init.cpu()).to(dtype)
    state = ProjectionState(projector, omega, len(refs), per_tensor_scale).to(device)
    object.__setattr__(
        model,
        PROJECTION_SPEC,
        {
            "version": SPEC_VERSION,
            "kind": "projection",
            "method": method,
            "dim": dim,
            "seed": seed,
            "per_tensor_scale": per_tensor_scale,
            "options": {k: v for k, v in options.items() if k != "theta_init"},
            "tensors": [r.qualified_name for r in refs],
            "requires_grad": [bool(t.requires_grad) for t in tensors],
            "ties": tie_map,
        },
    )
    try:
        for i, (r, (a, b)) in enumerate(zip(refs, segments)):
            # unsafe=True skips parametrize's trial evaluation (one full P ω product per tensor: minutes
            # for large models on CPU); shape and dtype hold by construction
            parametrize.register_parametrization(
                r.module, r.local_name, ProjectedParametrization(state, i, a, b), unsafe=True
            )
            getattr(r.module.parametrizations, r.local_name).original.requires_grad_(False)
        for sec, i in tied:
            ties.share(refs[i], sec)
        recurrent.install(r.module for r in refs)
        copying.guard_forwarded_deepcopy(model)
    except Exception:
        recurrent.uninstall(model)
        ties.unshare(model, tie_map)
        for r in refs:
            if parametrize.is_parametrized(r.module, r.local_name):
                original = getattr(r.module.parametrizations, r.local_name).original.detach().clone()
                parametrize.remove_parametrizations(r.module, r.local_name, leave_parametrized=False)
                with torch.no_grad():
                    getattr(r.module, r.local_name).copy_(original)
        ties.retie(model, tie_map)
        model.__dict__.pop(PROJECTION_SPEC, None)
        raise
    return ProjectedSubspace(model)
