"""Every GPU check and benchmark of the suite in one command, tables written into RESULTS.md.

    bash scripts/gpu_report.sh            # = python benchmarks/gpu_report.py
    python benchmarks/gpu_report.py --plan  # the steps and their time limits, runs nothing

Steps (each under its own time limit, about 7 minutes in all on one H200):

1. ``pytest -m gpu``: bf16, autocast and ``torch.compile`` on the fused path, the bf16 agreement
   of the two backends (run once, the one time a GPU is there);
2. kernel bandwidth: w = Σ c_k V_k and its backward against ``copy_`` (GB/s, % of copy);
3. materialisation + regulariser, forward + backward: eager parametrize, fused PyTorch,
   ``torch.compile`` of the eager formula, per-tensor Triton, fused Triton (lines);
4. training-step ratios to plain: resnet18, resnet50, vit_b_16; fp32 and bf16 autocast; lines on
   the fused path, both backends;
5. projection steps θ = θ0 + P ω, d = 1000, every method.

It needs CUDA, Triton, pytest and pytest-benchmark; what is missing is named and its steps are
skipped (the script never stops on a missing package). The library is imported from this checkout
even when it is not installed (a shadow package in a temporary folder puts ``kernels/`` at
``subspace_param/kernels``). The tables replace the block between the markers
``<!-- gpu-report:begin -->`` and ``<!-- gpu-report:end -->`` of ``benchmarks/RESULTS.md``
(written atomically), with device, versions, date and command. Exit status: 0 when every step
ran and passed, 1 when a step failed or timed out, 2 when there is no CUDA device.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "RESULTS.md"
BEGIN, END = "<!-- gpu-report:begin -->", "<!-- gpu-report:end -->"
COMMAND = "bash scripts/gpu_report.sh"


@dataclass(frozen=True)
class Step:
    title: str
    kind: str  # "pytest" (tests) or "bench" (benchmarks/run.py -k)
    selection: str
    limit_s: int


STEPS = [
    Step("GPU-marked tests (bf16, autocast, torch.compile on the fused path)", "pytest", "gpu", 90),
    Step("Kernel bandwidth: w = Σ c_k V_k and its backward vs copy", "bench", "bandwidth", 60),
    Step("Materialisation + regulariser, forward + backward (lines)", "bench", "materialize and line", 120),
    Step(
        "Training step vs plain, fp32 and bf16 autocast (lines, fused path)",
        "bench",
        "train_step and fused and (plain or line)",
        120,
    ),
    Step("Projection steps θ = θ0 + P ω, d = 1000", "bench", "projection and (plain or 1000)", 60),
]


def missing_requirements() -> list[str]:
    """What the report needs and this machine lacks, each as one line."""
    missing = []
    needs = [
        ("torch", "everything"),
        ("triton", "the Triton contenders"),
        ("pytest", "every step"),
        ("pytest_benchmark", "the benchmark steps"),
        ("torchvision", "the model benchmarks"),
    ]
    for module, why in needs:
        if importlib.util.find_spec(module) is None:
            missing.append(f"{module} is not installed (needed for {why})")
    return missing


def shadow_package(tmp: Path) -> Path:
    """A folder whose ``subspace_param`` is this checkout's, with ``kernels/`` linked in as
    ``subspace_param.kernels`` (what the wheel does), for machines where it is not installed."""
    pkg = tmp / "subspace_param"
    pkg.mkdir()
    for entry in (ROOT / "subspace_param").iterdir():
        if entry.name != "__pycache__":
            (pkg / entry.name).symlink_to(entry)
    (pkg / "kernels").symlink_to(ROOT / "kernels")
    return tmp


def environment(tmp: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("TRITON_INTERPRET", None)
    probe = subprocess.run(
        [sys.executable, "-c", "import subspace_param.kernels.combine"], capture_output=True, cwd=tmp, env=env
    )
    if probe.returncode:
        env["PYTHONPATH"] = os.pathsep.join([str(shadow_package(tmp)), env.get("PYTHONPATH", "")]).rstrip(
            os.pathsep
        )
    return env


def run_step(step: Step, env: dict[str, str], tmp: Path) -> tuple[str, str]:
    """(status, markdown) of one step."""
    if step.kind == "pytest":
        cmd = [sys.executable, "-m", "pytest", str(ROOT / "tests"), "-m", step.selection, "-q", "-p",
               "no:cacheprovider", "--rootdir", str(ROOT)]  # fmt: skip
    else:
        cmd = [sys.executable, str(HERE / "run.py"), "-k", step.selection]
    start = time.monotonic()
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=step.limit_s, env=env, cwd=tmp)
    except subprocess.TimeoutExpired as exc:
        text = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return "timed out", f"Timed out after {step.limit_s} s; partial output:\n\n```\n{text[-1500:]}\n```\n"
    took = time.monotonic() - start
    if step.kind == "pytest":
        summary = (out.stdout.strip().splitlines() or ["(no output)"])[-1]
        status = "passed" if out.returncode == 0 else "FAILED"
        body = f"`{' '.join(cmd[1:3])} -m {step.selection}`: {summary} ({took:.0f} s)\n"
        if out.returncode:
            body += f"\n```\n{out.stdout[-3000:]}\n{out.stderr[-1500:]}\n```\n"
        return status, body
    tables = out.stdout[out.stdout.find("### ") :].replace("### ", "#### ") if "### " in out.stdout else ""
    status = "passed" if out.returncode == 0 and tables else "FAILED"
    body = f'`python benchmarks/run.py -k "{step.selection}"` ({took:.0f} s)\n\n{tables.strip()}\n'
    if status != "passed":
        body += f"\n```\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}\n```\n"
    return status, body


def header() -> str:
    import torch

    lines = [f"## GPU report — {datetime.date.today().isoformat()}", ""]
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = "not installed"
    lines.append(f"Device: {device}; torch {torch.__version__} (CUDA {torch.version.cuda}), triton "
                 f"{triton_version}, Python {platform.python_version()}. Command: `{COMMAND}`.")  # fmt: skip
    return "\n".join(lines) + "\n"


def write_section(text: str, path: Path = RESULTS) -> None:
    """Replace the block between the markers of ``path`` with ``text`` (append the block if the
    markers are absent), atomically (temporary file + rename)."""
    old = path.read_text() if path.exists() else ""
    block = f"{BEGIN}\n{text.rstrip()}\n{END}"
    if BEGIN in old and END in old and old.index(BEGIN) < old.index(END):
        new = old[: old.index(BEGIN)] + block + old[old.index(END) + len(END) :]
    else:
        new = old.rstrip() + "\n\n" + block + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(new)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--plan", action="store_true", help="print the steps and their limits, run nothing")
    p.add_argument("--out", default=str(RESULTS), help="the markdown file to write the section into")
    a = p.parse_args(argv)
    if a.plan:
        for step in STEPS:
            print(f"{step.limit_s:4d} s  {step.kind:6s} {step.selection!r:45s} {step.title}")
        print(f"{sum(s.limit_s for s in STEPS)} s at most in all")
        return 0
    missing = missing_requirements()
    if any(m.startswith(("torch ", "pytest ")) for m in missing):
        print("gpu_report: cannot run: " + "; ".join(missing))
        return 2
    import torch

    if not torch.cuda.is_available():
        print("gpu_report: no CUDA device here: the GPU report needs one; nothing run, nothing written")
        return 2
    for line in missing:
        print(f"gpu_report: {line}: the steps that need it are skipped")
    sections, failed = [header()], False
    with tempfile.TemporaryDirectory() as tmp:
        env = environment(Path(tmp))
        for step in STEPS:
            if step.kind == "bench" and any(m.startswith("pytest_benchmark") for m in missing):
                sections.append(f"### {step.title}\n\nskipped: pytest-benchmark is not installed\n")
                continue
            print(f"gpu_report: {step.title} (at most {step.limit_s} s)", flush=True)
            status, body = run_step(step, env, Path(tmp))
            print(f"gpu_report:   {status}", flush=True)
            failed |= status != "passed"
            sections.append(f"### {step.title} — {status}\n\n{body}")
    write_section("\n".join(sections), Path(a.out))
    print(f"gpu_report: written to {a.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
