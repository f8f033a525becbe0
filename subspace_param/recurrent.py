"""Recurrent layers (``nn.RNN``, ``nn.LSTM``, ``nn.GRU``) in a subspace or a projection.

An ``RNNBase`` does not read its weights through attribute access inside the recurrence: it hands
the list ``self._flat_weights`` to the fused RNN op. Recent PyTorch re-reads that list when the
weight objects change (``RNNBase._weights_have_changed``, called by ``_update_flat_weights`` at
the start of every forward), so a parametrized weight is picked up. That alone computes every
weight twice per forward, and on CUDA with cuDNN ``flatten_parameters`` would then copy the
*computed* weights into one buffer in place, which autograd must not see.

So each wrapped recurrent module gets a pair of hooks:

* before its forward: open ``parametrize.cached()``, compute each weight w(p) once, and point
  ``_flat_weights`` (and their weak references) at those tensors. PyTorch then sees unchanged
  weights, so it neither recomputes nor flattens, and the recurrence runs on w(p);
* after its forward (always, also when it raises): forget those tensors (they hold the graph, and
  ``deepcopy`` refuses non-leaf tensors) and close the cache.

Gradients flow from the RNN op to w(p) and from there to the vertices (or ω), as for any layer.
Without ``_weights_have_changed`` (older PyTorch) recurrent layers are refused by
:func:`subspace_param.check_model` with that reason.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterable
from typing import Any

from torch import nn
from torch.nn.utils import parametrize

_CACHE = "_subspace_rnn_cache"


def supported() -> bool:
    """Whether this PyTorch re-reads the flat weights of a recurrent module when they change."""
    return hasattr(nn.RNNBase, "_weights_have_changed") and hasattr(nn.RNNBase, "_update_flat_weights")


def _before_forward(module: nn.RNNBase, args: Any) -> None:
    cache = parametrize.cached()
    cache.__enter__()
    module.__dict__[_CACHE] = cache
    weights = [getattr(module, n) if hasattr(module, n) else None for n in module._flat_weights_names]
    module._flat_weights = weights
    module._flat_weight_refs = [weakref.ref(w) if w is not None else None for w in weights]


def _after_forward(module: nn.RNNBase, args: Any, output: Any) -> None:
    # drop the computed weights: they hold the graph, and a deepcopy (export) refuses non-leaf tensors
    module._flat_weights = [None] * len(module._flat_weights_names)
    module._flat_weight_refs = [None] * len(module._flat_weights_names)
    cache = module.__dict__.pop(_CACHE, None)
    if cache is not None:
        cache.__exit__(None, None, None)


def install(modules: Iterable[nn.Module]) -> int:
    """Hook every recurrent module among ``modules`` (once each); returns how many were hooked."""
    count = 0
    seen: set[int] = set()
    for m in modules:
        if not isinstance(m, nn.RNNBase) or id(m) in seen or _hooked(m):
            continue
        seen.add(id(m))
        m.register_forward_pre_hook(_before_forward)
        m.register_forward_hook(_after_forward, always_call=True)
        count += 1
    return count


def _hooked(module: nn.Module) -> bool:
    return any(h is _before_forward for h in module._forward_pre_hooks.values())


def uninstall(model: nn.Module) -> None:
    """Remove the hooks from every module of ``model`` (an exported copy is a plain model again)."""
    for m in model.modules():
        for hooks, fn in ((m._forward_pre_hooks, _before_forward), (m._forward_hooks, _after_forward)):
            for key in [k for k, h in hooks.items() if h is fn]:
                del hooks[key]
                with contextlib.suppress(AttributeError, KeyError):
                    m._forward_hooks_always_called.pop(key, None)
        m.__dict__.pop(_CACHE, None)
        if isinstance(m, nn.RNNBase) and not parametrize.is_parametrized(m):
            m._init_flat_weights()  # plain Parameters again: PyTorch's own (flattened) layout
