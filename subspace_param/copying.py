"""Deep copies of wrapped models stay faithful when a module forwards attribute access.

``copy.deepcopy(m)`` looks up ``m.__deepcopy__``. A wrapper whose ``__getattr__`` forwards unknown
attributes to an inner module (PEFT's ``ModulesToSaveWrapper``) then hands over the inner
module's ``__deepcopy__`` once that inner module is parametrized (``parametrize`` injects one):
the copy of the wrapper would be a copy of the inner module, and the wrapper would vanish from the
copy. :func:`guard_forwarded_deepcopy` gives each such module ``__deepcopy__ = None`` on the
instance, so ``copy`` uses its ordinary protocol for it.
"""

from __future__ import annotations

from torch import nn


def guard_forwarded_deepcopy(model: nn.Module) -> int:
    """Shield every module of ``model`` whose ``__deepcopy__`` is another object's; returns how many."""
    count = 0
    for module in model.modules():
        if "__deepcopy__" in vars(type(module)) or "__deepcopy__" in module.__dict__:
            continue
        found = getattr(module, "__deepcopy__", None)
        if found is not None and getattr(found, "__self__", module) is not module:
            object.__setattr__(module, "__deepcopy__", None)
            count += 1
    return count
