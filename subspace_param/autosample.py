"""Unmodified training loops train a subspace: a fresh point on every training forward, and the
regulariser's gradient joined to that forward's backward.

``handle = sub.autosample(beta)`` installs two hooks on the wrapped model:

* a forward pre-hook, registered with ``prepend=True`` (it must run before the fused path's
  pre-hook, which materialises the weights at the point it finds; see the README's *Hook order*):
  in training mode it draws a point, ``sub.sample(generator)``; evaluation-mode forwards keep the
  point that was set;
* a forward hook: in training mode it computes R = β·cos²(V_i, V_j) (``sub.regularizer(beta,
  pairs=…, per_layer=…)``) and threads it into the model's output through :class:`JoinRegulariser`,
  an identity on the output whose backward also sends a gradient into R. The backward of whatever
  loss the loop builds from that output therefore gives every vertex ∂(loss + R)/∂V — exactly the
  gradient of adding ``sub.regularizer(beta)`` to a scalar loss output, scaled like it (gradient
  accumulation, AMP loss scaling). When the output is not the scalar loss (logits), R's gradient
  enters with weight 1, as for ``loss + R``.

Which output carries R: a ``loss`` entry (Hugging Face ``ModelOutput``, dicts) when it is a tensor,
else the first floating tensor that requires grad (a plain tensor, a tuple's first). **The loss
the loop reports does not include R**; ``handle.last_regularizer`` holds the latest value.

Point and regulariser pair come from one generator seeded by ``seed``; under DDP, a ``seed`` of
None is broadcast from rank 0, so every rank draws the same point and pair at every step.
``handle.remove()`` (or leaving ``with sub.autosample(...):``) removes both hooks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.distributed as dist

from . import hooks

if TYPE_CHECKING:
    from .subspace import Subspace


class JoinRegulariser(torch.autograd.Function):
    """``forward(out, reg) = out``; ``backward(g) = (g, s)`` with s = g for a scalar ``out`` (the loss:
    R is scaled like the loss downstream) and 1 otherwise."""

    @staticmethod
    def forward(ctx: Any, out: torch.Tensor, reg: torch.Tensor) -> torch.Tensor:
        ctx.scalar = out.dim() == 0
        ctx.reg_meta = (reg.dtype, reg.device)
        return out.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dtype, device = ctx.reg_meta
        scale = grad.detach().to(dtype) if ctx.scalar else torch.ones((), dtype=dtype, device=device)
        return grad, scale


def _carrier(output: Any) -> tuple[Any, Any] | None:
    """(key, tensor) of the output entry that carries R, or None."""

    def usable(t: Any) -> bool:
        return isinstance(t, torch.Tensor) and t.is_floating_point() and t.requires_grad

    if usable(output):
        return ((), output)
    if isinstance(output, Mapping):
        if usable(output.get("loss")):
            return ("loss", output["loss"])
        for key, value in output.items():
            if usable(value):
                return (key, value)
    if isinstance(output, (tuple, list)):
        for i, value in enumerate(output):
            if usable(value):
                return (i, value)
    return None


def _replace(output: Any, key: Any, value: torch.Tensor) -> Any:
    if key == ():
        return value
    if isinstance(output, Mapping):
        output[key] = value  # ModelOutput.__setitem__ updates the attribute too
        return output
    items = list(output)
    items[key] = value
    if isinstance(output, list):
        return items
    return tuple(items) if type(output) is tuple else type(output)(*items)  # namedtuples too


def _shared_seed(seed: int | None, fallback: torch.Generator) -> int:
    if seed is not None:
        return int(seed)
    drawn = int(torch.randint(0, 2**62, (1,), generator=fallback))
    if dist.is_available() and dist.is_initialized():
        box = [drawn]
        dist.broadcast_object_list(box, src=0)
        drawn = int(box[0])
    return drawn


class AutoSample:
    """The removable handle of :meth:`subspace_param.Subspace.autosample`."""

    def __init__(
        self,
        sub: Subspace,
        beta: float = 1.0,
        *,
        pairs: Literal["random", "all"] = "random",
        per_layer: bool = False,
        seed: int | None = None,
    ) -> None:
        if beta < 0:
            raise ValueError(f"autosample: beta must be ≥ 0, got {beta}")
        model = sub.model
        if any(
            isinstance(getattr(h, "__self__", None), AutoSample) for h in model._forward_pre_hooks.values()
        ):
            raise RuntimeError(
                f"{type(model).__name__} already has autosample hooks; remove that handle first"
            )
        self.sub, self.beta, self.pairs, self.per_layer = sub, float(beta), pairs, per_layer
        self.seed = _shared_seed(seed, sub.generator)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.samples = 0
        self.last_regularizer: float | None = None
        if self.beta > 0:
            sub.expect_regularizer()
        self._pre = model.register_forward_pre_hook(self._before_forward, prepend=True)
        self._post = model.register_forward_hook(self._after_forward)

    def _before_forward(self, module: torch.nn.Module, args: Any) -> None:
        if module.training:
            self.sub.sample(self.generator)
            self.samples += 1

    def _after_forward(self, module: torch.nn.Module, args: Any, output: Any) -> Any:
        if not module.training or self.beta == 0 or not torch.is_grad_enabled():
            return None
        found = _carrier(output)
        if found is None:
            return None
        key, carrier = found
        reg = self.sub.regularizer(
            self.beta, pairs=self.pairs, per_layer=self.per_layer, generator=self.generator
        )
        self.last_regularizer = float(reg.detach())
        return _replace(output, key, JoinRegulariser.apply(carrier, reg))

    def remove(self) -> None:
        self._pre.remove()
        self._post.remove()

    def __enter__(self) -> AutoSample:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        return f"AutoSample(beta={self.beta}, pairs={self.pairs!r}, seed={self.seed}, samples={self.samples})"


hooks.mark(AutoSample._before_forward)
hooks.mark(AutoSample._after_forward)
