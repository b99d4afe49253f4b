#!/usr/bin/env bash
# Build the EdgeRM master and agent Docker images on a Debian base made here, then run a master
# container and an agent container and wait until the agent has registered with the master.
#
#   bash scripts/docker_images.sh             # build, run, check, remove the containers
#   bash scripts/docker_images.sh --build     # only build the images
#
# No registry image is pulled: the base is made with mmdebstrap from the configured Debian apt
# mirror (python3 + python3-venv, docs and locales left out) and loaded with `docker import`;
# it is cached in $EDGERM_BASE_CACHE (default ~/.cache/edgerm/debian-base.tar: delete it to
# remake it). EdgeRM and its dependencies go in as wheels built here (`pip wheel .`, PyPI or
# pip's cache), so the images need no index either. The Debian base's python3 is 3.11: the
# wheels are built with a Python 3.11 (the one running this script, else python3.11).
#
# Uses the engine at $DOCKER_HOST when one answers, else starts a dockerd of its own (as
# docs/gateway.md shows; no bridge: the containers use the host network) and stops it at the end.
# Needs root (mmdebstrap, dockerd), mmdebstrap and docker.io (installed with apt-get if missing).
# Prints how long each step took; docs/gateway.md ("Deploying") has typical figures.
set -euo pipefail
cd "$(dirname "$0")/.."
EDGERM_SCRIPT=docker_images.sh
. scripts/lib/venv.sh

ONLY_BUILD=""
[ "${1:-}" = "--build" ] && ONLY_BUILD=1
BASE_IMAGE=edgerm/debian-base:bookworm
BASE_CACHE=${EDGERM_BASE_CACHE:-$HOME/.cache/edgerm/debian-base.tar}
WORK=$(mktemp -d /tmp/edgerm-images.XXXXXX)
STARTED_DOCKERD=""
CONTAINERS=()
T0=$(date +%s.%N)

step() {  # step NAME: print the time since the previous step
    local now
    now=$(date +%s.%N)
    printf '%s: %-28s %6.1f s\n' "$EDGERM_SCRIPT" "$1" "$(echo "$now - ${T_STEP:-$T0}" | bc)" >&2
    T_STEP=$now
}

cleanup() {
    local rc=$?
    for c in "${CONTAINERS[@]}"; do
        if [ $rc -ne 0 ]; then
            echo "--- logs of $c ---" >&2
            docker logs "$c" 2>&1 | tail -30 >&2 || true
        fi
        docker rm -f "$c" >/dev/null 2>&1 || true
    done
    if [ -n "$STARTED_DOCKERD" ]; then
        kill "$(cat "$WORK/d/dockerd.pid")" 2>/dev/null || true
        for _ in $(seq 50); do [ -e "$WORK/d/dockerd.pid" ] || break; sleep 0.2; done
        umount "$WORK/d/exec/netns/default" 2>/dev/null || true
    fi
    rm -rf "$WORK" 2>/dev/null || true
    exit $rc
}
trap cleanup EXIT

need=()
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
command -v dockerd >/dev/null || need+=(docker.io)
command -v bc >/dev/null || need+=(bc)
[ ${#need[@]} -eq 0 ] || edgerm_apt_install "${need[@]}"

# -- the Docker engine
if ! docker info >/dev/null 2>&1; then
    mkdir -p "$WORK/d"
    dockerd --iptables=false --ip6tables=false --bridge=none --data-root "$WORK/d/data" \
        --exec-root "$WORK/d/exec" --pidfile "$WORK/d/dockerd.pid" \
        -H "unix://$WORK/d/docker.sock" >"$WORK/d/dockerd.log" 2>&1 &
    STARTED_DOCKERD=1
    export DOCKER_HOST="unix://$WORK/d/docker.sock"
    for _ in $(seq 100); do docker info >/dev/null 2>&1 && break; sleep 0.2; done
    docker info >/dev/null 2>&1 || { cat "$WORK/d/dockerd.log" >&2;
        edgerm_log "dockerd did not start (run as root)"; exit 1; }
fi
step "docker engine"

# -- the Debian base
if [ ! -s "$BASE_CACHE" ]; then
    mkdir -p "$(dirname "$BASE_CACHE")"
    mmdebstrap --variant=minbase --include=python3,python3-venv --mode=root --format=tar \
        --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
        bookworm "$BASE_CACHE.part" >"$WORK/mmdebstrap.log" 2>&1 \
        || { tail -20 "$WORK/mmdebstrap.log" >&2; edgerm_log "mmdebstrap failed"; exit 1; }
    mv "$BASE_CACHE.part" "$BASE_CACHE"
    step "debian base (mmdebstrap)"
fi
docker import "$BASE_CACHE" "$BASE_IMAGE" >/dev/null
step "debian base (import)"

# -- wheels: edgerm and its dependencies, for the base's Python 3.11
PY=${PYTHON:-python3}
if [ "$("$PY" -c 'import sys; print(sys.version_info[:2] == (3, 11))')" != True ]; then
    PY=$(command -v python3.11 || true)
    [ -n "$PY" ] || { edgerm_log "the wheels need a Python 3.11 (Debian 12's): none found"; exit 1; }
fi
mkdir -p "$WORK/ctx"
"$PY" -m pip wheel -q --disable-pip-version-check --wheel-dir "$WORK/ctx/wheels" . \
    >"$WORK/pip.log" 2>&1 || { tail -20 "$WORK/pip.log" >&2; exit 1; }
step "wheels (pip wheel)"

for svc in master agent; do
    # The legacy builder with the host network: the engine has no bridge (and RUN needs none).
    DOCKER_BUILDKIT=0 docker build -q --network host -t "edgerm/$svc:latest" \
        -f "deploy/docker/Dockerfile.$svc" "$WORK/ctx" >"$WORK/build-$svc.log" 2>&1 \
        || { tail -30 "$WORK/build-$svc.log" >&2; edgerm_log "docker build $svc failed"; exit 1; }
    step "image edgerm/$svc"
done
docker images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep '^edgerm/' >&2
[ -z "$ONLY_BUILD" ] || exit 0

# -- a master container and an agent container that register with each other
read -r COAP WS < <("$PY" - <<'EOF'
import socket
u, t = socket.socket(socket.AF_INET, socket.SOCK_DGRAM), socket.socket()
u.bind(("127.0.0.1", 0)); t.bind(("127.0.0.1", 0))
print(u.getsockname()[1], t.getsockname()[1])
EOF
)
AGENT_TOKEN=$("$PY" -c 'import secrets; print(secrets.token_urlsafe(16))')
OPERATOR_TOKEN=$("$PY" -c 'import secrets; print(secrets.token_urlsafe(16))')
NAME=edgerm-images-$$
CONTAINERS+=("$NAME-master")
docker run -d --name "$NAME-master" --network host edgerm/master:latest \
    --host 127.0.0.1 --coap-port "$COAP" --ws-port "$WS" --agent-token "$AGENT_TOKEN" \
    --framework-token "$("$PY" -c 'import secrets; print(secrets.token_urlsafe(16))')" \
    --operator-token "$OPERATOR_TOKEN" >/dev/null
mkdir -p "$WORK/agent"
cat >"$WORK/agent/agent.toml" <<EOF
name = "container-agent"
work_dir = "/var/lib/edgerm-agent"
[master]
url = "coap://127.0.0.1:$COAP"
token = "$AGENT_TOKEN"
[executors]
enabled = ["wasm"]
EOF
chmod 0644 "$WORK/agent/agent.toml"
CONTAINERS+=("$NAME-agent")
docker run -d --name "$NAME-agent" --network host \
    -v "$WORK/agent/agent.toml:/etc/edgerm/agent.toml:ro" edgerm/agent:latest >/dev/null
step "containers started"

# The master's own CLI (in its container) lists the agents.
DEADLINE=$(( $(date +%s) + 30 ))
while [ "$(date +%s)" -lt $DEADLINE ]; do
    if docker exec "$NAME-master" edgerm agents --master "ws://127.0.0.1:$WS" \
            --operator-token "$OPERATOR_TOKEN" 2>/dev/null | grep -q container-agent; then
        docker exec "$NAME-master" edgerm agents --master "ws://127.0.0.1:$WS" \
            --operator-token "$OPERATOR_TOKEN"
        step "agent registered"
        printf '%s: total %.1f s\n' "$EDGERM_SCRIPT" "$(echo "$(date +%s.%N) - $T0" | bc)" >&2
        exit 0
    fi
    sleep 0.5
done
edgerm_log "the agent did not register within 30 s"
exit 1
