"""Tied parameters: one Parameter used by several modules becomes *one* set of vertices.

A language model's input embedding and output projection are typically one Parameter under two
names (``transformer.wte.weight`` and ``lm_head.weight``). Its *primary* name is the first one in
``model.named_modules()`` order; every other name is *secondary*. The engines parametrize the
primary as usual. Each secondary then gets the primary's very ``ParametrizationList`` object
(:func:`share`), so:

* every name reads the same w(p), computed from the same vertex Parameters;
* ``model.parameters()``, the optimizer, DDP and the fused path see each vertex once;
* the regulariser and a projection's θ0 / rows of P count the tensor once;
* ``state_dict`` lists it under every name, as PyTorch does for any tied weight.

:func:`retie` restores the tie in an exported copy (``export.lm_head.weight is
export.transformer.wte.weight``), so ``save_pretrained`` / ``from_pretrained`` round-trip.
A tensor whose Parameter is also a *buffer* somewhere cannot keep its tie:
:func:`subspace_param.check_model` refuses it, naming both names.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn
from torch.nn.utils import parametrize

from .selection import TensorRef


def secondary_refs(model: nn.Module, refs: Sequence[TensorRef]) -> list[tuple[TensorRef, int]]:
    """``(secondary, i)`` for every other (module, name) holding the Parameter of ``refs[i]``."""
    index = {id(getattr(r.module, r.local_name)): i for i, r in enumerate(refs)}
    primary = {(id(r.module), r.local_name) for r in refs}
    out: list[tuple[TensorRef, int]] = []
    for mod_name, module in model.named_modules():
        for pname, p in module._parameters.items():
            if p is not None and id(p) in index and (id(module), pname) not in primary:
                out.append((TensorRef(module, mod_name, pname), index[id(p)]))
    return out


def attach_list(module: nn.Module, name: str, plist: nn.Module) -> None:
    """Make ``module.<name>`` read the existing parametrization list ``plist``.

    ``register_parametrization`` with an identity sets up the module's own parametrized class and the
    property for ``name`` (``module.<name>`` must hold a tensor of the right shape); its list is then
    replaced by ``plist``."""
    parametrize.register_parametrization(module, name, nn.Identity(), unsafe=True)
    module.parametrizations[name] = plist


def share(primary: TensorRef, secondary: TensorRef) -> None:
    """Make ``secondary`` read the primary's parametrization (call after parametrizing the primary;
    the tied Parameter, already replaced by vertices on the primary, is dropped here too)."""
    attach_list(
        secondary.module, secondary.local_name, getattr(primary.module.parametrizations, primary.local_name)
    )


def unshare(model: nn.Module, ties: dict[str, str]) -> None:
    """Undo :func:`share` for the secondary names ``ties`` (secondary → primary) of a failed wrap."""
    for secondary in ties:
        module_name, _, local = secondary.rpartition(".")
        module = model.get_submodule(module_name)
        if parametrize.is_parametrized(module, local):
            del module.parametrizations[local]
            delattr(module.__class__, local)
            if not module.parametrizations:
                module.__class__ = parametrize.type_before_parametrizations(module)
                del module._modules["parametrizations"]


def retie(model: nn.Module, ties: dict[str, str]) -> None:
    """In an exported (unparametrized) copy: every secondary name holds its primary's Parameter."""
    for secondary, primary in ties.items():
        module_name, _, local = secondary.rpartition(".")
        module = model.get_submodule(module_name)
        p = model.get_parameter(primary)
        if local in module._parameters:
            del module._parameters[local]
        module.register_parameter(local, p)


def secondary_modules(model: nn.Module, ties: dict[str, str]) -> list[nn.Module]:
    return [model.get_submodule(s.rpartition(".")[0]) for s in ties]
