"""The :class:`Subspace` handle and :func:`wrap`, the engine behind the one-call functions."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn
from torch.nn.utils import parametrize

from . import copying, hooks, recurrent, stale_point, ties
from .batchnorm import reestimate_bn
from .errors import PointError, SubspaceError
from .finite import check_finite
from .fused import FusedWeights, fused_weights, install, uninstall
from .geometry import Geometry, geometry_from_spec
from .kernels.limits import MAX_VERTICES
from .names import POINT_BUFFER, RUNTIME_ATTRIBUTE, SPEC_ATTRIBUTE, STALE_ATTRIBUTE
from .ops import resolve_backend, triton_usable, uses_triton
from .parametrization import SubspaceParametrization, point_coefficients
from .regularizer import cosine_from_grams, cosine_regularizer, is_weight
from .selection import FilterFn, TensorRef, find_parametrized, select_by_names, select_tensors
from .vertex_init import VertexInit, resolve_init

if TYPE_CHECKING:
    from .autosample import AutoSample

SPEC_VERSION = 1
PointLike = float | Sequence[float] | torch.Tensor


def _new_seed() -> int:
    return int(torch.randint(0, 2**62, (1,)).item())


class Subspace:
    """Handle on a wrapped model. Owns nothing the model does not carry: the point and
    coefficients are buffers of the root model, the vertices are its parameters.

    Obtain it from the one-call functions (:func:`subspace_param.line`, …) or, for any wrapped
    model, from :func:`get_subspace`.
    """

    def __init__(self, model: nn.Module, seed: int | None = None) -> None:
        spec = getattr(model, SPEC_ATTRIBUTE, None)
        if spec is None:
            hint = (
                " (it is a random-projection subspace: use sp.get_projection)"
                if getattr(model, "_subspace_projection_spec", None) is not None
                else ""
            )
            raise SubspaceError(f"{type(model).__name__} is not wrapped as a subspace{hint}")
        self.model = model
        runtime = model.__dict__.get(RUNTIME_ATTRIBUTE)
        self.geometry: Geometry = runtime["geometry"] if runtime else geometry_from_spec(spec["geometry"])
        self.layerwise: bool = spec["layerwise"]
        self.tensor_names: list[str] = list(spec["tensors"])
        self.num_groups: int = spec["num_groups"]
        self.refs: list[TensorRef] = find_parametrized(model, SubspaceParametrization, self.tensor_names)
        self.generator = torch.Generator().manual_seed(_new_seed() if seed is None else seed)

    # -- structure ---------------------------------------------------------------------------
    @property
    def num_vertices(self) -> int:
        return self.geometry.num_vertices

    @property
    def spec(self) -> dict[str, Any]:
        return copy.deepcopy(getattr(self.model, SPEC_ATTRIBUTE))

    def vertex(self, k: int) -> dict[str, nn.Parameter]:
        """Vertex ``k`` of every covered tensor, by qualified name (the live Parameters)."""
        if not 0 <= k < self.num_vertices:
            raise IndexError(f"vertex {k} out of range for a {self.geometry.describe()}")
        return {name: row[k] for name, row in zip(self.tensor_names, self.vertices())}

    def vertices(self) -> list[list[nn.Parameter]]:
        """``vertices()[L][k]``: vertex k of covered tensor L."""
        out = []
        for r in self.refs:
            plist = getattr(r.module.parametrizations, r.local_name)
            out.append([getattr(plist, f"original{k}") for k in range(self.num_vertices)])
        return out

    def parameters(self) -> Iterator[nn.Parameter]:
        """All vertex parameters (the subspace's trainable state)."""
        for row in self.vertices():
            yield from row

    # -- the point -----------------------------------------------------------------------
    @property
    def point(self) -> torch.Tensor:
        """The current point: shape ``(P,)``, or ``(G, P)`` in layerwise mode (a copy)."""
        p = getattr(self.model, POINT_BUFFER).detach().clone()
        return p if self.layerwise else p[0]

    @property
    def coefficients(self) -> torch.Tensor:
        """The current coefficients: shape ``(K,)``, or ``(G, K)`` in layerwise mode (a copy)."""
        c = point_coefficients(self.model).detach().clone()
        return c if self.layerwise else c[0]

    def _point_rows(self, point: PointLike, extrapolate: bool) -> torch.Tensor:
        p = self.geometry.as_point(point, extrapolate=extrapolate)
        if p.ndim == 1:
            return p.expand(self.num_groups, -1)
        if p.ndim == 2 and p.shape[0] == self.num_groups:
            return p
        raise PointError(
            f"point of shape {tuple(p.shape)} fits neither ({self.geometry.point_dim},) nor "
            f"({self.num_groups}, {self.geometry.point_dim}) (one row per module in layerwise mode)"
        )

    def set_point(self, point: PointLike, *, extrapolate: bool = False) -> None:
        """Move the model to ``point`` (validated; outside the geometry only with ``extrapolate=True``)."""
        rows = self._point_rows(point, extrapolate)
        coeffs = self.geometry.coefficients(rows)
        if ((coeffs.sum(-1) - 1).abs() > 1e-6).any():
            raise SubspaceError(
                f"geometry {self.geometry!r} produced non-affine coefficients {coeffs.tolist()}"
            )
        with torch.no_grad():
            getattr(self.model, POINT_BUFFER).copy_(rows, non_blocking=True)
        self._invalidate_parametrize_cache()

    def _invalidate_parametrize_cache(self) -> None:
        """Inside ``parametrize.cached()`` a new point takes effect: our cached weights are dropped."""
        if not parametrize._cache_enabled:
            return
        cache = getattr(parametrize, "_cache", None)
        if not isinstance(cache, dict):  # pragma: no cover - a PyTorch without the module-level cache
            raise SubspaceError("set_point inside parametrize.cached() is not supported by this PyTorch")
        names = [*self.tensor_names, *getattr(self.model, SPEC_ATTRIBUTE).get("ties", {})]
        for name in names:
            module_name, _, local = name.rpartition(".")
            cache.pop((id(self.model.get_submodule(module_name)), local), None)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw a uniform point (one per module in layerwise mode), set it and return it."""
        n = self.num_groups if self.layerwise else 1
        p = self.geometry.sample(n, generator=generator or self.generator, dtype=torch.float64)
        self.set_point(p if self.layerwise else p[0])
        return self.point

    @contextlib.contextmanager
    def at(self, point: PointLike, *, extrapolate: bool = False) -> Iterator[Subspace]:
        """Context manager: evaluate at ``point``, then restore the previous point."""
        saved_p = getattr(self.model, POINT_BUFFER).detach().clone()
        self.set_point(point, extrapolate=extrapolate)
        try:
            yield self
        finally:
            with torch.no_grad():
                getattr(self.model, POINT_BUFFER).copy_(saved_p)
            self._invalidate_parametrize_cache()

    def center(self) -> torch.Tensor:
        """Midpoint (paths) or centroid (simplex)."""
        return self.geometry.center()

    def iter_samples(self, *tensors: torch.Tensor, num_samples: int) -> Iterator[tuple[torch.Tensor, ...]]:
        """Split a batch into ``num_samples`` chunks along dim 0, drawing a new point for each.

        Use for several subspace samples per batch (the reference's ``--num-samples``)::

            for x, y in subspace.iter_samples(inputs, targets, num_samples=4):
                (loss_fn(model(x), y) / 4).backward()
        """
        if num_samples < 1:
            raise ValueError(f"num_samples must be ≥ 1, got {num_samples}")
        n = tensors[0].shape[0]
        if n < num_samples:
            raise ValueError(f"a batch of {n} cannot be split into num_samples={num_samples} chunks")
        chunks = [torch.tensor_split(t, num_samples) for t in tensors]
        for parts in zip(*chunks):
            self.sample()
            yield parts

    # -- regulariser --------------------------------------------------------------------------
    def regularized_tensors(self, tensors: Literal["weights", "all"] = "weights") -> list[str]:
        """Names of the tensors the regulariser covers (``weights``: ≥ 2 dims; ``all``)."""
        return [
            n
            for n, row in zip(self.tensor_names, self.vertices())
            if tensors == "all" or is_weight(n, row[0])
        ]

    def expect_regularizer(self) -> None:
        """Announce that the loop adds :meth:`regularizer` after each forward: from the next
        forward on, the fused path computes the Gram entries with the weights, so the very first
        step already takes the same arithmetic as every later one (a resumed run is then bit-identical
        to an uninterrupted one). Without it, the first :meth:`regularizer` call does this itself."""
        fused = fused_weights(self.model)
        if fused is not None:
            fused.want_gram = True

    def regularizer(
        self,
        beta: float = 1.0,
        *,
        pairs: Literal["random", "all"] = "random",
        per_layer: bool = False,
        tensors: Literal["weights", "all"] = "weights",
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """β · cos²(V_i, V_j), see :mod:`subspace_param.regularizer`.

        ``pairs="random"`` draws one unordered pair i ≠ j per call (the reference's choice);
        ``"all"`` averages over the K(K−1)/2 pairs. ``per_layer`` averages per-tensor cosines
        instead of one global cosine over the concatenated tensors.

        On the fused path, call it *after* the forward: from the second call on, the Gram entries
        come from the forward's own pass, and the regulariser's gradient joins the weight gradient
        in the same backward (otherwise one Gram pass per tensor is made here).
        """
        rows = self.vertices()
        covered_index = [i for i, row in enumerate(rows) if tensors == "all" or is_weight("", row[0])]
        if not covered_index:
            raise ValueError(f"the regulariser covers no tensor (tensors={tensors!r})")
        covered = [rows[i] for i in covered_index]
        k = self.num_vertices
        if pairs == "random":
            perm = torch.randperm(k, generator=generator or self.generator)[:2].tolist()
            chosen = [(min(perm), max(perm))]
        elif pairs == "all":
            chosen = [(i, j) for i in range(k) for j in range(i + 1, k)]
        else:
            raise ValueError(f"pairs must be 'random' or 'all', got {pairs!r}")
        backend = getattr(self.model, SPEC_ATTRIBUTE)["backend"]
        use_triton = uses_triton(backend, triton_usable(), covered[0][0].device, k)
        fused = fused_weights(self.model)
        if fused is not None and fused.ready(self.model):
            grams = fused.fresh_gram(covered_index)
            if grams is not None:  # computed by the last forward's launch: the backward joins it too
                return beta * cosine_from_grams(grams, chosen, per_layer)
            fused.want_gram = True  # from the next forward on, the Gram entries come with the weights
        return beta * cosine_regularizer(covered, chosen, per_layer=per_layer, use_triton=use_triton)

    # -- evaluation helpers -----------------------------------------------------------------
    def update_bn(
        self,
        loader: Iterable[Any],
        point: PointLike | None = None,
        *,
        num_batches: int | None = None,
        device: torch.device | str | None = None,
        extrapolate: bool = False,
    ) -> None:
        """Re-estimate BatchNorm running stats at ``point`` (default: the current point) with an
        exact cumulative average over the first ``num_batches`` batches of ``loader`` (default: all).
        The statistics stay in the model (they are shared buffers) until the next call."""
        ctx = self.at(point, extrapolate=extrapolate) if point is not None else contextlib.nullcontext()
        with ctx:
            reestimate_bn(self.model, loader, num_batches=num_batches, device=device)

    def autosample(
        self,
        beta: float = 1.0,
        *,
        pairs: Literal["random", "all"] = "random",
        per_layer: bool = False,
        seed: int | None = None,
    ) -> AutoSample:
        """From now on every training-mode forward draws a fresh point, and its backward also gives
        the vertices the gradient of β·cos² — so a loop you do not own (Hugging Face ``Trainer``,
        Lightning, a plain loop) trains the subspace unchanged. Returns a removable handle (also a
        context manager). The loss the loop reports does not include the regulariser; see
        :mod:`subspace_param.autosample`."""
        from .autosample import AutoSample

        return AutoSample(self, beta, pairs=pairs, per_layer=per_layer, seed=seed)

    def check_finite(
        self, loss: torch.Tensor | float | None = None, *, where: str = "", values: bool = False
    ) -> None:
        """Raise :class:`~subspace_param.errors.NonFiniteError` if ``loss`` or any vertex gradient
        (``values=True``: any vertex too) is NaN or infinite, naming the tensors (``name[vertex k]``).

        Call it after ``loss.backward()`` and before ``opt.step()``, so a diverged step never
        reaches the weights; the library's loops do."""
        named = [
            (f"{name}[vertex {k}]", v)
            for name, row in zip(self.tensor_names, self.vertices())
            for k, v in enumerate(row)
        ]
        check_finite(loss, named, where=where, values=values)

    def export(self, point: PointLike | None = None, *, extrapolate: bool = False) -> nn.Module:
        """A plain copy of the model (original classes, no parametrizations) at ``point``
        (default: the current point). Its outputs equal the wrapped model's at that point; the
        BN running stats are copied as they are (call :meth:`update_bn` first to re-estimate)."""
        clone = copy.deepcopy(self.model)
        sub = Subspace(clone, seed=0)
        if point is not None:
            sub.set_point(point, extrapolate=extrapolate)
        spec = getattr(clone, SPEC_ATTRIBUTE)
        freeze_parametrized(sub.refs, spec["requires_grad"], clone, spec.get("ties", {}))
        _strip(clone)
        return clone

    def __repr__(self) -> str:
        return (
            f"Subspace({self.geometry!r}, tensors={len(self.refs)}, layerwise={self.layerwise}, "
            f"point={self.point.tolist()})"
        )


def freeze_parametrized(
    refs: Sequence[TensorRef],
    requires_grad: Sequence[bool],
    model: nn.Module | None = None,
    tie_map: dict[str, str] | None = None,
) -> None:
    """In place, on a *deep copy* of a wrapped model: replace every parametrized tensor by a plain
    Parameter holding its current value (with the original ``requires_grad``); every tied name of
    ``tie_map`` (secondary → primary) then holds its primary's Parameter again.

    A deep copy shares the parametrized *class* with the original, so ``remove_parametrizations``
    (which deletes the class property) would break the original: the instance class is swapped back.
    """
    tie_map = tie_map or {}
    with torch.no_grad():
        values = [getattr(r.module, r.local_name).detach().clone() for r in refs]
    modules = [r.module for r in refs] + (ties.secondary_modules(model, tie_map) if model is not None else [])
    for module in {id(m): m for m in modules}.values():
        # a user's own parametrizations on the same module (weight_norm on a weight whose bias is
        # ours, or the chain our vertices feed) are kept: only this library's lists are removed
        kept = {n: pl for n, pl in module.parametrizations.items() if not _is_ours_list(pl)}
        module.__class__ = parametrize.type_before_parametrizations(module)
        del module._modules["parametrizations"]
        for name, plist in kept.items():
            _reattach(module, name, plist)
    for ref, value, rg in zip(refs, values, requires_grad):
        ref.module.register_parameter(ref.local_name, nn.Parameter(value, requires_grad=rg))
    if model is not None:
        ties.retie(model, tie_map)


def _is_ours_list(plist: nn.Module) -> bool:
    return any(getattr(p, "is_subspace_parametrization", False) for p in plist)


def _reattach(module: nn.Module, name: str, plist: nn.Module) -> None:
    """Give ``module`` (class already restored) the parametrization list ``plist`` for ``name`` again,
    through ``register_parametrization`` so that the module gets a class of its own (not shared with
    the model it was copied from)."""
    with torch.no_grad():
        placeholder = plist().detach().clone()
    module.register_parameter(name, nn.Parameter(placeholder, requires_grad=False))
    ties.attach_list(module, name, plist)


def _strip(model: nn.Module) -> None:
    uninstall(model)
    recurrent.uninstall(model)
    hooks.strip(model)
    model.__dict__.pop(STALE_ATTRIBUTE, None)
    if POINT_BUFFER in model._buffers:
        del model._buffers[POINT_BUFFER]
    model.__dict__.pop(SPEC_ATTRIBUTE, None)
    model.__dict__.pop(RUNTIME_ATTRIBUTE, None)


def is_wrapped(model: nn.Module) -> bool:
    """True for a model wrapped by :func:`wrap` (a line, curve, chain, simplex, …)."""
    return getattr(model, SPEC_ATTRIBUTE, None) is not None


def get_subspace(model: nn.Module, seed: int | None = None) -> Subspace:
    """The :class:`Subspace` handle of a wrapped model (a new handle; the state is the model's)."""
    return Subspace(model, seed=seed)


def wrap(
    model: nn.Module,
    geometry: Geometry,
    *,
    filter_fn: FilterFn | None = None,
    init: str | VertexInit = "independent",
    layerwise: bool = False,
    seed: int | None = None,
    backend: str | None = None,
    frozen_vertices: Sequence[int] = (),
    tensor_names: Sequence[str] | None = None,
    fused: bool | None = None,
) -> Subspace:
    """Turn ``model`` in place into a subspace of networks of the given geometry.

    Every selected tensor W becomes Σ_k c_k(point) · V_k with V_0 = W and V_1 … V_{K-1} from
    ``init``. The point starts at the geometry's center. See :func:`subspace_param.line`.

    Args:
        filter_fn: ``(module, qualified_name) -> bool`` choosing parameters (default: every
            floating-point parameter with ``requires_grad``).
        init: ``"independent"`` (default), ``"copy"``, ``"perturb"`` or a :class:`VertexInit`.
        layerwise: an independent point for every module instead of one shared point.
        seed: seeds the vertex initialisation and the handle's sampling generator.
        backend: ``"auto"`` | ``"torch"`` | ``"triton"`` for the weight combination.
        frozen_vertices: vertex indices whose parameters get ``requires_grad=False``.
        tensor_names: explicit qualified names instead of ``filter_fn`` (used by :func:`load`).
        fused: materialise all covered tensors with one combine per forward of ``model`` (vertices
            in flat buffers, see :mod:`subspace_param.fused`). None (default): on CUDA and on the
            Triton backend, not for CPU tensors on the PyTorch backend (slower there, see
            ``benchmarks/RESULTS.md``); False: always one combine per tensor access.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(geometry, Geometry):
        raise TypeError(f"geometry must be a Geometry, got {type(geometry).__name__}")
    if is_wrapped(model):
        raise SubspaceError(
            f"{type(model).__name__} is already wrapped as a {get_subspace(model).geometry.describe()}; "
            "wrap a fresh model, or export() a point of this one first"
        )
    backend = resolve_backend(backend)
    triton_ok = backend != "torch" and triton_usable()
    if backend == "triton" and not triton_ok:
        raise SubspaceError(
            "backend='triton' needs triton and a CUDA device (or TRITON_INTERPRET=1 set before triton is "
            "imported, to run the kernels on CPU); use backend='torch' or SUBSPACE_PARAM_BACKEND=torch"
        )
    k = geometry.num_vertices
    if backend == "triton" and k > MAX_VERTICES:
        raise SubspaceError(
            f"backend='triton' takes at most {MAX_VERTICES} vertices, a {geometry.describe()} has {k}; "
            "use backend='auto' (PyTorch ops above that) or backend='torch'"
        )
    bad = [v for v in frozen_vertices if not 0 <= v < k]
    if bad:
        raise ValueError(f"frozen_vertices {bad} out of range for a {geometry.describe()}")
    if tensor_names is not None:
        refs = select_by_names(model, list(tensor_names))
    else:
        refs = select_tensors(model, filter_fn)
    tied = ties.secondary_refs(model, refs)  # before parametrizing: the tied Parameters are still in place
    tie_map = {sec.qualified_name: refs[i].qualified_name for sec, i in tied}
    # the very Parameter objects, so that a failed wrap can put them back (identity, ties, requires_grad)
    saved = [(r, getattr(r.module, r.local_name)) for r in [*refs, *(sec for sec, _ in tied)]]
    init_strategy = resolve_init(init, seed)
    init_strategy.prepare(model)
    vertices = init_strategy.vertices(refs, k)
    requires_grad = [bool(getattr(r.module, r.local_name).requires_grad) for r in refs]

    group_of: dict[int, int] = {}
    for r in refs:
        group_of.setdefault(id(r.module), len(group_of))
    num_groups = len(group_of) if layerwise else 1

    first = getattr(refs[0].module, refs[0].local_name)
    buf_dtype = first.dtype if first.dtype == torch.float64 else torch.float32
    model.register_buffer(
        POINT_BUFFER, torch.zeros(num_groups, geometry.point_dim, dtype=buf_dtype, device=first.device)
    )
    # plain attribute (not saved): the Geometry object and whether Triton can run here
    object.__setattr__(model, RUNTIME_ATTRIBUTE, {"geometry": geometry, "triton_ok": triton_ok})
    # plain attribute in __dict__ (not a buffer/child): survives deepcopy, ignored by state_dict
    object.__setattr__(
        model,
        SPEC_ATTRIBUTE,
        {
            "version": SPEC_VERSION,
            "geometry": geometry.spec(),
            "layerwise": layerwise,
            "num_groups": num_groups,
            "tensors": [r.qualified_name for r in refs],
            "requires_grad": requires_grad,
            "frozen_vertices": sorted(frozen_vertices),
            "backend": backend,
            "fused": fused,
            "ties": tie_map,
            "groups": [group_of[id(r.module)] if layerwise else 0 for r in refs],
        },
    )
    groups = getattr(model, SPEC_ATTRIBUTE)["groups"]
    try:
        for i, (r, verts) in enumerate(zip(refs, vertices)):
            p = SubspaceParametrization(model, i, verts)
            parametrize.register_parametrization(r.module, r.local_name, p)
            plist = getattr(r.module.parametrizations, r.local_name)
            for v in frozen_vertices:
                getattr(plist, f"original{v}").requires_grad_(False)
        for sec, i in tied:
            ties.share(refs[i], sec)
        recurrent.install(r.module for r in refs)
        copying.guard_forwarded_deepcopy(model)
        stale_point.install(model)
        if fused is not False:
            names = [r.qualified_name for r in refs]
            install(model, FusedWeights(names, groups, k, backend, triton_ok, always=bool(fused)))
    except Exception:
        _undo(model, saved, tie_map)
        raise
    sub = Subspace(model, seed=seed)
    sub.set_point(geometry.center())
    return sub


def _undo(model: nn.Module, saved: Sequence[tuple[TensorRef, nn.Parameter]], tie_map: dict[str, str]) -> None:
    """Roll back a half-done wrap: every covered name (tied names too) gets back the very Parameter
    object it had, so the model, its ties and any optimizer built on it are as before."""
    ties.unshare(model, tie_map)
    for ref, original in saved:
        if parametrize.is_parametrized(ref.module, ref.local_name):
            parametrize.remove_parametrizations(ref.module, ref.local_name, leave_parametrized=True)
        if hasattr(ref.module, ref.local_name):
            delattr(ref.module, ref.local_name)
        ref.module.register_parameter(ref.local_name, original)
    _strip(model)
