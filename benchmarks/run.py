"""Run the benchmark suite and print markdown tables (one per group) with ratios to the baseline.

    python benchmarks/run.py [-k EXPR] [--json PATH]

Step benchmarks are reported as a ratio to the plain model's step; kernel benchmarks as GB/s.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _path(extra: dict) -> str:
    if extra["kind"] == "plain" or extra["kind"].startswith("proj-"):
        return "–"
    return "fused" if extra.get("fused", True) else "per tensor"


def tables(results: dict) -> str:
    groups: dict[str, list[dict]] = defaultdict(list)
    for b in results["benchmarks"]:
        groups[b["group"] or b["name"]].append(b)
    out = []
    for group, rows in groups.items():
        info0 = rows[0]["extra_info"]
        out.append(f"### {group} ({info0.get('device', '?')}, torch {info0.get('torch', '?')})\n")
        if "kind" in info0:
            base = {
                (r["extra_info"]["bf16"]): r["stats"]["median"]
                for r in rows
                if r["extra_info"]["kind"] == "plain"
            }
            out.append(
                "| kind | backend | path | median ms | IQR ms | ratio to plain | P bytes | CUDA peak MiB |"
            )
            out.append("|---|---|---|---|---|---|---|---|")
            for r in rows:
                e, s = r["extra_info"], r["stats"]
                b = base.get(e["bf16"])
                ratio = f"{s['median'] / b:.3f}" if b else "–"
                peak = e.get("peak_cuda_bytes")
                peak_mib = f"{peak / 2**20:.0f}" if peak else "–"
                out.append(
                    f"| {e['kind']} | {e['backend']} | {_path(e)} | "
                    f"{s['median'] * 1e3:.1f} | "
                    f"{s['iqr'] * 1e3:.1f} | {ratio} | {e.get('p_bytes', '–')} | {peak_mib} |"
                )
        elif "gbps" not in info0:
            base = next(
                (r["extra_info"]["seconds"] for r in rows if r["extra_info"]["case"] == "eager parametrize"),
                None,
            )
            out.append("| contender | median ms | speed-up over eager parametrize |")
            out.append("|---|---|---|")
            for r in rows:
                e = r["extra_info"]
                speedup = f"{base / e['seconds']:.2f}×" if base else "–"
                out.append(f"| {e['case']} | {e['seconds'] * 1e3:.2f} | {speedup} |")
        else:
            out.append("| case | median µs | GB/s | % of copy |")
            out.append("|---|---|---|---|")
            for r in rows:
                e = r["extra_info"]
                out.append(
                    f"| {e.get('case', r['name'])} | {e.get('seconds', r['stats']['median']) * 1e6:.1f} | "
                    f"{e.get('gbps', float('nan')):.1f} | {e.get('pct_copy', float('nan')):.0f} |"
                )
        out.append("")
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-k", default=None, help="pytest -k expression to select benchmarks")
    p.add_argument("--json", default=None, help="also keep pytest-benchmark's JSON here")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(a.json) if a.json else Path(tmp) / "bench.json"
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            str(HERE),
            "-q",
            "--benchmark-only",
            f"--benchmark-json={path}",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(HERE),
            # steps.py is imported by name; importlib mode leaves sys.path alone otherwise, so an
            # installed subspace_param is not shadowed by the checkout
            "--import-mode=importlib",
            "-o",
            f"pythonpath={HERE}",
        ]
        if a.k:
            cmd += ["-k", a.k]
        rc = subprocess.call(cmd, cwd=HERE)
        if not path.exists():
            sys.exit(rc or 1)
        print(tables(json.loads(path.read_text())))
        sys.exit(rc)


if __name__ == "__main__":
    main()
