"""Kernel launches per step of the subspace machinery, counted (no timing, so it runs anywhere).

    python benchmarks/launches.py [--models resnet18 resnet50 vit_b_16] [--out launches.json]

One step = what ``benchmarks/test_bench_materialize.py`` times: sample a point, materialise every
covered weight, add the regulariser β·cos² (one random pair), back-propagate a gradient into every
weight. Counted per contender:

* ``aten ops``: ATen operators seen by a ``TorchDispatchMode``, leaving out views and bare
  allocations (``empty*``), which launch nothing; on a GPU each counted op is about one kernel
  launch. Ops inside a Triton launch (the CPU interpreter's copies) are not counted;
* ``triton``: launches of our Triton kernels (wrapped kernel objects count ``kernel[grid](…)``).

Without a GPU the Triton contenders run under ``TRITON_INTERPRET=1`` on CPU: the launch counts are
the same as on a GPU, only slower. Results print as a markdown table and go to ``--out`` as JSON.
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


class _CountOps(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        if not func.is_view and not str(func.overloadpacket).startswith(("aten.empty", "aten.new_empty")):
            self.ops[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))


class _CountLaunches:
    def __init__(self, kernel, counter: Counter[str], name: str) -> None:
        self.kernel, self.counter, self.name = kernel, counter, name

    def __getitem__(self, grid):  # type: ignore[no-untyped-def]
        self.counter[self.name] += 1
        launch = self.kernel[grid]

        def run(*args, **kwargs):  # type: ignore[no-untyped-def]
            with _disable_current_modes():  # what the interpreter does inside is not a launch
                return launch(*args, **kwargs)

        return run


def count(model_name: str, kind: str, contender: str) -> dict:
    step = make_materialize(model_name, kind, contender)
    step()  # the first call requests the Gram entries from later forwards
    launches: Counter[str] = Counter()
    originals = []
    for module, name in (
        (per_tensor_kernels, "combine_fwd"),
        (per_tensor_kernels, "combine_bwd"),
        (segmented_kernels, "combine_fwd"),
        (segmented_kernels, "combine_bwd"),
    ):
        originals.append((module, name, getattr(module, name)))
        label = f"{'segmented' if module is segmented_kernels else 'per-tensor'} {name}"
        setattr(module, name, _CountLaunches(getattr(module, name), launches, label))
    try:
        with _CountOps() as mode:
            step()
    finally:
        for module, name, kernel in originals:
            setattr(module, name, kernel)
    return {
        "model": model_name,
        "kind": kind,
        "contender": contender,
        "aten_ops": sum(mode.ops.values()),
        "triton_launches": sum(launches.values()),
        "aten_by_op": dict(mode.ops.most_common()),
        "triton_by_kernel": dict(launches),
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
    print("| model (tensors) | kind | contender | ATen ops (non-view) | Triton launches |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} ({r['tensors']}) | {r['kind']} | {r['contender']} | {r['aten_ops']} | "
              f"{r['triton_launches']} |")  # fmt: skip
    if a.out:
        write_json(a.out, rows)


if __name__ == "__main__":
    main()
