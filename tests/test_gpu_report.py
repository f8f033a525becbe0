"""The one-command GPU report: on a machine without CUDA it says so and writes nothing; its plan
fits the 8-minute budget; its benchmark selections match benchmarks; the RESULTS.md section is
replaced in place, atomically."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _load():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import gpu_report
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return gpu_report


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU answer")
def test_without_cuda_it_says_so_and_writes_nothing(tmp_path):
    target = tmp_path / "RESULTS.md"
    target.write_text("# results\n")
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_report.py"), "--out", str(target)],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 2
    assert "no CUDA device" in out.stdout and "Traceback" not in out.stderr
    assert target.read_text() == "# results\n"


def test_the_plan_fits_eight_minutes_and_starts_with_the_gpu_tests():
    report = _load()
    assert report.STEPS[0].kind == "pytest" and report.STEPS[0].selection == "gpu"
    assert sum(s.limit_s for s in report.STEPS) <= 8 * 60 - 30
    out = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_report.sh"), "--plan"], capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0 and len(out.stdout.strip().splitlines()) == len(report.STEPS) + 1


def test_every_benchmark_selection_matches_benchmarks():
    from _pytest.mark.expression import Expression

    report = _load()
    out = subprocess.run(
        [sys.executable, "-m", "pytest", str(ROOT / "benchmarks"), "--collect-only", "-q",
         "-p", "no:cacheprovider", "--rootdir", str(ROOT / "benchmarks"), "--import-mode=importlib",
         "-o", f"pythonpath={ROOT / 'benchmarks'}"],
        capture_output=True, text=True, timeout=300, cwd=ROOT / "benchmarks",
    )  # fmt: skip
    ids = [line for line in out.stdout.splitlines() if "::" in line]
    assert ids, out.stdout[-1500:] + out.stderr[-1500:]
    for step in report.STEPS:
        if step.kind != "bench":
            continue
        expression = Expression.compile(step.selection)
        # -k matches its names as substrings of the test's keywords (file, function, parameter ids)
        matched = [i for i in ids if expression.evaluate(lambda name, i=i: name.lower() in i.lower())]
        assert matched, f"{step.selection!r} selects no benchmark"


def test_the_section_is_replaced_between_its_markers(tmp_path):
    report = _load()
    path = tmp_path / "RESULTS.md"
    path.write_text("# Benchmark results\n\nCPU tables\n")
    report.write_section("## GPU report — first", path)
    report.write_section("## GPU report — second\n\n| a |\n", path)
    text = path.read_text()
    assert text.startswith("# Benchmark results\n\nCPU tables\n")
    assert text.count(report.BEGIN) == 1 and "second" in text and "first" not in text
    assert not list(tmp_path.glob(".RESULTS.md.*"))  # no temporary file left behind
