# shellcheck shell=bash
# Sourced by scripts/test.sh and scripts/cluster.sh (from the repository root): which Python
# EdgeRM's packages go into, and Debian packages on demand.
#
# A stock Debian 12 / Ubuntu 24.04 python3 refuses `pip install` (PEP 668: its stdlib carries an
# EXTERNALLY-MANAGED marker), and may have no pip or no ensurepip at all. So:
#
#   edgerm_python    sets PYTHON to an interpreter whose pip may install, in this order:
#                    1. the base interpreter ($PYTHON, default python3) when its pip may install
#                       (an active virtualenv, pyenv, a Python built from source, CI's);
#                    2. ./.venv/bin/python when an earlier run made it;
#                    3. a new ./.venv made from the base interpreter (installing Debian's
#                       python3-venv with apt-get when the interpreter lacks ensurepip).
#                    In cases 2 and 3 the virtualenv is put first on PATH (so `python3`,
#                    `edgerm`, `micropython` of child processes are its own) and EDGERM_VENV
#                    names it; otherwise EDGERM_VENV is empty.
#   edgerm_apt_install PKG...
#                    apt-get install, with sudo when not root, `apt-get update` once per run.
#
# Nothing here installs EdgeRM itself: each script runs its own `"$PYTHON" -m pip install`.

EDGERM_VENV_DIR=${EDGERM_VENV_DIR:-.venv}
EDGERM_APT_UPDATED=""

edgerm_log() {
    echo "${EDGERM_SCRIPT:-edgerm}: $*" >&2
}

edgerm_apt_install() {
    if ! command -v apt-get >/dev/null; then
        edgerm_log "please install $* (not a Debian/Ubuntu system)"
        return 1
    fi
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    edgerm_log "installing $* (apt-get)"
    if [ -z "$EDGERM_APT_UPDATED" ]; then
        $sudo apt-get update -qq
        EDGERM_APT_UPDATED=1
    fi
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "$@" >/dev/null
}

# True when `$1 -m pip install` may install: pip is there and the interpreter is a virtualenv or
# carries no PEP 668 marker (pip itself ignores the marker inside a virtualenv).
edgerm_pip_can_install() {
    "$1" - <<'EOF' 2>/dev/null
import os, sys, sysconfig
marker = os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")
if sys.prefix == sys.base_prefix and os.path.exists(marker):
    sys.exit(1)
import pip  # noqa: F401
EOF
}

edgerm_python() {
    local base=${PYTHON:-python3}
    EDGERM_VENV=""
    if ! command -v "$base" >/dev/null; then
        edgerm_log "no $base: install Python 3.11 or newer (Debian: apt-get install python3)"
        return 1
    fi
    if ! "$base" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        edgerm_log "EdgeRM needs Python 3.11 or newer ($base is $("$base" -V 2>&1))"
        return 1
    fi
    if edgerm_pip_can_install "$base"; then
        PYTHON=$base
        return 0
    fi
    local venv=$EDGERM_VENV_DIR
    if ! { [ -x "$venv/bin/python" ] && edgerm_pip_can_install "$venv/bin/python"; }; then
        edgerm_log "$base may not pip install (PEP 668 or no pip): making a virtualenv in $venv"
        rm -rf "$venv"
        if ! "$base" -m venv "$venv" 2>/dev/null; then
            # Debian splits ensurepip off into python3-venv (python3.X-venv for another version).
            rm -rf "$venv"
            local version
            version=$("$base" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
            edgerm_apt_install python3-venv || true
            if ! "$base" -m venv "$venv" 2>/dev/null; then
                rm -rf "$venv"
                edgerm_apt_install "python$version-venv" || true
                "$base" -m venv "$venv" || {
                    rm -rf "$venv"
                    edgerm_log "cannot make a virtualenv: install python$version-venv"
                    return 1
                }
            fi
        fi
    fi
    EDGERM_VENV=$(cd "$venv" && pwd)
    PYTHON=$EDGERM_VENV/bin/python
    export VIRTUAL_ENV=$EDGERM_VENV
    export PATH="$EDGERM_VENV/bin:$PATH"
}
