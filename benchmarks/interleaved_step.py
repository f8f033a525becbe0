"""One training step of plain vs line, timed *interleaved* in one process (CPU timings here swing by
±50 % with allocator state, so only ratios measured side by side mean something).

    python benchmarks/interleaved_step.py [--model resnet18] [--batch 64] [--rounds 11] [--json PATH]

Contenders: the plain model; a line on the default path without and with the regulariser (β = 1);
a line per tensor (``fused=False``) with the regulariser. Each round runs one step of each in turn;
the medians and the ratios to plain are printed (and written as JSON). Run it under different
allocator settings (e.g. ``MALLOC_MMAP_THRESHOLD_=1000000000``) to compare with the default.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from steps import MODELS, make_step

from subspace_param.io import write_json


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet18", choices=list(MODELS))
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--rounds", type=int, default=11)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=None, help="write the medians here")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    steps = {
        "plain": make_step(a.model, "plain", a.batch),
        "line, no regulariser": make_step(a.model, "line", a.batch, beta=0.0, fused=None),
        "line": make_step(a.model, "line", a.batch, beta=1.0, fused=None),
        "line per tensor": make_step(a.model, "line", a.batch, beta=1.0, fused=False),
    }
    for step in steps.values():
        for _ in range(3):
            step()
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(a.rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    medians = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    allocator = {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")} or "default"
    print(
        f"{a.model}, batch {a.batch}, {a.threads} threads, {a.rounds} interleaved rounds, "
        f"allocator {allocator}"
    )
    print("| contender | median ms | ratio to plain |\n|---|---|---|")
    for name, seconds in medians.items():
        print(f"| {name} | {seconds * 1e3:.1f} | {seconds / medians['plain']:.2f} |")
    if a.json:
        write_json(a.json, {"model": a.model, "allocator": allocator, "median_seconds": medians})
    return medians


if __name__ == "__main__":
    main()
