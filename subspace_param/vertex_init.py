"""How the extra vertices V_1 … V_{K-1} of every covered tensor are initialised.

Vertex 0 is always the model's current tensor unless :class:`FromModels` replaces it.
"""

from __future__ import annotations

import abc
import contextlib
import copy
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize

from .errors import ArchitectureMismatchError
from .selection import TensorRef, has_reset_parameters, tensor_of


class VertexInit(abc.ABC):
    """Strategy returning, for each selected tensor, its K vertex tensors (vertex 0 first)."""

    def prepare(self, model: nn.Module) -> None:  # noqa: B027 - optional hook, no-op by default
        """Called by the wrapper with the whole model before :meth:`vertices` (default: nothing)."""

    @abc.abstractmethod
    def vertices(self, refs: Sequence[TensorRef], num_vertices: int) -> list[list[torch.Tensor]]: ...


def _constant(t: torch.Tensor) -> bool:
    """All entries equal (norm weights 1, biases 0, a scalar): such a tensor starts constant."""
    flat = t.detach().reshape(-1)
    return flat.numel() <= 1 or bool((flat == flat[0]).all())


def _rescaled(draw: torch.Tensor, v0: torch.Tensor) -> torch.Tensor:
    """``draw`` shifted and scaled to V0's mean and standard deviation (its shape of distribution —
    uniform, normal, truncated — is kept); a constant draw falls back to a moment-matched normal."""
    if _constant(draw):
        return _moment_matched(v0)
    d, ref = draw.detach().double(), v0.detach().double()
    return ((d - d.mean()) / d.std() * ref.std() + ref.mean()).to(v0.dtype)


def hf_initialiser(model: nn.Module | None):
    """The ``_init_weights`` of the outermost Hugging Face ``PreTrainedModel`` in ``model``, or None."""
    if model is None:
        return None
    for m in model.modules():
        if callable(getattr(type(m), "_init_weights", None)) and hasattr(m, "config"):
            return m._init_weights
    return None


def vertex_seed(seed: int) -> int:
    """The generator seed of the vertex draws for a user's ``seed``: a fixed 64-bit mix (SplitMix64's
    finaliser), so that ``torch.manual_seed(s); model = Net(); sp.line(model, seed=s)`` does not
    redraw exactly the model's own weights (the module initialisers would run in the same order on
    the same random stream, giving identical vertices)."""
    z = (int(seed) + 0x9E3779B97F4A7C15) % 2**64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) % 2**64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) % 2**64
    return (z ^ (z >> 31)) >> 1


@contextlib.contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(vertex_seed(seed))
        yield


def _moment_matched(t: torch.Tensor) -> torch.Tensor:
    """A fresh draw from N(mean(t), std(t)²) — the fallback when the owner has no initialiser."""
    flat = t.detach().float()
    std = flat.std() if flat.numel() > 1 else flat.new_zeros(())
    return (torch.randn_like(flat) * std + flat.mean()).to(t.dtype)


class Independent(VertexInit):
    """Each extra vertex is a fresh, independent draw at the scale of the model's own initialisation.

    Per covered tensor, in this order:

    1. V0 constant (norm weights 1, biases 0, a scalar) → the vertex is a copy: it starts constant;
    2. inside a Hugging Face model → a draw of the model's own ``_init_weights`` on a copy of the
       owning module (the distribution the model was built with);
    3. the owner has ``reset_parameters()`` → a draw of it on a copy, shifted and scaled to V0's mean
       and standard deviation. torchvision, timm and HF initialise in their constructors, not in
       ``reset_parameters`` (a resnet18's kaiming-normal fan-out convs vs PyTorch's kaiming-uniform
       a=√5: std ratios 0.4–1.9, up to 14 for depthwise convs), so the raw draw would start the
       ends at different scales;
    4. otherwise (a ViT's positional embedding) → a normal draw with V0's mean and std.

    Copies are drawn on, so buffers of the real module (BN running stats) are untouched. For the
    model's own initialiser exactly (the reference's procedure), use :class:`Rebuild`.
    """

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed
        self._hf_init = None

    def prepare(self, model: nn.Module) -> None:
        self._hf_init = hf_initialiser(model)

    def vertices(self, refs: Sequence[TensorRef], num_vertices: int) -> list[list[torch.Tensor]]:
        out = [[tensor_of(r).detach().clone()] for r in refs]
        by_module: dict[int, list[int]] = {}
        for i, r in enumerate(refs):
            by_module.setdefault(id(r.module), []).append(i)
        hf_init, self._hf_init = self._hf_init, None
        with _seeded(self.seed), torch.no_grad():
            for _ in range(1, num_vertices):
                for idxs in by_module.values():
                    module = refs[idxs[0]].module
                    source = _draw_source(hf_init is not None, module)
                    fresh, rescale = None, source == "reset"
                    if source == "hf":
                        fresh = copy.deepcopy(module)
                        hf_init(fresh)
                    elif source == "reset":
                        fresh = copy.deepcopy(module)
                        reset = getattr(fresh, "reset_parameters", None) or fresh._reset_parameters
                        reset()
                    for i in idxs:
                        v0 = out[i][0]
                        if _constant(v0):
                            out[i].append(v0.clone())
                        elif fresh is None:
                            out[i].append(_moment_matched(v0))
                        else:
                            draw = getattr(fresh, refs[i].local_name).detach().clone()
                            unchanged = torch.equal(draw, v0)  # an initialiser that skipped this tensor
                            if unchanged:
                                out[i].append(_moment_matched(v0))
                            else:
                                out[i].append(_rescaled(draw, v0) if rescale else draw)
        return out


def _draw_source(in_hf_model: bool, module: nn.Module) -> str:
    """Where :class:`Independent` draws a non-constant tensor of ``module`` from: ``"hf"`` (the model's
    ``_init_weights``), ``"reset"`` (``reset_parameters``, rescaled to V0) or ``"none"`` (normal)."""
    if in_hf_model and not isinstance(module, parametrize.ParametrizationList):
        return "hf"
    return "reset" if has_reset_parameters(module) else "none"


def describe_draw(model: nn.Module, ref: TensorRef) -> str:
    """How :class:`Independent` (the default) draws the extra vertices of ``ref`` (for check_model)."""
    if _constant(tensor_of(ref)):
        return "constant: copied"
    source = _draw_source(hf_initialiser(model) is not None, ref.module)
    if source == "hf":
        return "Hugging Face _init_weights"
    if source == "reset":
        owner = parametrize.type_before_parametrizations(ref.module).__name__
        return f"{owner}.reset_parameters, rescaled to V0's mean and std"
    return "normal with V0's mean and std (the owner has no initialiser)"


class Rebuild(VertexInit):
    """Vertex k ≥ 1 is taken from a fresh ``builder()`` (same architecture, matched by name), built
    under its own seed: exactly the reference's procedure, for any library's constructor-time init.

    >>> import torch, subspace_param as sp
    >>> build = lambda: torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    >>> sub = sp.line(build(), init=sp.Rebuild(build), seed=0)
    >>> torch.equal(*sub.vertices()[0])
    False
    """

    def __init__(self, builder: Callable[[], nn.Module], seed: int | None = None) -> None:
        if isinstance(builder, nn.Module) or not callable(builder):
            raise TypeError(
                f"Rebuild(builder): builder must be callable and return a fresh model (got a "
                f"{type(builder).__name__}; pass e.g. lambda: Net())"
            )
        self.builder = builder
        self.seed = seed

    def vertices(self, refs: Sequence[TensorRef], num_vertices: int) -> list[list[torch.Tensor]]:
        base = vertex_seed(self.seed) if self.seed is not None else int(torch.randint(0, 2**62, (1,)))
        models: list[nn.Module | None] = [None]
        for k in range(1, num_vertices):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed((base + k) % 2**63)
                models.append(self.builder())
        return FromModels(models).vertices(refs, num_vertices)


class Copy(VertexInit):
    """Every vertex is a copy of the current tensor (a degenerate subspace; combine with training noise)."""

    def vertices(self, refs: Sequence[TensorRef], num_vertices: int) -> list[list[torch.Tensor]]:
        return [[tensor_of(r).detach().clone() for _ in range(num_vertices)] for r in refs]


class Perturb(VertexInit):
    """Copies of the current tensor plus Gaussian noise: V_k = V_0 + scale · std(V_0) · ε, ε ~ N(0, I).

    Tensors with zero spread (BN γ = 1, biases = 0) use ``scale`` as an absolute noise level.
    """

    def __init__(self, scale: float = 0.01, seed: int | None = None) -> None:
        if not scale >= 0:
            raise ValueError(f"Perturb(scale=...) must be ≥ 0, got {scale!r}")
        self.scale = scale
        self.seed = seed

    def vertices(self, refs: Sequence[TensorRef], num_vertices: int) -> list[list[torch.Tensor]]:
        out = []
        with _seeded(self.seed), torch.no_grad():
            for r in refs:
                t = tensor_of(r).detach()
                spread = t.float().std().item() if t.numel() > 1 else 0.0
                sigma = self.scale * (spread if spread > 0 else 1.0)
                out.append([t.clone()] + [t + sigma * torch.randn_like(t) for _ in range(1, num_vertices)])
        return out


def matching_tensor(other: nn.Module, ref: TensorRef, what: str) -> torch.Tensor:
    """The tensor of ``other`` with ``ref``'s qualified name and shape, or a clear error."""
    try:
        owner = other.get_submodule(ref.module_name) if ref.module_name else other
        t = getattr(owner, ref.local_name)
    except AttributeError:
        raise ArchitectureMismatchError(
            f"{what} ({type(other).__name__}) has no tensor {ref.qualified_name!r}"
        ) from None
    if not isinstance(t, torch.Tensor):
        raise ArchitectureMismatchError(f"{what}: {ref.qualified_name!r} is not a tensor")
    mine = tensor_of(ref)
    if t.shape != mine.shape:
        raise ArchitectureMismatchError(
            f"tensor {ref.qualified_name!r} has shape {tuple(t.shape)} in {what} "
            f"but {tuple(mine.shape)} in the wrapped model"
        )
    return t.detach()


class FromModels(VertexInit):
    """Vertex k is taken from ``models[k]`` (same architecture; matched by parameter name).

    ``models`` must hold exactly K models; an entry may be ``None`` to keep the wrapped model's
    own tensor (for vertex 0) or to place the vertex on the straight line between the nearest
    given vertices before and after it (e.g. the bend of a chain starts on the chord).
    """

    def __init__(self, models: Sequence[nn.Module | None]) -> None:
        self.models = list(models)

    def vertices(self, refs: Sequence[TensorRef], num_vertices: int) -> list[list[torch.Tensor]]:
        if len(self.models) != num_vertices:
            raise ValueError(
                f"FromModels needs {num_vertices} models (one per vertex), got {len(self.models)}"
            )
        given = [k for k, m in enumerate(self.models) if m is not None]
        if self.models[0] is None:
            given = [0, *given]
        out = []
        with torch.no_grad():
            for r in refs:
                known: dict[int, torch.Tensor] = {0: tensor_of(r).detach().clone()}
                for k in given:
                    m = self.models[k]
                    if m is not None:
                        known[k] = (
                            matching_tensor(m, r, f"model {k}").clone().to(known[0].device, known[0].dtype)
                        )
                row = []
                for k in range(num_vertices):
                    if k in known:
                        row.append(known[k])
                        continue
                    lo = max(j for j in known if j < k)
                    hi = [j for j in known if j > k]
                    if not hi:
                        row.append(known[lo].clone())
                        continue
                    h = min(hi)
                    row.append(torch.lerp(known[lo], known[h], (k - lo) / (h - lo)))
                out.append(row)
        return out


def resolve_init(init: str | VertexInit, seed: int | None = None) -> VertexInit:
    """The strategy for ``init`` (a name or a :class:`VertexInit`); a :class:`Rebuild` without a
    seed of its own takes the wrapper's ``seed``."""
    if isinstance(init, Rebuild) and init.seed is None:
        return Rebuild(init.builder, seed)
    if isinstance(init, VertexInit):
        return init
    table = {"independent": lambda: Independent(seed), "copy": Copy, "perturb": lambda: Perturb(seed=seed)}
    if init not in table:
        raise ValueError(f"init must be one of {sorted(table)} or a VertexInit, got {init!r}")
    return table[init]()
