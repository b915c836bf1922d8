# Sourced by scripts/serve and scripts/run-tests: make_venv DIR creates a virtualenv,
# installing Debian's python3-venv first where Python lacks it (fresh Debian machines).
PYTHON=${PYTHON:-python3}

make_venv() {
    local dir=$1
    if [ -x "$dir/bin/python" ]; then
        return 0
    fi
    if ! "$PYTHON" -m venv "$dir" >/dev/null 2>&1; then
        rm -rf "$dir"
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            echo "installing python3-venv from Debian's packages" >&2
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
            "$PYTHON" -m venv "$dir"
        else
            echo "'$PYTHON -m venv' failed: install python3-venv (sudo apt-get install python3-venv)" >&2
            exit 1
        fi
    fi
    "$dir/bin/python" -m pip install --quiet --upgrade pip
}
