#!/usr/bin/env bash
# README command two: lint and the whole test suite (Triton kernels run under TRITON_INTERPRET=1
# when there is no GPU; see tests/conftest.py). Extra args go to pytest.
source "$(dirname "$0")/env.sh"
ruff check subspace_param kernels tests benchmarks examples
ruff format --check subspace_param kernels tests benchmarks examples
exec python -m pytest -q "$@"
