"""Single-launch materialisation of every covered tensor of a wrapped model (the multi-tensor path).

``parametrize`` evaluates each tensor lazily when a module reads it, so the naive engine launches
one combine per tensor per forward (and as many in backward). The fused path instead:

1. keeps vertex k of *all* covered tensors back to back in row k of one ``(K, N)`` storage, each
   tensor's segment starting on a multiple of 16 elements (zero padding between, so every kernel
   access is 128-bit); each per-tensor parameter ``original{k}`` is a view of it, so optimizers,
   ``state_dict`` and DDP still see ordinary per-tensor Parameters;
2. splits the tensors into *buckets* of about :data:`BUCKET_BYTES` of vertex gradients (at most
   32 tensors), formed from the last tensor backwards as DDP forms its buckets; a forward pre-hook
   of the root model opens a window in which the first read of a tensor computes its bucket's
   weights, one launch per bucket, ``w = Σ_k c_k · V_k`` (the segmented Triton kernels, or one
   ``lerp`` / ``addcmul`` chain on the
   PyTorch backend), and each parametrization returns its view of ``w``; a forward hook
   (``always_call``) ends that window, so any access outside a forward (export, user code,
   ``torch.func.functional_call``) takes the per-tensor path and is never stale;
3. backward is one autograd node per bucket: it runs as soon as its layers' backward is done (so
   DDP all-reduces bucket by bucket while the rest of the backward runs), reads the weight
   gradients where autograd left them and writes the K vertex gradients of the bucket in one
   launch, of which each parameter's ``.grad`` is a view;
4. once :meth:`Subspace.regularizer <subspace_param.Subspace.regularizer>` has been called, later
   forwards also compute every per-tensor Gram entry ⟨V_a^L, V_b^L⟩ in the same pass (on the
   PyTorch backend one ``mm`` per tensor of the strided ``(K, n_L)`` view); the regulariser then
   reuses them, and its gradient Σ_m A[L, k, m] V_m^L joins the weight gradient in the same
   backward launch (``addmm_`` into the vertex gradients on the PyTorch backend): no full-size
   temporaries;
5. reuses the weight and gradient buffers of the previous step when nothing else holds them any
   more (the storage's use count is back to the library's own reference), so a training loop
   allocates no full-size tensor per step once warm.

The flat layout is checked on every forward (parameter identity and data pointer): after ``.to()``,
``.half()``, ``load_state_dict`` of a re-created parameter or ``deepcopy`` it is rebuilt; while
parameters are temporarily swapped (``functional_call``) or during ``torch.compile`` tracing the
per-tensor path is used (the per-tensor Triton ops are ``torch.compile``-safe custom ops).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .names import FUSED_ATTRIBUTE, POINT_BUFFER
from .ops import combine_torch, uses_triton
from .parametrization import SubspaceParametrization, point_coefficients

#: vertex-gradient bytes per bucket (DDP's default ``bucket_cap_mb``)
BUCKET_BYTES = 25 * 2**20


@dataclass(frozen=True)
class Bucket:
    """Tensors ``[first, last)`` of the covered list, stored in flat columns ``[lo, hi)``."""

    index: int
    first: int
    last: int
    lo: int
    hi: int


def make_buckets(
    sizes: Sequence[int],
    offsets: Sequence[int],
    vertex_bytes: int,
    cap_bytes: int = BUCKET_BYTES,
    max_tensors: int = 32,
) -> list[Bucket]:
    """Buckets of consecutive tensors, filled from the last tensor backwards (the backward's
    order) up to ``cap_bytes`` of vertex gradients (``vertex_bytes`` per element) or ``max_tensors``
    tensors; returned in forward order."""
    spans: list[tuple[int, int]] = []
    last, used = len(sizes), 0
    for t in range(len(sizes) - 1, -1, -1):
        n_bytes = sizes[t] * vertex_bytes
        if last - t > max_tensors or (used and used + n_bytes > cap_bytes):
            spans.append((t + 1, last))
            last, used = t + 1, 0
        used += n_bytes
    if last > 0:
        spans.append((0, last))
    spans.reverse()
    return [Bucket(i, a, b, offsets[a], offsets[b]) for i, (a, b) in enumerate(spans)]


def _use_count(t: torch.Tensor) -> int:
    return torch._C._storage_Use_Count(t.untyped_storage()._cdata)


class _Spares:
    """Buffers kept between steps: handed out again once nothing but this cache holds them."""

    def __init__(self) -> None:
        self._buffers: dict[Any, tuple[torch.Tensor, int]] = {}

    def get(self, key: Any, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        held = self._buffers.get(key)
        if held is not None:
            buf, idle = held
            if (
                _use_count(buf) == idle
                and buf.shape == shape
                and buf.dtype == like.dtype
                and buf.device == like.device
            ):
                return buf
        buf = torch.empty(shape, dtype=like.dtype, device=like.device)
        self._buffers[key] = (buf, _use_count(buf))
        return buf


class FusedWeights:
    """Flat vertex storage and the bucketed forward of one wrapped model.

    A plain object in the root model's ``__dict__`` (not a module or buffer): ``state_dict`` never
    sees its tensors, and ``deepcopy`` gives a fresh, unbuilt instance (the copy's own parameters
    are flattened at its first forward). Pickling a parametrized model is refused by PyTorch itself;
    ``sp.save``/``sp.load`` go through ``state_dict``.

    Args:
        tensor_names: the covered tensors, in parametrization index order.
        groups: coefficient row of each tensor (all 0 unless layerwise).
        num_vertices: K.
        backend, triton_ok: the backend decision of the per-tensor path (:func:`subspace_param.ops.combine`).
        always: fuse on every device; otherwise (``fused=None``) for CUDA tensors, on the Triton
            backend, and on CPU (where the flat layout lets the regulariser join the combine's
            backward and the step allocate nothing once warm).
        bucket_bytes: vertex-gradient bytes per bucket (one launch each way per bucket).
    """

    def __init__(
        self,
        tensor_names: Sequence[str],
        groups: Sequence[int],
        num_vertices: int,
        backend: str,
        triton_ok: bool,
        always: bool = False,
        bucket_bytes: int = BUCKET_BYTES,
    ) -> None:
        self.always = always
        self.tensor_names = list(tensor_names)
        self.groups = list(groups)
        self.num_vertices = num_vertices
        self.backend = backend
        self.triton_ok = triton_ok
        self.bucket_bytes = bucket_bytes
        #: compute the Gram entries in the forward pass (set by the first regulariser call)
        self.want_gram = False
        #: the weights of the forward in progress, None where not read yet (None outside a forward)
        self.weights: list[torch.Tensor | None] | None = None
        #: why the fused path cannot be used for this model (None: it can)
        self.unsupported: str | None = None
        #: forwards materialised by the fused path (one launch per bucket on the Triton backend)
        self.fused_forwards = 0
        self._reset()

    def _reset(self) -> None:
        self._params: list[list[nn.Parameter]] | None = None  # [L][k]
        self._plists: list[nn.Module] = []
        self._storage: torch.Tensor | None = None  # (K, N): row k holds vertex k of every tensor
        self._flats: list[torch.Tensor] = []
        self._offsets: list[int] = []
        self.buckets: list[Bucket] = []
        self._ptrs: list[list[int]] = []
        self._tables: dict[Any, Any] = {}  # chunk tables and Gram row indices, per device
        self._spares = _Spares()
        self._built_for: torch.device | None = None
        self._last_gram: tuple[torch.Tensor, tuple[int, ...], object] | None = None
        self._window: dict[str, Any] | None = None
        self._bucket_of: list[int] = []
        self.weights = None

    def __deepcopy__(self, memo: dict[int, Any]) -> FusedWeights:
        fresh = FusedWeights(self.tensor_names, self.groups, self.num_vertices, self.backend, self.triton_ok,
                             self.always, self.bucket_bytes)  # fmt: skip
        fresh.want_gram = self.want_gram
        return fresh

    # -- layout ------------------------------------------------------------------------------
    @property
    def sizes(self) -> list[int]:
        assert self._params is not None
        return [row[0].numel() for row in self._params]

    def wanted(self, device: torch.device) -> bool:
        """Whether the fused path should run for a model whose tensors are on ``device``."""
        return self.always or device.type in ("cuda", "cpu") or self.use_triton(device)

    def use_triton(self, device: torch.device) -> bool:
        return uses_triton(self.backend, self.triton_ok, device, self.num_vertices)

    def build(self, root: nn.Module) -> None:
        """Find the vertex parameters and move them into the flat storage (at wrap time, and
        whenever the layout was lost)."""
        from .selection import find_parametrized

        self._reset()
        self._built_for = getattr(root, POINT_BUFFER).device
        refs = find_parametrized(root, SubspaceParametrization, self.tensor_names)
        plists = [getattr(r.module.parametrizations, r.local_name) for r in refs]
        params = [[getattr(pl, f"original{k}") for k in range(self.num_vertices)] for pl in plists]
        first = params[0][0]
        for name, row in zip(self.tensor_names, params):
            for k, p in enumerate(row):
                if _is_distributed_tensor(p):
                    self.unsupported = f"vertex {k} of {name!r}: {_FSDP_REASON}"
                    return
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
        """Copy vertex k of every tensor into row k of the storage and re-point the parameters to
        views of it."""
        from .kernels.limits import padded_offsets

        assert self._params is not None
        params = self._params
        first = params[0][0]
        sizes = self.sizes
        offsets = padded_offsets(sizes)
        storage = torch.zeros(self.num_vertices, offsets[-1], dtype=first.dtype, device=first.device)
        with torch.no_grad():
            for k in range(self.num_vertices):
                for row, start, n in zip(params, offsets, sizes):
                    storage[k, start : start + n].copy_(row[k].reshape(-1))
            for k in range(self.num_vertices):
                for row, start, n in zip(params, offsets, sizes):
                    row[k].data = storage[k, start : start + n].view(row[k].shape)
        self._storage = storage
        self._flats = [storage[k] for k in range(self.num_vertices)]
        self._offsets = offsets
        self.buckets = make_buckets(
            sizes, offsets, self.num_vertices * first.element_size(), self.bucket_bytes
        )
        self._bucket_of = [b.index for b in self.buckets for _ in range(b.first, b.last)]
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
        if torch.compiler.is_compiling() or _functorch_active():
            return False  # traced or transformed (vmap, grad): the per-tensor path is traceable

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
            if _fully_sharded(root):
                self.unsupported = _FSDP_REASON  # fully_shard swaps the vertices per module: record why
            return False
        if state == "moved":
            self.build(root)
            return self.unsupported is None
        return True

    def table(self, bucket: Bucket) -> Any:
        """The chunk table of one bucket (cached per device)."""
        from .kernels.segmented import chunk_table

        device = self._flats[0].device
        key = ("table", bucket.index, device)
        if key not in self._tables:
            sizes = self.sizes[bucket.first : bucket.last]
            self._tables[key] = chunk_table(
                sizes, self.groups[bucket.first : bucket.last], device, self._flats[0].dtype
            )
        return self._tables[key]

    def bucket_vertices(self, bucket: Bucket) -> list[torch.Tensor]:
        """Vertex k of the bucket's tensors: K contiguous flat slices."""
        return [flat[bucket.lo : bucket.hi] for flat in self._flats]

    def segment(self, t: int, k: int | None = None) -> torch.Tensor:
        """Tensor ``t``'s columns of the storage: ``(K, n_t)`` (strided), or vertex k's ``(n_t,)``."""
        assert self._storage is not None
        lo = self._offsets[t]
        n = self._params[t][0].numel()  # type: ignore[index]
        return self._storage[:, lo : lo + n] if k is None else self._storage[k, lo : lo + n]

    def spare(self, key: Any, shape: tuple[int, ...]) -> torch.Tensor:
        """A buffer of ``shape`` (the vertices' dtype and device), the previous step's if it is free."""
        return self._spares.get(key, shape, self._flats[0])

    # -- forward -----------------------------------------------------------------------------
    def open_window(self, coefficients: torch.Tensor) -> None:
        """Start a root forward at ``coefficients`` (rows × K): from now on each bucket is
        materialised, one launch, the first time one of its tensors is read (:meth:`weight`).

        Materialising a bucket just before its layers run places its autograd node right before
        them in the graph's order, so its backward runs as soon as their backward is done (the
        engine runs later-created nodes first): vertex gradients become ready bucket by bucket."""
        assert self._params is not None
        self._window = {
            "coefficients": coefficients,
            "with_gram": self.want_gram and torch.is_grad_enabled(),
            "token": object(),
            "weights": [None] * len(self._params),
            "grams": [None] * len(self.buckets),
        }
        self.weights = self._window["weights"]
        self.fused_forwards += 1

    def weight(self, index: int) -> torch.Tensor:
        """Tensor ``index`` of the forward in progress (materialising its bucket on first read)."""
        window = self._window
        assert window is not None
        if window["weights"][index] is None:
            self._run_bucket(self.buckets[self._bucket_of[index]])
        return window["weights"][index]

    def _run_bucket(self, bucket: Bucket) -> None:
        window = self._window
        assert window is not None and self._params is not None
        params = [p for row in self._params[bucket.first : bucket.last] for p in row]
        *ws, gram = _BucketCombine.apply(self, bucket, window["token"], window["coefficients"],
                                         window["with_gram"], self.num_vertices, *params)  # fmt: skip
        window["weights"][bucket.first : bucket.last] = ws
        window["grams"][bucket.index] = gram

    def close_window(self) -> None:
        """End the root forward; keep its Gram entries for the regulariser if every bucket ran."""
        window, self._window, self.weights = self._window, None, None
        if window is not None:
            self._keep_gram(window)

    def _keep_gram(self, window: dict[str, Any]) -> None:
        grams = window["grams"]
        if not (window["with_gram"] and all(g is not None for g in grams)):
            self._last_gram = None
        elif self._last_gram is None or self._last_gram[2] is not window["token"]:
            gram = grams[0] if len(grams) == 1 else torch.cat(grams)
            self._last_gram = (gram, self.versions(), window["token"])

    def materialize(self, coefficients: torch.Tensor) -> list[torch.Tensor]:
        """All covered weights at ``coefficients`` (rows × K) now, one combine per bucket (the
        window stays open for the Gram entries; :meth:`close_window` ends it)."""
        self.open_window(coefficients)
        for bucket in self.buckets:
            self._run_bucket(bucket)
        return list(self._window["weights"])  # type: ignore[index]

    def versions(self) -> tuple[int, ...]:
        """In-place version of every vertex parameter (a parameter re-pointed by ``.data =`` keeps
        its own counter, so the flat buffers' counters do not see optimizer steps)."""
        assert self._params is not None
        return tuple(p._version for row in self._params for p in row)

    def fresh_gram(self, tensors: Sequence[int] | None = None) -> torch.Tensor | None:
        """The Gram matrices of the last forward, (L, K, K) or the rows of ``tensors`` only, if the
        vertices did not change since and its backward has not run yet (then the regulariser can
        join that backward)."""
        if self._window is not None:  # inside the forward window (``materialized``): its buckets so far
            self._keep_gram(self._window)
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


_FSDP_REASON = (
    "the vertices are DTensor shards (FSDP2 fully_shard), gathered and freed per module, so they "
    "cannot live in one flat buffer: the per-tensor path is used"
)


def _fully_sharded(root: nn.Module) -> bool:
    """``fully_shard`` (FSDP2) was applied to ``root`` or one of its submodules."""
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # torch without distributed
        return False
    return any(isinstance(m, FSDPModule) for m in root.modules())


def _functorch_active() -> bool:
    """Inside a ``torch.func`` transform (vmap over points, grad, jvp)."""
    active = getattr(torch._C, "_are_functorch_transforms_active", None)
    return bool(active()) if active is not None else False


def _is_distributed_tensor(t: torch.Tensor) -> bool:
    return type(t).__name__ == "DTensor" or type(getattr(t, "data", None)).__name__ == "DTensor"


def _torch_gram(fused: FusedWeights, bucket: Bucket) -> torch.Tensor:
    """(T, K, K) per-tensor Gram matrices, one ``mm`` of each tensor's strided ``(K, n)`` columns."""
    acc = torch.float64 if fused._flats[0].dtype == torch.float64 else torch.float32
    grams = []
    for t in range(bucket.first, bucket.last):
        v = fused.segment(t)
        v = v if v.dtype == acc else v.to(acc)
        grams.append(torch.mm(v, v.T))
    return torch.stack(grams)


class _BucketCombine(torch.autograd.Function):
    """One node for the tensors of one bucket: (params …) → (their weights …, per-tensor Gram)."""

    @staticmethod
    def forward(ctx, fused, bucket, token, coefficients, with_gram, k, *params):  # type: ignore[override]
        flats = fused.bucket_vertices(bucket)
        table = None
        w = fused.spare(("w", bucket.index), (bucket.hi - bucket.lo,))
        if fused.use_triton(flats[0].device):
            from .kernels.segmented import segmented_combine

            table = fused.table(bucket)
            w, gram = segmented_combine(coefficients, flats, table, with_gram, out=w)
        else:
            w = combine_torch(coefficients[0], flats, out=w)
            gram = _torch_gram(fused, bucket) if with_gram else None
        ctx.set_materialize_grads(False)
        ctx.fused, ctx.bucket, ctx.table, ctx.k, ctx.token = fused, bucket, table, k, token
        ctx.versions = fused.versions() if with_gram else None  # only the Gram gradient reads vertices
        ctx.save_for_backward(coefficients)
        weights = []
        for t in range(bucket.first, bucket.last):
            lo = fused._offsets[t] - bucket.lo
            shape = fused._params[t][0].shape
            weights.append(w[lo : lo + shape.numel()].view(shape))
        if gram is None:
            gram = w.new_zeros(0)
            ctx.mark_non_differentiable(gram)
        return (*weights, gram)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grads):  # type: ignore[override]
        (coefficients,) = ctx.saved_tensors
        fused, bucket, k = ctx.fused, ctx.bucket, ctx.k
        if fused._last_gram is not None and fused._last_gram[2] is ctx.token:
            fused._last_gram = None  # this graph is being consumed: the regulariser must recompute
        grad_ws, grad_gram = list(grads[:-1]), grads[-1]
        n_inputs = 6
        lincomb = None
        if grad_gram is not None and grad_gram.numel():
            if fused.versions() != ctx.versions:
                raise RuntimeError(
                    "a vertex of the subspace was modified in place between the forward pass and the "
                    "backward of the regulariser (call optimizer.step() after backward())"
                )
            lincomb = grad_gram + grad_gram.transpose(-1, -2)  # ∂⟨V_a, V_b⟩/∂V_a = V_b
        has_g = any(g is not None for g in grad_ws)
        tensors = bucket.last - bucket.first
        wanted = [any(ctx.needs_input_grad[n_inputs + t * k + i] for t in range(tensors)) for i in range(k)]
        if (not has_g and lincomb is None) or not any(wanted):
            return (None,) * len(ctx.needs_input_grad)
        buffer = fused.spare(("grad", bucket.index), (k, bucket.hi - bucket.lo))
        if ctx.table is not None:
            from .kernels.segmented import segmented_combine_grad

            segmented_combine_grad(coefficients, grad_ws if has_g else None, lincomb,
                                   fused.bucket_vertices(bucket), ctx.table, wanted, out=buffer)  # fmt: skip
        else:
            _torch_combine_grad(fused, bucket, coefficients[0], grad_ws, lincomb, buffer)
        out: list[torch.Tensor | None] = []
        for t in range(bucket.first, bucket.last):
            lo = fused._offsets[t] - bucket.lo
            shape = fused._params[t][0].shape
            for i in range(k):
                wanted_here = ctx.needs_input_grad[n_inputs + (t - bucket.first) * k + i]
                out.append(buffer[i, lo : lo + shape.numel()].view(shape) if wanted_here else None)
        return (None,) * n_inputs + tuple(out)


def _torch_combine_grad(
    fused: FusedWeights,
    bucket: Bucket,
    c: torch.Tensor,
    grad_ws: list[torch.Tensor | None],
    lincomb: torch.Tensor | None,
    buffer: torch.Tensor,
) -> None:
    """buffer[:, L] = c ⊗ g^L + A[L] @ V^L per tensor L of the bucket (PyTorch ops, in place)."""
    c = c.to(torch.float64 if buffer.dtype == torch.float64 else torch.float32)[:, None]
    for j, t in enumerate(range(bucket.first, bucket.last)):
        lo = fused._offsets[t] - bucket.lo
        n = fused._params[t][0].numel()
        out = buffer[:, lo : lo + n]
        g = grad_ws[j]
        if g is None:
            out.zero_()
        else:
            torch.mul(c, g.reshape(1, -1), out=out)
        if lincomb is not None:
            out.addmm_(lincomb[j].to(buffer.dtype), fused.segment(t))  # += A[L] @ V^L, in place


# -- hooks on the root model ------------------------------------------------------------------
def _materialize(root: nn.Module, args: Any) -> None:
    fused: FusedWeights | None = root.__dict__.get(FUSED_ATTRIBUTE)
    if fused is None:
        return
    fused.close_window()
    if fused.ready(root):
        fused.open_window(point_coefficients(root))


def _release(root: nn.Module, args: Any, output: Any) -> None:
    fused: FusedWeights | None = root.__dict__.get(FUSED_ATTRIBUTE)
    if fused is not None:
        fused.close_window()


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
    once on entry (one launch per bucket), and reading ``module.weight`` returns them, as during
    ``model(...)``. For code that reads the parametrized tensors without calling the model (custom
    functional code, the materialisation benchmark). Yields the fused state (None when the model
    was wrapped with ``fused=False``; then every read takes the per-tensor path)."""
    fused = fused_weights(model)
    _materialize(model, ())
    if fused is not None and fused._window is not None:
        for bucket in fused.buckets:
            if fused._window["grams"][bucket.index] is None:
                fused._run_bucket(bucket)
    try:
        yield fused
    finally:
        _release(model, (), None)
