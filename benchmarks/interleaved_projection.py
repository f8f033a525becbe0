"""One training step of a random-projection subspace θ = θ0 + P ω against the plain model, timed
*interleaved* in one process (CPU timings swing by ±50 % with allocator state, so only ratios
measured side by side mean something).

    python benchmarks/interleaved_projection.py [--model resnet18] [--dims 1000 10000 100000]
        [--methods hashed fastfood sparse] [--rounds 5] [--json PATH]

For each d, each round runs one step of plain and of every method in turn; the medians, their
ratios to plain and the bytes P keeps are printed (and written as JSON). A method whose P would
not fit (sparse stores d·Σ√D_l triplets) is skipped with the reason.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from steps import MODELS, make_step, projector_bytes

from subspace_param.io import markdown_table, write_json

#: sparse P above this many bytes is not built (it would take minutes and GBs)
SPARSE_LIMIT = 4 * 2**30


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet18", choices=list(MODELS))
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--dims", type=int, nargs="+", default=[1000, 10000, 100000])
    p.add_argument("--methods", nargs="+", default=["hashed", "fastfood", "sparse"])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    num_params = sum(t.numel() for t in MODELS[a.model][0]().parameters())
    rows = []
    for d in a.dims:
        steps = {"plain": make_step(a.model, "plain", a.batch)}
        for m in a.methods:
            if m == "sparse" and 20 * d * num_params**0.5 * 3 > SPARSE_LIMIT:
                rows.append(
                    {"d": d, "method": m, "median ms": None, "ratio to plain": None, "note": "P too large"}
                )
                continue
            steps[m] = make_step(a.model, f"proj-{m}-{d}", a.batch)
        times: dict[str, list[float]] = {k: [] for k in steps}
        for s in steps.values():  # warm-up
            s()
        for _ in range(a.rounds):
            for k, s in steps.items():
                t0 = time.perf_counter()
                s()
                times[k].append(time.perf_counter() - t0)
        plain = statistics.median(times["plain"])
        for k, ts in times.items():
            med = statistics.median(ts)
            rows.append(
                {
                    "d": d,
                    "method": k,
                    "median ms": round(med * 1000, 1),
                    "ratio to plain": round(med / plain, 2),
                    "P bytes": projector_bytes(getattr(steps[k], "projection", None)) if k != "plain" else 0,
                    "note": "",
                }
            )
        print(markdown_table([r for r in rows if r["d"] == d]), flush=True)
    if a.json:
        write_json(
            a.json,
            {
                "model": a.model,
                "batch": a.batch,
                "threads": a.threads,
                "torch": torch.__version__,
                "rows": rows,
            },
        )
    return rows


if __name__ == "__main__":
    main()
