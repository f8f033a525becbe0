#!/usr/bin/env bash
# The GPU report in one command: GPU-marked tests, kernel bandwidth, materialisation, training-step
# and projection benchmarks, written into benchmarks/RESULTS.md (see benchmarks/gpu_report.py).
# Needs a CUDA device; uses the checkout's .venv when there is one, else the python on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x .venv/bin/python ]; then
    PY=.venv/bin/python
else
    PY=$(command -v python || command -v python3)
fi
exec "$PY" benchmarks/gpu_report.py "$@"
