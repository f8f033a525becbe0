"""Which axes of a model's parameters permute together: the permutation spec, derived by tracing.

A hidden channel can be renumbered without changing the function if *every* tensor that carries
it is renumbered the same way: the producing conv/linear's output rows (and bias), the norm layers'
per-channel parameters and statistics, the consumers' input columns, and every tensor added to it
(a residual stream is one group across all its blocks). :func:`permutation_spec` runs the model
once through ``torch.fx`` (with the shapes of a sample input) and follows the channel axis of
every value:

* conv (``groups == 1``) and linear start a new group on their output; depthwise convs pass the
  group through; other grouped convs fix their input and output (``fixed`` with the reason);
* BatchNorm, LayerNorm (over the channel), GroupNorm with 1 or C groups, activations, dropout,
  pooling and elementwise ops with one grouped operand pass the group through; ``+``/``−``/``×``
  of two grouped values joins their groups (residual additions);
* flatten/reshape/permute/transpose/indexing track where the channel axis goes; a flatten that
  merges a channel with trailing positions (VGG's 512·7·7) records the block size;
* ``nn.MultiheadAttention`` keeps its embedding axis in the group of its input (in-projection
  columns, out-projection rows) and its heads fixed (reason reported);
* anything else (concatenation along the channel, unknown functions, the input and the output)
  fixes the groups it touches, and the report names the node.

So a group is either free (its permutation is searched) or fixed (identity), and the report says
which and why: never silently wrong. The function is preserved by construction, and
``tests/test_align.py`` checks it on the test zoo.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from math import prod
from typing import Any

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp


@dataclass(frozen=True)
class Axis:
    """Axis ``dim`` of parameter or buffer ``name``; with ``block`` > 1 the axis holds ``size``
    channels of ``block`` consecutive entries each (a flattened C·H·W input of a linear)."""

    name: str
    dim: int
    block: int = 1


@dataclass
class Group:
    """Axes permuted together, ``size`` channels; ``fixed`` gives the reasons it is not permuted."""

    size: int
    axes: list[Axis] = field(default_factory=list)
    fixed: list[str] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)  # graph values carrying the group (activations)

    @property
    def free(self) -> bool:
        return not self.fixed


@dataclass
class PermutationSpec:
    """The groups, and where the channel axis is in each traced value (for activation matching)."""

    groups: list[Group]
    channel_dims: dict[str, int] = field(default_factory=dict)

    @property
    def free_groups(self) -> list[Group]:
        return [g for g in self.groups if g.free and g.axes]

    def report(self) -> list[dict[str, Any]]:
        """One row per group: size, free or fixed (with the reasons), the axes it moves."""
        return [
            {
                "group": i,
                "channels": g.size,
                "permuted": g.free,
                "reasons": sorted(set(g.fixed)),
                "axes": [f"{a.name}[{a.dim}]" + (f"×{a.block}" if a.block > 1 else "") for a in g.axes],
            }
            for i, g in enumerate(self.groups)
            if g.axes
        ]


class _Groups:
    """Union-find over groups."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.data: list[Group] = []

    def new(self, size: int, fixed: str | None = None) -> int:
        self.parent.append(len(self.parent))
        self.data.append(Group(size, fixed=[fixed] if fixed else []))
        return len(self.parent) - 1

    def find(self, g: int) -> int:
        while self.parent[g] != g:
            self.parent[g] = self.parent[self.parent[g]]
            g = self.parent[g]
        return g

    def union(self, a: int, b: int, where: str) -> int:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return ra
        ga, gb = self.data[ra], self.data[rb]
        if ga.size != gb.size:  # different widths meet: cannot be one permutation
            self.fix(ra, f"{where}: joins {ga.size} and {gb.size} channels")
            self.fix(rb, f"{where}: joins {ga.size} and {gb.size} channels")
            return ra
        self.parent[rb] = ra
        ga.axes += gb.axes
        ga.fixed += gb.fixed
        ga.nodes += gb.nodes
        return ra

    def fix(self, g: int, reason: str) -> None:
        self.data[self.find(g)].fixed.append(reason)

    def add_axis(self, g: int, axis: Axis) -> None:
        self.data[self.find(g)].axes.append(axis)

    def result(self) -> list[Group]:
        return [self.data[g] for g in range(len(self.parent)) if self.find(g) == g]


@dataclass(frozen=True)
class _Channel:
    """Where a value's channel axis is: ``dim`` (non-negative), group, entries per channel."""

    dim: int
    group: int
    block: int = 1


_PASS_MODULES = (
    nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.ELU, nn.Hardswish,
    nn.Hardsigmoid, nn.Mish, nn.Identity, nn.Dropout, nn.Dropout2d, nn.MaxPool1d, nn.MaxPool2d,
    nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d,
)  # fmt: skip
_PASS_FUNCTIONS = {
    torch.relu, torch.nn.functional.relu, torch.nn.functional.gelu, torch.nn.functional.silu, torch.tanh,
    torch.sigmoid, torch.nn.functional.dropout, torch.nn.functional.adaptive_avg_pool2d,
    torch.nn.functional.max_pool2d, torch.nn.functional.avg_pool2d, torch.nn.functional.hardswish,
    operator.neg, torch._assert,
}  # fmt: skip
_PASS_METHODS = {
    "relu",
    "contiguous",
    "clone",
    "detach",
    "float",
    "to",
    "type_as",
    "sigmoid",
    "tanh",
    "expand",
}
_JOIN = {operator.add, operator.sub, operator.mul, torch.add, torch.sub, torch.mul, operator.iadd}
_JOIN_METHODS = {"add", "add_", "sub", "mul", "mul_"}


_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm)


def _norm_refusal(m: nn.Module, inp: _Channel | None, shape: tuple[int, ...] | None) -> str | None:
    """Why the norm layer ``m`` cannot pass its input's channel group through (None: it can):
    batch norm and group norm (1 or C groups) need the channel at axis 1, layer norm over exactly
    the channel (the last axis)."""
    if isinstance(m, nn.LayerNorm):
        if inp is None or len(m.normalized_shape) != 1 or shape is None or inp.dim != len(shape) - 1:
            return "layer norm over more than the channel axis"
        return None
    if isinstance(m, nn.GroupNorm) and m.num_groups not in (1, m.num_channels):
        return f"group norm with {m.num_groups} groups mixes channels of a group"
    if inp is None or inp.dim != 1 or inp.block != 1:
        return f"{type(m).__name__} without a channel axis"
    return None


def _shape(node: Any) -> tuple[int, ...] | None:
    meta = getattr(node, "meta", {}).get("tensor_meta") if isinstance(node, fx.Node) else None
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


class _Tracer:
    def __init__(self, model: nn.Module, example: tuple[Any, ...]) -> None:
        self.model = model
        self.graph_module = fx.symbolic_trace(model)
        ShapeProp(self.graph_module).propagate(*example)
        self.groups = _Groups()
        self.value: dict[fx.Node, _Channel | None] = {}
        self.params: dict[fx.Node, str] = {}  # get_attr nodes (and their expand/reshape) → name
        self.named_modules = dict(self.graph_module.named_modules())
        self.channel_dims: dict[str, int] = {}
        self.attention_outputs: dict[fx.Node, _Channel] = {}  # MHA node → its embedding's channel

    # -- helpers ------------------------------------------------------------------------------
    def channel(self, arg: Any) -> _Channel | None:
        return self.value.get(arg) if isinstance(arg, fx.Node) else None

    def fix_args(self, node: fx.Node, reason: str) -> None:
        for arg in node.all_input_nodes:
            ch = self.value.get(arg)
            if ch is not None:
                self.groups.fix(ch.group, f"{node.name}: {reason}")

    def opaque(self, node: fx.Node, reason: str) -> None:
        self.fix_args(node, reason)
        self.value[node] = None

    def new_group(self, size: int, fixed: str | None = None) -> int:
        return self.groups.new(size, fixed)

    def param_axis(self, name: str, dim: int, group: int, block: int = 1) -> None:
        self.groups.add_axis(group, Axis(name, dim, block))

    def record(self, node: fx.Node, ch: _Channel | None) -> None:
        self.value[node] = ch
        if ch is not None and ch.block == 1:
            self.groups.data[self.groups.find(ch.group)].nodes.append(node.name)
            self.channel_dims[node.name] = ch.dim

    # -- the walk -----------------------------------------------------------------------------
    def run(self) -> PermutationSpec:
        for node in self.graph_module.graph.nodes:
            if node.op == "placeholder":
                shape = _shape(node)
                if shape is not None and len(shape) >= 2:
                    self.record(node, _Channel(1, self.new_group(shape[1], "the model's input")))
                else:
                    self.value[node] = None
            elif node.op == "get_attr":
                self.params[node] = node.target
                self.value[node] = None
            elif node.op == "call_module":
                self.module(node, self.named_modules[node.target])
            elif node.op == "call_function":
                self.function(node, node.target, list(node.args), dict(node.kwargs))
            elif node.op == "call_method":
                self.method(node, node.target, list(node.args), dict(node.kwargs))
            elif node.op == "output":
                for arg in node.all_input_nodes:
                    ch = self.value.get(arg)
                    if ch is not None:
                        self.groups.fix(ch.group, "the model's output")
        return PermutationSpec(self.groups.result(), self.channel_dims)

    def module(self, node: fx.Node, m: nn.Module) -> None:
        name = node.target
        inp = self.channel(node.args[0]) if node.args else None
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            if m.groups == 1:
                if inp is not None and inp.dim == 1 and inp.block == 1:
                    self.param_axis(f"{name}.weight", 1, inp.group)
                else:
                    self.fix_args(node, "convolution input without a channel axis")
                out = self.new_group(m.out_channels)
            elif m.groups == m.in_channels == m.out_channels and inp is not None:  # depthwise
                out = inp.group
            else:
                self.fix_args(node, f"grouped convolution (groups={m.groups})")
                out = self.new_group(m.out_channels, f"{node.name}: grouped convolution (groups={m.groups})")
            self.param_axis(f"{name}.weight", 0, out)
            if m.bias is not None:
                self.param_axis(f"{name}.bias", 0, out)
            self.record(node, _Channel(1, out))
        elif isinstance(m, nn.Linear):
            shape = _shape(node.args[0])
            last = len(shape) - 1 if shape else None
            if inp is not None and inp.dim == last:
                self.param_axis(f"{name}.weight", 1, inp.group, inp.block)
            else:
                self.fix_args(node, "linear input whose channel is not the last axis")
            out = self.new_group(m.out_features)
            self.param_axis(f"{name}.weight", 0, out)
            if m.bias is not None:
                self.param_axis(f"{name}.bias", 0, out)
            self.record(node, _Channel(len(_shape(node)) - 1, out))
        elif isinstance(m, _NORMS):
            reason = _norm_refusal(m, inp, _shape(node.args[0]))
            if reason is not None:
                self.opaque(node, reason)
                return
            for part in ("weight", "bias", "running_mean", "running_var"):  # the per-channel tensors
                if getattr(m, part, None) is not None:
                    self.param_axis(f"{name}.{part}", 0, inp.group)
            self.record(node, inp)
        elif isinstance(m, nn.MultiheadAttention):
            if (
                inp is None
                or not m._qkv_same_embed_dim
                or any(self.channel(a) != inp for a in node.args[1:3])
            ):
                self.opaque(node, "attention with separate query/key/value inputs")
                return
            self.param_axis(f"{name}.in_proj_weight", 1, inp.group)
            self.param_axis(f"{name}.out_proj.weight", 0, inp.group)
            if m.out_proj.bias is not None:
                self.param_axis(f"{name}.out_proj.bias", 0, inp.group)
            # the heads (rows of the in-projection, columns of the out-projection) stay as they are
            heads = self.new_group(3 * m.embed_dim, f"{node.name}: attention heads are left in place")
            self.param_axis(f"{name}.in_proj_weight", 0, heads)
            # MHA returns (output, weights): the getitem of 0 carries the group
            self.value[node] = None
            self.attention_outputs[node] = inp
        elif isinstance(m, _PASS_MODULES) or type(m).__name__ in ("StochasticDepth", "DropPath"):
            if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AvgPool2d, nn.MaxPool2d, nn.AdaptiveMaxPool2d)) and (
                inp is not None and inp.dim != 1
            ):
                self.opaque(node, "pooling over the channel axis")
                return
            self.record(node, inp)
        elif isinstance(m, nn.Flatten):
            self.reshaped(node, inp, _shape(node.args[0]), _shape(node))
        else:
            self.opaque(node, f"module {type(m).__name__} is not understood")

    def function(self, node: fx.Node, fn: Any, args: list[Any], kwargs: dict[str, Any]) -> None:
        if fn is getattr:  # x.shape, x.dtype …: metadata, not a tensor
            self.value[node] = None
            return
        if fn is operator.getitem:
            owner = args[0]
            if isinstance(owner, fx.Node) and owner in self.attention_outputs and args[1] == 0:
                self.record(node, self.attention_outputs[owner])
                return
            self.indexed(node, self.channel(owner), args[1])
            return
        if fn in _PASS_FUNCTIONS:
            self.record(node, self.channel(args[0]) if args else None)
            return
        if fn in _JOIN:
            self.join(node, args[:2])
            return
        if fn in (torch.flatten,):
            self.reshaped(node, self.channel(args[0]), _shape(args[0]), _shape(node))
            return
        if fn is torch.cat:
            self.concatenated(node, args[0], kwargs.get("dim", args[1] if len(args) > 1 else 0))
            return
        if fn in (torch.permute, torch.transpose):
            self.permuted(node, fn.__name__, args[0], args[1:])
            return
        self.opaque(node, f"function {getattr(fn, '__name__', fn)} is not understood")

    def method(self, node: fx.Node, name: str, args: list[Any], kwargs: dict[str, Any]) -> None:
        source = args[0]
        if isinstance(source, fx.Node) and source in self.params and name in ("expand", "reshape", "view"):
            self.params[node] = self.params[source]  # a parameter broadcast: still that parameter
            self.value[node] = None
            return
        if name in _PASS_METHODS:
            self.record(node, self.channel(source))
        elif name in _JOIN_METHODS:
            self.join(node, args[:2])
        elif name in ("flatten", "reshape", "view"):
            self.reshaped(node, self.channel(source), _shape(source), _shape(node))
        elif name in ("permute", "transpose"):
            self.permuted(node, name, source, args[1:])
        elif name == "size" or name == "dim":
            self.value[node] = None
        elif name in ("mean", "sum", "amax"):
            dims = args[1] if len(args) > 1 else kwargs.get("dim")
            ch = self.channel(source)
            shape = _shape(source)
            keep = kwargs.get("keepdim", False)
            if ch is None or dims is None or shape is None:
                self.opaque(node, f".{name}() over every axis")
                return
            dims = [d % len(shape) for d in ([dims] if isinstance(dims, int) else dims)]
            if ch.dim in dims:
                self.opaque(node, f".{name}() over the channel axis")
                return
            self.record(
                node, _Channel(ch.dim - (0 if keep else sum(d < ch.dim for d in dims)), ch.group, ch.block)
            )
        else:
            self.opaque(node, f"method .{name}() is not understood")

    # -- value rules --------------------------------------------------------------------------
    def join(self, node: fx.Node, operands: list[Any]) -> None:
        chans = [self.channel(a) for a in operands]
        grouped = [c for c in chans if c is not None]
        out_shape = _shape(node)
        for arg, ch in zip(operands, chans):
            if ch is None and isinstance(arg, fx.Node) and arg in self.params and grouped and out_shape:
                pshape = _shape(arg) or tuple(self.model.get_parameter(self.params[arg]).shape)
                dim = grouped[0].dim - (len(out_shape) - len(pshape))
                if dim >= 0 and pshape[dim] > 1:
                    self.param_axis(self.params[arg], dim, grouped[0].group)
            elif ch is None and isinstance(arg, fx.Node):
                shape = _shape(arg)
                if grouped and shape is not None and out_shape is not None:
                    dim = grouped[0].dim - (len(out_shape) - len(shape))
                    if dim >= 0 and shape[dim] > 1:  # a tensor of unknown channel order meets the group
                        self.groups.fix(grouped[0].group, f"{node.name}: combined with {arg.name}")
        if not grouped:
            self.value[node] = None
            return
        first = grouped[0]
        for other in grouped[1:]:
            if other.dim != first.dim or other.block != first.block:
                self.groups.fix(first.group, f"{node.name}: operands with different channel axes")
                self.groups.fix(other.group, f"{node.name}: operands with different channel axes")
            else:
                self.groups.union(first.group, other.group, node.name)
        self.record(node, first)

    def reshaped(self, node: fx.Node, ch: _Channel | None, old: tuple[int, ...] | None,
                 new: tuple[int, ...] | None) -> None:  # fmt: skip
        if ch is None:
            self.value[node] = None
            return
        if old is None or new is None:
            self.opaque(node, "reshape of unknown shape")
            return
        before = prod(old[: ch.dim])
        size = old[ch.dim]
        for d in range(len(new)):
            if prod(new[:d]) == before:
                if new[d] == size:
                    self.record(node, _Channel(d, ch.group, ch.block))
                    return
                trailing = prod(old[ch.dim + 1 :])
                if new[d] == size * trailing and d == len(new) - 1:  # channel-major flatten
                    self.record(node, _Channel(d, ch.group, ch.block * trailing))
                    return
        self.opaque(node, f"reshape {old} → {new} splits the channel axis")

    def permuted(self, node: fx.Node, how: str, source: Any, dims: list[Any]) -> None:
        ch = self.channel(source)
        shape = _shape(source)
        if ch is None:
            self.value[node] = None
            return
        if shape is None:
            self.opaque(node, "permute of unknown shape")
            return
        n = len(shape)
        if how == "transpose":
            a, b = (d % n for d in dims[:2])
            order = list(range(n))
            order[a], order[b] = order[b], order[a]
        else:
            order = [
                d % n for d in (dims[0] if len(dims) == 1 and isinstance(dims[0], (list, tuple)) else dims)
            ]
        self.record(node, _Channel(order.index(ch.dim), ch.group, ch.block))

    def indexed(self, node: fx.Node, ch: _Channel | None, index: Any) -> None:
        if ch is None:
            self.value[node] = None
            return
        items = index if isinstance(index, tuple) else (index,)
        dim, removed = 0, 0
        for item in items:
            if item is Ellipsis:
                self.opaque(node, "indexing with ...")
                return
            if dim == ch.dim:
                if item == slice(None):
                    break
                self.opaque(node, "indexing into the channel axis")
                return
            if isinstance(item, int):
                removed += 1
            elif not isinstance(item, slice):
                self.opaque(node, "advanced indexing")
                return
            dim += 1  # noqa: SIM113 (counts indexed axes, not items)
        self.record(node, _Channel(ch.dim - removed, ch.group, ch.block))

    def concatenated(self, node: fx.Node, parts: list[Any], dim: int) -> None:
        shape = _shape(node)
        dim = dim % len(shape) if shape else dim
        chans = [self.channel(p) for p in parts]
        grouped = [c for c in chans if c is not None]
        if not grouped or grouped[0].dim == dim:
            self.opaque(node, "concatenation along the channel axis")
            if shape is not None and len(shape) > 1:
                self.record(
                    node, _Channel(dim, self.new_group(shape[dim], f"{node.name}: concatenated channels"))
                )
            return
        for part, ch in zip(parts, chans):  # along another axis: every part carries the same channels
            if ch is None and isinstance(part, fx.Node) and part in self.params:
                self.param_axis(self.params[part], grouped[0].dim, grouped[0].group)
            elif ch is None:
                self.groups.fix(
                    grouped[0].group, f"{node.name}: concatenated with {getattr(part, 'name', part)}"
                )
        self.join(node, [p for p, c in zip(parts, chans) if c is not None][:2] or parts[:1])


def permutation_spec(model: nn.Module, example: torch.Tensor | tuple[Any, ...]) -> PermutationSpec:
    """The groups of axes of ``model``'s parameters and buffers that permute together, traced with
    ``example`` (a batch of inputs, used for the shapes only)."""
    example = example if isinstance(example, tuple) else (example,)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return _Tracer(model, example).run()
    except fx.proxy.TraceError as exc:
        raise ValueError(f"{type(model).__name__} cannot be traced by torch.fx: {exc}") from exc
    finally:
        model.train(was_training)
