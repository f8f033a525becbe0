"""Every production kernel compiles for real GPU targets (sm_80, sm_90) with the launcher's own
specialisation, without a GPU: no failure, no spill, 128-bit global loads and stores in the
bandwidth kernels, 64-bit offsets (``benchmarks/aot_compile.py``; the quick subset: K ∈ {2, 8},
fp32 and bf16, plus the fixed cases — T = 32 gradient pointers, sizes past 2³¹, Rademacher, hashed)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "aot_compile.py"


def test_every_kernel_configuration_compiles_for_sm80_and_sm90(tmp_path):
    pytest.importorskip("triton.backends.nvidia", reason="needs Triton's NVIDIA backend (ptxas)")
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--arch", "80", "90", "--quick", "--json", str(tmp_path / "aot.json")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    last = out.stdout.strip().splitlines()[-1]
    match = re.fullmatch(
        r"(\d+) kernel configurations compiled for sm_80, sm_90: (\d+) failed, (\d+) with spills, "
        r"(\d+) without 128-bit loads",
        last,
    )
    assert match, out.stdout[-2000:] + out.stderr[-2000:]
    total, failed, spills, narrow = map(int, match.groups())
    assert total == 2 * (2 * 2 * 8 + 7)
    assert (failed, spills, narrow) == (0, 0, 0), out.stdout
    assert out.returncode == 0
    rows = [line for line in out.stdout.splitlines() if line.startswith("| sm_")]
    assert len(rows) == total and all(line.rstrip().endswith("| yes |") for line in rows), "int32 offsets"
    stores = [line for line in rows if " seg_" in line or " combine " in line]
    assert all(line.split("|")[6].strip() == "128" for line in stores), "a bandwidth kernel stores < 128 bits"


def test_the_report_flags_narrow_accesses_and_int32_offsets():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import aot_compile
    finally:
        sys.path.remove(str(SCRIPT.parent))
    ptx = (
        "ld.global.v4.b32 {%r1,%r2,%r3,%r4}, [%rd1];\nld.global.b16 %rs1, [%rd2];\n"
        "st.global.v2.b64 [%rd3], {%rd4,%rd5};"
    )
    assert aot_compile.access_widths(ptx, "ld") == [128, 16]
    assert aot_compile.access_widths(ptx, "st") == [128]
    assert not aot_compile.offsets_are_64bit("mul.wide.s32 %rd7, %r3, 4;")
    assert aot_compile.offsets_are_64bit("shl.b64 %rd7, %rd3, 2;")
