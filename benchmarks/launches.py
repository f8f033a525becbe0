"""Kernel launches and bytes moved per step of the subspace machinery, counted (no timing, so it
runs anywhere).

    python benchmarks/launches.py [--models resnet18 resnet50 vit_b_16] [--out launches.json]

One step = what ``benchmarks/test_bench_materialize.py`` times: sample a point, materialise every
covered weight, add the regulariser β·cos² (one random pair), back-propagate a gradient into every
weight. Counted per contender:

* ``aten ops``: ATen operators seen by a ``TorchDispatchMode``, leaving out views and bare
  allocations (``empty*``), which launch nothing; on a GPU each counted op is about one kernel
  launch. Ops inside a Triton launch (the CPU interpreter's copies) are not counted;
* ``triton``: launches of our Triton kernels (wrapped kernel objects count ``kernel[grid](…)``).

* ``bytes``: what those launches read and write — for an ATen op the bytes of its tensor inputs
  plus its tensor outputs (an in-place op reads and writes its first argument), for our Triton
  kernels the tensors they read and write (K vertices, the weight gradients where read, the
  outputs written; the few scalars of the tables aside).

The bytes are set beside the floor of the same step, N covered elements of e bytes, K vertices:
forward K·N·e read + N·e written, backward N·e (the weight gradient) + K·N·e read + K·N·e written;
both columns also carry the optimizer's share of the extra vertices, (K − 1)·N·e·5 for SGD with
momentum (read parameter, gradient, momentum; write parameter, momentum), which the subspace adds
whatever the path. ``ratio`` = machinery / floor.

Without a GPU the Triton contenders run under ``TRITON_INTERPRET=1`` on CPU: the launch counts and
bytes are the same as on a GPU, only slower. Results print as markdown tables and go to ``--out``
as JSON.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes

sys.path.insert(0, str(Path(__file__).resolve().parent))
from steps import MODELS
from subspace_param.kernels import combine as per_tensor_kernels
from subspace_param.kernels import segmented as segmented_kernels
from test_bench_materialize import make_materialize

from subspace_param.io import write_json

CONTENDERS = ["eager parametrize", "fused torch", "per-tensor triton", "fused triton"]


#: SGD with momentum per element: read parameter, gradient, momentum; write parameter, momentum
OPTIMIZER_ACCESSES = 5


def _tensors(tree) -> list[torch.Tensor]:  # type: ignore[no-untyped-def]
    return [t for t in torch.utils._pytree.tree_leaves(tree) if isinstance(t, torch.Tensor)]


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


class _CountOps(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()
        self.bytes: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = str(func.overloadpacket)
        if not func.is_view and not name.startswith(("aten.empty", "aten.new_empty")):
            self.ops[name] += 1
            if not name.startswith("subspace_param."):  # our custom ops: their Triton launches count
                self.bytes[name] += op_bytes(func, args, kwargs, out)
        return out


def op_bytes(func, args: tuple, kwargs: dict, out) -> int:  # type: ignore[no-untyped-def, type-arg]
    """Bytes an ATen op reads and writes: every tensor argument is read, except an ``out=``
    argument, which is written (an in-place ``self`` is read and written); a functional op's
    outputs are written."""
    written_args = 0
    moved = 0
    bound = dict(zip([a.name for a in func._schema.arguments], args))
    bound.update(kwargs)
    for argument in func._schema.arguments:
        tensors = _tensors(bound.get(argument.name))
        writes = argument.alias_info is not None and argument.alias_info.is_write
        size = sum(_nbytes(t) for t in tensors)
        if writes:
            written_args += 1
            moved += size if argument.is_out else 2 * size  # out=: write; in place: read + write
        else:
            moved += size
    if not written_args:
        moved += sum(_nbytes(t) for t in _tensors(out))
    return moved


def triton_bytes(name: str, args: tuple, kwargs: dict) -> int:  # type: ignore[type-arg]
    """Bytes a launch of our kernels reads and writes, from its arguments (tables and scalars aside)."""
    if name.endswith("combine_fwd"):
        _out, _c, vertices, *_ = args
        moved = sum(_nbytes(v) for v in vertices)
        return moved + (_nbytes(args[0]) if kwargs.get("WRITE_OUT") else 0)
    grads, weight_grads, _c, _a, vertices, *_ = args
    k, want = kwargs["K"], kwargs["WANT"]
    written = sum(_nbytes(grads[i]) for i in range(k) if (want >> i) & 1)
    read = sum(_nbytes(g) for g in weight_grads) if kwargs["HAS_G"] else 0
    read += sum(_nbytes(v) for v in vertices) if kwargs["HAS_A"] else 0
    return written + read


class _CountLaunches:
    def __init__(self, kernel, counter: Counter[str], moved: Counter[str], name: str) -> None:
        self.kernel, self.counter, self.moved, self.name = kernel, counter, moved, name

    def __getitem__(self, grid):  # type: ignore[no-untyped-def]
        self.counter[self.name] += 1
        launch = self.kernel[grid]

        def run(*args, **kwargs):  # type: ignore[no-untyped-def]
            self.moved[self.name] += triton_bytes(self.name, args, kwargs)
            with _disable_current_modes():  # what the interpreter does inside is not a launch
                return launch(*args, **kwargs)

        return run


def floor_bytes(n: int, k: int, element_size: int) -> int:
    """The step's floor (module docstring) without the optimizer share."""
    forward = (k + 1) * n * element_size
    backward = (1 + 2 * k) * n * element_size
    return forward + backward


def count(model_name: str, kind: str, contender: str) -> dict:
    step = make_materialize(model_name, kind, contender)
    step()  # the first call requests the Gram entries from later forwards
    launches: Counter[str] = Counter()
    moved: Counter[str] = Counter()
    originals = []
    for module, name in (
        (per_tensor_kernels, "combine_fwd"),
        (per_tensor_kernels, "combine_bwd"),
        (segmented_kernels, "combine_fwd"),
        (segmented_kernels, "combine_bwd"),
    ):
        originals.append((module, name, getattr(module, name)))
        label = f"{'segmented' if module is segmented_kernels else 'per-tensor'} {name}"
        setattr(module, name, _CountLaunches(getattr(module, name), launches, moved, label))
    try:
        with _CountOps() as mode:
            step()
    finally:
        for module, name, kernel in originals:
            setattr(module, name, kernel)
    params = list(step.subspace.parameters())  # type: ignore[attr-defined]
    k = step.subspace.num_vertices  # type: ignore[attr-defined]
    n = sum(p.numel() for p in params) // k
    element = params[0].element_size()
    optimizer = (k - 1) * n * element * OPTIMIZER_ACCESSES
    machinery = sum(mode.bytes.values()) + sum(moved.values())
    floor = floor_bytes(n, k, element)
    return {
        "model": model_name,
        "kind": kind,
        "contender": contender,
        "aten_ops": sum(mode.ops.values()),
        "triton_launches": sum(launches.values()),
        "aten_by_op": dict(mode.ops.most_common()),
        "triton_by_kernel": dict(launches),
        "elements": n,
        "bytes_machinery": machinery + optimizer,
        "bytes_floor": floor + optimizer,
        "bytes_ratio": (machinery + optimizer) / (floor + optimizer),
        "aten_bytes_by_op": dict(mode.bytes.most_common(8)),
        "triton_bytes_by_kernel": dict(moved),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["resnet18", "resnet50", "vit_b_16"], choices=list(MODELS))
    p.add_argument("--kinds", nargs="+", default=["line"], choices=["line", "simplex3"])
    p.add_argument("--out", default=None, help="write the counts here as JSON")
    a = p.parse_args()
    rows = []
    for model_name in a.models:
        n_tensors = len([q for q in MODELS[model_name][0]().parameters()])
        for kind in a.kinds:
            for contender in CONTENDERS:
                row = count(model_name, kind, contender)
                row["tensors"] = n_tensors
                rows.append(row)
                print(f"{model_name} {kind} {contender}: {row['aten_ops']} aten ops, "
                      f"{row['triton_launches']} triton launches", file=sys.stderr)  # fmt: skip
    print(
        "| model (tensors) | kind | contender | ATen ops (non-view) | Triton launches | MB moved | "
        "MB floor | ratio to floor |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} ({r['tensors']}) | {r['kind']} | {r['contender']} | {r['aten_ops']} | "
              f"{r['triton_launches']} | {r['bytes_machinery'] / 1e6:.0f} | {r['bytes_floor'] / 1e6:.0f} | "
              f"{r['bytes_ratio']:.2f}× |")  # fmt: skip
    if a.out:
        write_json(a.out, rows)


if __name__ == "__main__":
    main()
