"""Single-launch materialisation of every covered tensor of a wrapped model (the multi-tensor path).

``parametrize`` evaluates each tensor lazily when a module reads it, so the naive engine launches
one combine per tensor per forward (and as many in backward). The fused path instead:

1. keeps vertex k of *all* covered tensors back to back in one flat buffer ``flat_k`` (length
   N = Σ_L n_L); each per-tensor parameter ``original{k}`` is a view of it, so optimizers,
   ``state_dict`` and DDP still see ordinary per-tensor Parameters;
2. on every forward of the root model, a forward pre-hook computes all weights in one go,
   ``w = Σ_k c_k · flat_k`` (one Triton launch on the segmented kernels, or one fused ``lerp`` /
   ``addcmul`` chain on the PyTorch backend), and each parametrization returns its view of ``w``;
   a forward hook (``always_call``) ends that window, so any access outside a forward (export,
   user code, ``torch.func.functional_call``) takes the per-tensor path and is never stale;
3. backward is one autograd node for all tensors: the weight gradients arrive concatenated (the
   split's backward) and one launch writes the K flat vertex gradients, of which each parameter's
   ``.grad`` is a view;
4. once :meth:`Subspace.regularizer <subspace_param.Subspace.regularizer>` has been called on the
   Triton path, later forwards also compute every per-tensor Gram entry ⟨V_a^L, V_b^L⟩ in the same
   pass; the regulariser then reuses them, and its gradient Σ_m A[L, k, m] V_m^L joins the weight
   gradient in the same backward launch.

The flat layout is checked on every forward (parameter identity and data pointer): after ``.to()``,
``.half()``, ``load_state_dict`` of a re-created parameter or ``deepcopy`` it is rebuilt; while
parameters are temporarily swapped (``functional_call``) or during ``torch.compile`` tracing the
per-tensor path is used (the per-tensor Triton ops are ``torch.compile``-safe custom ops).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

from .names import FUSED_ATTRIBUTE, POINT_BUFFER
from .ops import combine_torch, uses_triton
from .parametrization import SubspaceParametrization, point_coefficients


class FusedWeights:
    """Flat vertex storage and the single-launch forward of one wrapped model.

    A plain object in the root model's ``__dict__`` (not a module or buffer): ``state_dict`` never
    sees its tensors, and ``deepcopy`` gives a fresh, unbuilt instance (the copy's own parameters
    are flattened at its first forward). Pickling a parametrized model is refused by PyTorch itself;
    ``sp.save``/``sp.load`` go through ``state_dict``.

    Args:
        tensor_names: the covered tensors, in parametrization index order.
        groups: coefficient row of each tensor (all 0 unless layerwise).
        num_vertices: K.
        backend, triton_ok: the backend decision of the per-tensor path (:func:`subspace_param.ops.combine`).
        always: fuse on every device; otherwise (``fused=None``) only for CUDA tensors or on the
            Triton backend. On CPU the PyTorch per-tensor ops are already single kernels with
            µs dispatch, and the flat path's large fresh allocations (cat + K gradients) cost more
            than the dispatch they save.
    """

    def __init__(self, tensor_names: Sequence[str], groups: Sequence[int], num_vertices: int, backend: str,
                 triton_ok: bool, always: bool = False) -> None:  # fmt: skip
        self.always = always
        self.tensor_names = list(tensor_names)
        self.groups = list(groups)
        self.num_vertices = num_vertices
        self.backend = backend
        self.triton_ok = triton_ok
        #: compute the Gram entries in the forward pass (set by the first regulariser call)
        self.want_gram = False
        #: the weights of the forward in progress (None outside the root forward)
        self.weights: list[torch.Tensor] | None = None
        #: why the fused path cannot be used for this model (None: it can)
        self.unsupported: str | None = None
        #: forwards materialised by the fused path (each one launch on the Triton backend)
        self.fused_forwards = 0
        self._reset()

    def _reset(self) -> None:
        self._params: list[list[nn.Parameter]] | None = None  # [L][k]
        self._plists: list[nn.Module] = []
        self._flats: list[torch.Tensor] = []
        self._ptrs: list[list[int]] = []
        self._tables: dict[Any, Any] = {}  # chunk tables and Gram row indices, per device
        self._built_for: torch.device | None = None
        self._last_gram: tuple[torch.Tensor, tuple[int, ...], object] | None = None
        self.weights = None

    def __deepcopy__(self, memo: dict[int, Any]) -> FusedWeights:
        fresh = FusedWeights(
            self.tensor_names, self.groups, self.num_vertices, self.backend, self.triton_ok, self.always
        )
        fresh.want_gram = self.want_gram
        return fresh

    # -- layout ------------------------------------------------------------------------------
    @property
    def sizes(self) -> list[int]:
        assert self._params is not None
        return [row[0].numel() for row in self._params]

    def wanted(self, device: torch.device) -> bool:
        """Whether the fused path should run for a model whose tensors are on ``device``."""
        return self.always or device.type == "cuda" or self.use_triton(device)

    def use_triton(self, device: torch.device) -> bool:
        return uses_triton(self.backend, self.triton_ok, device, self.num_vertices)

    def build(self, root: nn.Module) -> None:
        """Find the vertex parameters and move them into flat buffers (at wrap time, and whenever
        the layout was lost)."""
        from .selection import find_parametrized

        self._reset()
        self._built_for = getattr(root, POINT_BUFFER).device
        refs = find_parametrized(root, SubspaceParametrization, self.tensor_names)
        plists = [getattr(r.module.parametrizations, r.local_name) for r in refs]
        params = [[getattr(pl, f"original{k}") for k in range(self.num_vertices)] for pl in plists]
        first = params[0][0]
        for name, row in zip(self.tensor_names, params):
            for k, p in enumerate(row):
                if p.dtype != first.dtype or p.device != first.device:
                    self.unsupported = (
                        f"vertex {k} of {name!r} is {p.dtype} on {p.device} but vertex 0 of "
                        f"{self.tensor_names[0]!r} is {first.dtype} on {first.device}: one flat buffer "
                        "needs one dtype and device"
                    )
                    return
        if len(set(self.groups)) > 1 and not self.use_triton(first.device):
            self.unsupported = "layerwise coefficients on the PyTorch backend (one combine per module)"
            return
        self.unsupported = None
        self._plists, self._params = plists, params
        self._flatten()

    def _flatten(self) -> None:
        """Copy vertex k of every tensor into ``flat_k`` and re-point the parameters to views of it."""
        assert self._params is not None
        params = self._params
        first = params[0][0]
        sizes = self.sizes
        offsets = [0]
        for n in sizes:
            offsets.append(offsets[-1] + n)
        flats = []
        with torch.no_grad():
            for k in range(self.num_vertices):
                flat = torch.empty(offsets[-1], dtype=first.dtype, device=first.device)
                for row, start, n in zip(params, offsets, sizes):
                    flat[start : start + n].copy_(row[k].reshape(-1))
                for row, start, n in zip(params, offsets, sizes):
                    row[k].data = flat[start : start + n].view(row[k].shape)
                flats.append(flat)
        self._flats = flats
        self._ptrs = [[p.data_ptr() for p in row] for row in params]
        self._tables = {}
        self._last_gram = None

    def _state(self) -> str:
        """``ok``; ``moved`` (same parameters, new storage: rebuild); ``swapped`` (other tensors in
        the parametrizations, e.g. inside ``functional_call``: per-tensor path)."""
        assert self._params is not None
        moved = False
        for plist, row, ptrs in zip(self._plists, self._params, self._ptrs):
            originals = plist._parameters
            for k, (p, ptr) in enumerate(zip(row, ptrs)):
                if originals.get(f"original{k}") is not p:
                    return "swapped"
                if p.data_ptr() != ptr:
                    moved = True
        return "moved" if moved else "ok"

    def ready(self, root: nn.Module) -> bool:
        """True when the fused forward can run now (rebuilding the flat layout if it was lost)."""
        if torch.compiler.is_compiling():
            return False

        device = getattr(root, POINT_BUFFER).device
        if not self.wanted(device):
            return False
        if self._params is None:
            self.build(root)
        if self.unsupported is not None and device != self._built_for:
            self.build(root)  # e.g. layerwise on the PyTorch backend, moved to CUDA since
        if self.unsupported is not None or self._params is None:
            return False
        state = self._state()
        if state == "swapped":
            return False
        if state == "moved":
            self.build(root)
            return self.unsupported is None
        return True

    def table(self) -> Any:
        from .kernels.segmented import chunk_table, segment_block

        sizes = self.sizes
        device = self._flats[0].device
        key = (device, segment_block(sizes))
        if key not in self._tables:
            self._tables[key] = chunk_table(sizes, self.groups, device, block=key[1])
        return self._tables[key]

    # -- forward -----------------------------------------------------------------------------
    def materialize(self, coefficients: torch.Tensor) -> list[torch.Tensor]:
        """All covered weights at ``coefficients`` (rows × K), from one combine."""
        assert self._params is not None
        triton = self.use_triton(self._flats[0].device)
        with_gram = triton and self.want_gram and torch.is_grad_enabled()
        token = object()
        params = [p for row in self._params for p in row]
        flat_w, gram = _FlatCombine.apply(self, token, coefficients, with_gram, *params)
        self._last_gram = (gram, self.versions(), token) if with_gram else None
        self.fused_forwards += 1
        return [w.view(row[0].shape) for w, row in zip(flat_w.split(self.sizes), self._params)]

    def versions(self) -> tuple[int, ...]:
        """In-place version of every vertex parameter (a parameter re-pointed by ``.data =`` keeps
        its own counter, so the flat buffers' counters do not see optimizer steps)."""
        assert self._params is not None
        return tuple(p._version for row in self._params for p in row)

    def fresh_gram(self, tensors: Sequence[int] | None = None) -> torch.Tensor | None:
        """The Gram matrices of the last forward, (L, K, K) or the rows of ``tensors`` only, if the
        vertices did not change since and its backward has not run yet (then the regulariser can
        join that backward)."""
        if self._last_gram is None:
            return None
        gram, versions, _ = self._last_gram
        if versions != self.versions() or gram.requires_grad != torch.is_grad_enabled():
            return None
        if tensors is None or len(tensors) == gram.shape[0]:
            return gram
        key = (tuple(tensors), gram.device)
        if key not in self._tables:  # cached: no host-to-device copy per step
            self._tables[key] = torch.tensor(tensors, device=gram.device)
        return gram.index_select(0, self._tables[key])


class _FlatCombine(torch.autograd.Function):
    """One node for all covered tensors: (params …) → (flat weights, per-tensor Gram)."""

    @staticmethod
    def forward(ctx, fused, token, coefficients, with_gram, *params):  # type: ignore[override]
        flats = fused._flats
        table = None
        if fused.use_triton(flats[0].device):
            from .kernels.segmented import segmented_combine

            table = fused.table()
            w, gram = segmented_combine(coefficients, flats, table, with_gram)
        else:
            w, gram = combine_torch(coefficients[0], flats), None
        ctx.set_materialize_grads(False)
        ctx.fused, ctx.token, ctx.table, ctx.flats = fused, token, table, flats
        ctx.versions = fused.versions() if with_gram else None  # only the Gram gradient reads vertices
        ctx.save_for_backward(coefficients)
        if gram is None:
            gram = w.new_zeros(0)
            ctx.mark_non_differentiable(gram)
        return w, gram

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_w, grad_gram):  # type: ignore[override]
        (coefficients,) = ctx.saved_tensors
        fused, flats, k = ctx.fused, ctx.flats, len(ctx.flats)
        if fused._last_gram is not None and fused._last_gram[2] is ctx.token:
            fused._last_gram = None  # this graph is consumed: the regulariser must recompute
        lincomb = None
        if grad_gram is not None and grad_gram.numel():
            if fused.versions() != ctx.versions:
                raise RuntimeError(
                    "a vertex of the subspace was modified in place between the forward pass and the "
                    "backward of the regulariser (call optimizer.step() after backward())"
                )
            lincomb = grad_gram + grad_gram.transpose(-1, -2)  # ∂⟨V_a, V_b⟩/∂V_a = V_b
        if grad_w is None and lincomb is None:
            return (None,) * len(ctx.needs_input_grad)
        if ctx.table is not None:
            from .kernels.segmented import segmented_combine_grad

            flat_grads = segmented_combine_grad(coefficients, grad_w, lincomb, flats, ctx.table)
        else:
            c = coefficients[0].to(grad_w.dtype)
            flat_grads = [torch.mul(grad_w, c[i]) for i in range(k)]
        sizes = fused.sizes
        pieces = [g.split(sizes) for g in flat_grads]
        grads: list[torch.Tensor | None] = []
        for index, row in enumerate(fused._params):
            for i, p in enumerate(row):
                wanted = ctx.needs_input_grad[4 + index * k + i]
                grads.append(pieces[i][index].view(p.shape) if wanted else None)
        return (None, None, None, None, *grads)


# -- hooks on the root model ------------------------------------------------------------------
def _materialize(root: nn.Module, args: Any) -> None:
    fused: FusedWeights | None = root.__dict__.get(FUSED_ATTRIBUTE)
    if fused is None:
        return
    fused.weights = None
    if fused.ready(root):
        fused.weights = fused.materialize(point_coefficients(root))


def _release(root: nn.Module, args: Any, output: Any) -> None:
    fused: FusedWeights | None = root.__dict__.get(FUSED_ATTRIBUTE)
    if fused is not None:
        fused.weights = None


def install(root: nn.Module, fused: FusedWeights) -> None:
    """Attach ``fused`` to ``root`` and register the two hooks; the vertices are flattened now if the
    fused path applies on the model's device, else at the first forward where it does."""

    object.__setattr__(root, FUSED_ATTRIBUTE, fused)
    if fused.wanted(getattr(root, POINT_BUFFER).device):
        fused.build(root)
    root.register_forward_pre_hook(_materialize)
    root.register_forward_hook(_release, always_call=True)


def uninstall(root: nn.Module) -> None:
    """Remove the fused state and its hooks (export, failed wrap). The parameters keep their values
    (views of the flat buffers stay valid)."""
    root.__dict__.pop(FUSED_ATTRIBUTE, None)
    for hooks in (root._forward_pre_hooks, root._forward_hooks):
        for key in [k for k, h in hooks.items() if h in (_materialize, _release)]:
            del hooks[key]
            root._forward_hooks_always_called.pop(key, None)


def fused_weights(root: nn.Module) -> FusedWeights | None:
    """The fused state of a wrapped model (None when it was wrapped with ``fused=False``)."""
    return root.__dict__.get(FUSED_ATTRIBUTE)


@contextlib.contextmanager
def materialized(model: nn.Module) -> Iterator[FusedWeights | None]:
    """Inside the block, the covered tensors of ``model`` are those of one fused forward: computed
    once on entry (one launch), and reading ``module.weight`` returns them, as during
    ``model(...)``. For code that reads the parametrized tensors without calling the model (custom
    functional code, the materialisation benchmark). Yields the fused state (None when the model
    was wrapped with ``fused=False``; then every read takes the per-tensor path)."""
    fused = fused_weights(model)
    _materialize(model, ())
    try:
        yield fused
    finally:
        _release(model, (), None)
