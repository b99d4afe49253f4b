#!/usr/bin/env bash
# Install everything the test suite needs on a fresh Debian/Ubuntu machine, then run it.
#   bash scripts/test.sh            # the whole suite
#   bash scripts/test.sh tests/wire # extra arguments go to pytest
# Python packages go into the interpreter on PATH when its pip may install (a virtualenv, pyenv,
# CI), else into ./.venv (a stock Debian/Ubuntu python3 refuses, PEP 668): scripts/lib/venv.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
EDGERM_SCRIPT=test.sh
. scripts/lib/venv.sh

# Debian packages: a Docker engine and busybox for local images, libcoap's CoAP client (an
# independent peer), clang/lld for wasm32 tasks and libFuzzer, the Cortex-M4 toolchain and QEMU,
# cmake for WAMR's runtime_lib.cmake (WAMR's sources: ../shared/third_party, firmware/zephyr),
# chromium and its driver for the dashboard's browser test (Selenium), Prometheus for the
# metrics' scrape test, etcd (the HA tests start three real members on loopback:
# edgerm_master/testing_etcd.py), systemd-analyze for the unit checks
# (scripts/docker_images.sh installs mmdebstrap itself).
APT_PACKAGES=(
  docker.io busybox-static libcoap3-bin
  clang lld wasi-libc libclang-rt-14-dev-wasm32 libclang-rt-14-dev wabt make cmake
  gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm
  iproute2 iptables systemd
  chromium chromium-driver
  prometheus
  etcd-server etcd-client
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing Debian packages: ${missing[*]}"
  edgerm_apt_install "${missing[@]}"
fi

edgerm_python
echo "== installing Python packages (pip install -e '.[test]' into ${EDGERM_VENV:-$PYTHON})"
"$PYTHON" -m pip install -q --disable-pip-version-check -e '.[test]'

echo "== lint: ruff and mypy"
"$PYTHON" -m ruff check .
"$PYTHON" -m mypy

echo "== building the example and conformance WASM tasks (shared by several test folders)"
make -s -C examples/wasm
make -s -C tests/firmware/conformance

# Most tests wait on real time (leases, retransmissions, processes), so three workers on two
# cores cut the wall time to about a third; tests sharing machine-wide state stay on one worker
# (tests/conftest.py). EDGERM_TEST_WORKERS=0 runs them all in this process.
workers="${EDGERM_TEST_WORKERS:-3}"
echo "== tests (${workers} workers)"
if [ "$workers" = 0 ]; then
  exec "$PYTHON" -m pytest "$@"
fi
exec "$PYTHON" -m pytest -n "$workers" --dist loadgroup "$@"
