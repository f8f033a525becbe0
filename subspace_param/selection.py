"""Which tensors of a model enter the subspace, and a validator that says what cannot.

``filter_fn(module, name)`` is called for every parameter with the module that owns it and the
parameter's fully qualified name (``"layer1.0.conv1.weight"``); it returns True to include it.
The default includes every floating-point parameter that requires grad.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
from torch import nn
from torch.nn.utils import parametrize

from . import recurrent
from .errors import SubspaceError

FilterFn = Callable[[nn.Module, str], bool]

#: Module types whose forward does not read parameters through attribute access on every call
#: (recurrent layers are supported through :mod:`subspace_param.recurrent` where PyTorch allows it).
_UNSUPPORTED_TYPES: tuple[type[nn.Module], ...] = () if recurrent.supported() else (nn.RNNBase,)


@dataclasses.dataclass(frozen=True)
class TensorRef:
    """One selected parameter: the owning module, its local name, its qualified name."""

    module: nn.Module = dataclasses.field(repr=False, compare=False)
    module_name: str
    local_name: str

    @property
    def qualified_name(self) -> str:
        return f"{self.module_name}.{self.local_name}" if self.module_name else self.local_name


@dataclasses.dataclass
class ModelReport:
    """What wrapping a model would do (see :func:`check_model`)."""

    selected: list[str]
    skipped: list[tuple[str, str]]
    problems: list[str]
    norm_layers: list[str]
    without_reset_parameters: list[str]
    #: tied parameters: secondary name → primary name (one set of vertices, see :mod:`subspace_param.ties`)
    shared: dict[str, str] = dataclasses.field(default_factory=dict)
    #: originals of a user's parametrization in the subspace → the tensor and chain they feed
    under_parametrization: dict[str, str] = dataclasses.field(default_factory=dict)
    #: how ``init="independent"`` draws each selected tensor's extra vertices (``sp.check_model``)
    vertex_draws: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        lines = [f"{len(self.selected)} tensor(s) in the subspace"]
        lines += [f"  + {n}" for n in self.selected]
        if self.skipped:
            lines.append(f"{len(self.skipped)} parameter(s) left as they are")
            lines += [f"  - {n}: {why}" for n, why in self.skipped]
        if self.norm_layers:
            lines.append(
                f"{len(self.norm_layers)} norm layer(s): affine in the subspace, running stats stay buffers"
            )
        if self.without_reset_parameters:
            lines.append(
                "initialised by moment-matched normal draws (owner has no reset_parameters): "
                + ", ".join(self.without_reset_parameters)
            )
        if self.shared:
            lines.append(f"{len(self.shared)} tied name(s), sharing their primary's vertices")
            lines += [f"  = {n} is {primary}" for n, primary in self.shared.items()]
        if self.vertex_draws:
            kinds: dict[str, int] = {}
            for how in self.vertex_draws.values():
                kinds[how] = kinds.get(how, 0) + 1
            lines.append("extra vertices (init='independent'):")
            lines += [f"  {count} tensor(s): {how}" for how, count in sorted(kinds.items())]
        if self.under_parametrization:
            lines.append(
                f"{len(self.under_parametrization)} original(s) of existing parametrizations in the subspace "
                "(the parametrization runs on the interpolated original)"
            )
            lines += [f"  ~ {n} feeds {t}" for n, t in self.under_parametrization.items()]
        lines += [f"PROBLEM: {p}" for p in self.problems]
        return "\n".join(lines)


def default_filter(module: nn.Module, name: str) -> bool:
    """Every parameter (the caller already restricts to floating point and requires_grad)."""
    return True


def own_parametrizations(module: nn.Module) -> dict[str, nn.Module]:
    """The module's *own* parametrization lists (``module._modules["parametrizations"]``). Wrappers
    that forward attribute access to an inner module (PEFT's ``ModulesToSaveWrapper``) make
    ``parametrize.is_parametrized(wrapper)`` true for the inner module's lists; this does not."""
    lists = module._modules.get("parametrizations")
    return dict(lists.items()) if isinstance(lists, nn.ModuleDict) else {}


def _is_ours(module: nn.Module) -> bool:
    """A module carrying one of this library's parametrizations (they set ``is_subspace_parametrization``)."""
    return any(
        getattr(p, "is_subspace_parametrization", False)
        for plist in own_parametrizations(module).values()
        for p in plist
    )


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm))


def has_reset_parameters(module: nn.Module) -> bool:
    return callable(getattr(module, "reset_parameters", None)) or callable(
        getattr(module, "_reset_parameters", None)
    )


def check_model(model: nn.Module, filter_fn: FilterFn | None = None) -> ModelReport:
    """Report which tensors would be wrapped, which are skipped and why, and what is unsupported.

    Tied parameters (one Parameter under several names) are reported in ``shared``: they enter
    the subspace once, under their first name, if that name is selected. The originals of a user's
    parametrization (``weight_norm``'s g and v, ``spectral_norm``, ``orthogonal``, …) are selected
    like any parameter (``filter_fn`` sees the layer that owns the parametrized tensor) and listed in
    ``under_parametrization``. Problems (each makes the one-call wrappers raise): the model is
    already wrapped; a selected parameter is also a buffer (that tie cannot be kept); a module uses
    the hook-based ``torch.nn.utils.weight_norm``; a selected
    parameter belongs to a recurrent module and this PyTorch does not re-read its flat weights
    (recurrent layers work otherwise, see :mod:`subspace_param.recurrent`); the filter selects nothing.
    """
    filter_fn = filter_fn or default_filter
    selected: list[str] = []
    skipped: list[tuple[str, str]] = []
    problems: list[str] = []
    norm_layers: list[str] = []
    no_reset: list[str] = []

    # the first (module, name) holding a Parameter is its primary; other (module, name) pairs holding
    # the same object are tied to it (a module reused under two names is one owner, not a tie)
    primary_of: dict[int, str] = {}
    seen_slots: set[tuple[int, str]] = set()
    for mod_name, module in model.named_modules():
        for pname, p in module._parameters.items():
            if p is not None and (id(module), pname) not in seen_slots:
                seen_slots.add((id(module), pname))
                primary_of.setdefault(id(p), f"{mod_name}.{pname}" if mod_name else pname)
    buffer_names = {
        id(b): f"{mod_name}.{bname}" if mod_name else bname
        for mod_name, module in model.named_modules()
        for bname, b in module._buffers.items()
        if b is not None
    }
    shared: dict[str, str] = {}
    verdict: dict[str, bool] = {}  # primary name → selected
    under_parametrization: dict[str, str] = {}  # original of a user's parametrization → its tensor

    for mod_name, module in model.named_modules():
        if _is_ours(module):
            problems.append(
                f"module {mod_name or type(model).__name__!r} is already part of a subspace; "
                "wrap an unwrapped model (or export() one point first)"
            )
            continue
        if _is_norm(module) and any(p is not None for p in module._parameters.values()):
            norm_layers.append(mod_name)
        legacy = [h for h in module._forward_pre_hooks.values() if type(h).__name__ == "WeightNorm"]
        if legacy:
            problems.append(
                f"module {mod_name or type(model).__name__!r} uses the hook-based "
                f"torch.nn.utils.weight_norm (tensor {legacy[0].name!r}), which stores its weight as a "
                "plain tensor that no subspace can reach; use torch.nn.utils.parametrizations.weight_norm, "
                "whose originals go in the subspace"
            )
            continue
        for pname, p in module._parameters.items():
            if p is None:
                continue
            qname = f"{mod_name}.{pname}" if mod_name else pname
            if primary_of[id(p)] != qname:  # a tied name follows its primary
                primary = primary_of[id(p)]
                if verdict.get(primary):
                    shared[qname] = primary
                else:
                    skipped.append((qname, f"tied to {primary}, which is not in the subspace"))
                continue
            if id(p) in buffer_names:
                problems.append(
                    f"parameter {qname} is also the buffer {buffer_names[id(p)]}; a tie between a parameter "
                    "and a buffer cannot be kept — exclude it with filter_fn"
                )
                continue
            if not p.is_floating_point():
                skipped.append((qname, f"dtype {p.dtype} is not floating point"))
                continue
            if not p.requires_grad:
                skipped.append((qname, "requires_grad=False"))
                continue
            # the original of a user's parametrization (weight_norm's g and v, spectral_norm's or
            # orthogonal's original, …): the subspace goes on the original, the user's chain runs on
            # the interpolated value; filter_fn sees the layer that owns the parametrized tensor
            owner = module
            if isinstance(module, parametrize.ParametrizationList):
                owner_name = mod_name.rsplit(".parametrizations.", 1)[0]
                owner = model.get_submodule(owner_name)
                chain = ", ".join(type(q).__name__ for q in module)
                under_parametrization[qname] = f"{owner_name}.{mod_name.rsplit('.', 1)[1]} ({chain})"
            if not filter_fn(owner, qname):
                skipped.append((qname, "excluded by filter_fn"))
                under_parametrization.pop(qname, None)
                continue
            if isinstance(module, _UNSUPPORTED_TYPES):
                problems.append(
                    f"parameter {qname} belongs to {type(module).__name__}, which caches flat weights; "
                    f"this PyTorch ({torch.__version__}) does not re-read them (no "
                    "RNNBase._weights_have_changed), so the subspace would be ignored — upgrade PyTorch "
                    "or exclude it with filter_fn"
                )
                continue
            selected.append(qname)
            verdict[qname] = True
            if not has_reset_parameters(module) and qname not in no_reset:
                no_reset.append(qname)
    if not selected and not problems:
        problems.append(
            f"no parameter of {type(model).__name__} was selected "
            f"({len(skipped)} skipped: {', '.join(n for n, _ in skipped[:5])}"
            f"{'…' if len(skipped) > 5 else ''}); "
            "check filter_fn"
        )
    return ModelReport(selected, skipped, problems, norm_layers, no_reset, shared, under_parametrization)


def select_tensors(model: nn.Module, filter_fn: FilterFn | None = None) -> list[TensorRef]:
    """The tensors a wrapper will parametrize, in ``named_modules`` order; raises on any problem."""
    report = check_model(model, filter_fn)
    if not report.ok:
        raise SubspaceError(f"cannot wrap {type(model).__name__}: " + "; ".join(report.problems))
    wanted = set(report.selected)
    refs: list[TensorRef] = []
    for mod_name, module in model.named_modules():
        for pname in list(module._parameters):
            ref = TensorRef(module, mod_name, pname)
            if ref.qualified_name in wanted:
                refs.append(ref)
    return refs


def select_by_names(model: nn.Module, names: list[str]) -> list[TensorRef]:
    """The tensors with exactly these qualified names (used when loading a saved subspace)."""
    by_name: dict[str, TensorRef] = {}
    for mod_name, module in model.named_modules():
        for pname, p in module._parameters.items():
            if p is not None:
                ref = TensorRef(module, mod_name, pname)
                by_name[ref.qualified_name] = ref
    missing = [n for n in names if n not in by_name]
    if missing:
        from .errors import ArchitectureMismatchError

        raise ArchitectureMismatchError(
            f"{type(model).__name__} has no parameter {missing[0]!r}"
            + (f" (and {len(missing) - 1} more missing)" if len(missing) > 1 else "")
        )
    return [by_name[n] for n in names]


def tensor_of(ref: TensorRef) -> torch.Tensor:
    return getattr(ref.module, ref.local_name)


def find_parametrized(model: nn.Module, kind: type[nn.Module], names: list[str]) -> list[TensorRef]:
    """The tensors of ``model`` carrying a parametrization of type ``kind`` (which has an ``index``),
    in index order; raises if they are not exactly ``names`` (the model was edited after wrapping)."""
    found: dict[int, TensorRef] = {}
    for mod_name, module in model.named_modules():
        for pname, plist in own_parametrizations(module).items():
            for p in plist:
                if isinstance(p, kind):  # a tied name shares its primary's list: keep the first
                    found.setdefault(p.index, TensorRef(module, mod_name, pname))
    refs = [found[i] for i in sorted(found)]
    if [r.qualified_name for r in refs] != names:
        raise SubspaceError(
            f"the model's {kind.__name__}s do not match its spec (was it edited after wrapping?)"
        )
    return refs
