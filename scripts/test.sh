#!/usr/bin/env bash
# README command two: the package as users install it, tested.
#   1. build the sdist and, from it, the wheel (python -m build, isolated, as pip would);
#   2. install that wheel with its declared extras ([all]) into a clean virtual environment
#      (.venv-wheel, rebuilt whenever pyproject.toml, setup.py or constraints.txt change; the
#      package itself is reinstalled from the new wheel on every run);
#   3. ruff, then the whole test suite against the *installed* package, run from a folder outside
#      the checkout with PYTHONSAFEPATH=1, so no import can pick up the source tree;
#   4. the kernel and engine tests at the declared floors: Python 3.10, torch 2.11, torchvision 0.26,
#      triton 3.6 (constraints-floor.txt; .venv-floor). SUBSPACE_PARAM_SKIP_FLOOR=1 skips it.
# Without a GPU the Triton kernels run under TRITON_INTERPRET=1 (tests/conftest.py).
# Extra args go to the main pytest run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/venv.sh"
WVENV="${SUBSPACE_PARAM_WHEEL_VENV:-$ROOT/.venv-wheel}"
DIST="$(mktemp -d)"
RUNDIR="$(mktemp -d)"
trap 'rm -rf "$DIST" "$RUNDIR"' EXIT

fresh_venv "$WVENV" "${PYTHON:-python3}" "$ROOT/pyproject.toml" "$ROOT/setup.py" "$ROOT/constraints.txt"
NEW_WHEEL_VENV="$VENV_IS_NEW"
[ "$NEW_WHEEL_VENV" = 1 ] && pip_quiet "$WVENV" -c "$ROOT/constraints.txt" build

echo "[test] building the sdist and the wheel" >&2
if ! "$WVENV/bin/python" -m build --outdir "$DIST" "$ROOT" > "$DIST/build.log" 2>&1; then
    cat "$DIST/build.log" >&2
    exit 1
fi
if grep -i "deprecat" "$DIST/build.log" >&2; then
    echo "[test] the build printed deprecation warnings (above)" >&2
    exit 1
fi
WHEEL="$(ls "$DIST"/subspace_param-*.whl)"
SDIST="$(ls "$DIST"/subspace_param-*.tar.gz)"

echo "[test] installing $(basename "$WHEEL") into $WVENV" >&2
if [ "$NEW_WHEEL_VENV" = 1 ]; then
    pip_quiet "$WVENV" -c "$ROOT/constraints.txt" "$WHEEL[all]"
    venv_done "$WVENV"
else
    pip_quiet "$WVENV" --force-reinstall --no-deps "$WHEEL"
fi

cd "$ROOT"
"$WVENV/bin/ruff" check subspace_param kernels tests benchmarks examples setup.py
"$WVENV/bin/ruff" format --check subspace_param kernels tests benchmarks examples setup.py

run_suite() {  # run_suite VENV PYTEST-ARGS...: pytest against VENV's installed package, from outside the tree
    local venv="$1"
    shift
    (cd "$RUNDIR" && PATH="$venv/bin:$PATH" PYTHONSAFEPATH=1 SUBSPACE_PARAM_EXPECT_INSTALLED=1 \
        SUBSPACE_PARAM_WHEEL="$WHEEL" SUBSPACE_PARAM_SDIST="$SDIST" \
        "$venv/bin/python" -m pytest -c "$ROOT/pyproject.toml" --rootdir "$ROOT" -p no:cacheprovider -q "$@")
}

echo "[test] the suite against the installed wheel ($("$WVENV/bin/python" -c 'import torch, triton; print("torch", torch.__version__, "triton", triton.__version__)'))" >&2
run_suite "$WVENV" "$ROOT/tests" "$@"

if [ "${SUBSPACE_PARAM_SKIP_FLOOR:-0}" = 1 ]; then
    echo "[test] floor run skipped (SUBSPACE_PARAM_SKIP_FLOOR=1)" >&2
    exit 0
fi
FLOOR_PY=""
# the first Python 3.10 that really runs (pyenv's shim is on PATH but fails without a pyenv version set)
for candidate in "$HOME"/.pyenv/versions/3.10*/bin/python3.10 /usr/bin/python3.10 /usr/local/bin/python3.10 \
    "$(command -v python3.10 || true)"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ] && "$candidate" -c "import sys; assert sys.version_info[:2] == (3, 10)" 2>/dev/null; then
        FLOOR_PY="$candidate"
        break
    fi
done
if [ -z "$FLOOR_PY" ]; then
    echo "[test] no python3.10 on this machine: the floor run uses $(python3 --version)" >&2
    FLOOR_PY=python3
fi
FVENV="${SUBSPACE_PARAM_FLOOR_VENV:-$ROOT/.venv-floor}"
fresh_venv "$FVENV" "$FLOOR_PY" "$ROOT/pyproject.toml" "$ROOT/setup.py" "$ROOT/constraints-floor.txt"
if [ "$VENV_IS_NEW" = 1 ]; then
    pip_quiet "$FVENV" -c "$ROOT/constraints-floor.txt" "$WHEEL[triton]" pytest hypothesis
    venv_done "$FVENV"
else
    pip_quiet "$FVENV" --force-reinstall --no-deps "$WHEEL"
fi
echo "[test] kernels and engine at the floors ($("$FVENV/bin/python" -c 'import sys, torch, triton; print("python", sys.version.split()[0], "torch", torch.__version__, "triton", triton.__version__)'))" >&2
run_suite "$FVENV" "$ROOT/tests/test_kernels.py" "$ROOT/tests/test_fused.py" "$ROOT/tests/test_engine.py" \
    "$ROOT/tests/test_geometry.py" "$ROOT/tests/test_projection.py" "$ROOT/tests/test_packaging.py"
