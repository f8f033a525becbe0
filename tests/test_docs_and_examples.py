"""The README's Python snippets and the docstring examples run; the main job and examples run."""

from __future__ import annotations

import doctest
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import subspace_param
import subspace_param.api

ROOT = Path(__file__).resolve().parents[1]


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    blocks = _python_blocks((ROOT / "README.md").read_text())
    assert blocks, "README has no python example"
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        namespace: dict = {}
        exec(
            compile(block.replace("/tmp/line.pt", str(tmp_path / "line.pt")), "README.md", "exec"), namespace
        )
    assert (tmp_path / "line.pt").exists()
    assert type(namespace["midpoint"]).__name__ == "ResNet"


@pytest.mark.parametrize("module", [subspace_param, subspace_param.api])
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_main_job_smoke(tmp_path):
    from subspace_param.experiments import line_vs_standard

    result = line_vs_standard.main(
        ["--epochs", "2", "--dataset", "digits", "--out-dir", str(tmp_path), "--no-progress"]
    )
    rows = {r["model"]: r for r in result["results"]}
    assert {"line α=0.5", "line endpoint ensemble (α=0 + α=1)", "standard"} <= set(rows)
    assert all(0.0 <= r["acc"] <= 1.0 for r in rows.values())
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["results"] == result["results"]
    assert (tmp_path / "accuracy_vs_alpha.png").stat().st_size > 1000
    # 2 epochs on digits already learn something: far above the 10% of chance
    assert rows["standard"]["acc"] > 0.3


def test_example_train_line_runs():
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "train_line.py"),
            "--epochs",
            "1",
            "--model",
            "squeezenet1_1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    assert out.stdout.count("test accuracy") == 3
