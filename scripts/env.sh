# Sourced by scripts/main.sh: create or reuse .venv (the development environment) with an editable
# install of the project and the pinned versions of constraints.txt (torch 2.14.1, torchvision 0.29.1,
# triton 3.8.0).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/venv.sh"
VENV="${SUBSPACE_PARAM_VENV:-$ROOT/.venv}"
fresh_venv "$VENV" "${PYTHON:-python3}" "$ROOT/pyproject.toml" "$ROOT/constraints.txt" "$ROOT/setup.py"
if [ "$VENV_IS_NEW" = 1 ]; then
    echo "[setup] installing subspace-param (editable) and pinned dependencies into $VENV" >&2
    pip_quiet "$VENV" -c "$ROOT/constraints.txt" -e "$ROOT[all]"
    "$VENV/bin/python" -c "import subspace_param, torch, torchvision, triton"
    venv_done "$VENV"
fi
export PATH="$VENV/bin:$PATH"
cd "$ROOT"
