# Sourced by the set-up scripts: fresh_venv DIR PYTHON KEY_FILE... creates DIR as a virtual environment
# unless it exists with the same key (sha256 of the KEY_FILEs and the interpreter version); a changed
# key rebuilds it from scratch, so nothing installed for an older pyproject or constraints survives.
# Sets VENV_IS_NEW=1 when it built the environment (the caller then installs into it and calls
# venv_done DIR to record the key).
fresh_venv() {
    local dir="$1" py="$2"
    shift 2
    VENV_KEY="$({ "$py" --version 2>&1; cat "$@"; } | sha256sum | cut -d' ' -f1)"
    VENV_IS_NEW=0
    if [ -x "$dir/bin/python" ] && [ "$(cat "$dir/.subspace-param-key" 2>/dev/null)" = "$VENV_KEY" ]; then
        return 0
    fi
    echo "[setup] creating $dir ($("$py" --version 2>&1))" >&2
    rm -rf "$dir"
    "$py" -m venv "$dir"
    pip_quiet "$dir" --upgrade pip
    VENV_IS_NEW=1
}

venv_done() {
    echo "$VENV_KEY" > "$1/.subspace-param-key"
}

# pip_quiet DIR ARGS...: pip install into DIR's environment; prints pip's output without the
# index-location warnings, and fails with pip's status
pip_quiet() {
    local dir="$1" log status=0
    shift
    log="$(mktemp)"
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "$@" >"$log" 2>&1 || status=$?
    grep -v "^WARNING: Location" "$log" >&2 || true
    rm -f "$log"
    return "$status"
}
