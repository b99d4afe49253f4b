"""Fixtures for the agent's tests: the example WASM modules (built with clang), a master
process, agent processes and a framework on loopback. The real Docker engine with its busybox
image is the session fixture `docker_engine` (tests/conftest.py)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgerm_agent.testing import BUSYBOX_IMAGE
from edgerm_master.testing_io import MasterProcess

REPO = Path(__file__).resolve().parents[2]
WASM_DIR = REPO / "examples" / "wasm"
IMAGE = BUSYBOX_IMAGE  # the private engine is the session fixture `docker_engine`


@pytest.fixture(scope="session")
def wasm_modules() -> dict[str, bytes]:
    """The example tasks, built by their Makefile."""
    subprocess.run(["make", "-s", "-C", str(WASM_DIR)], check=True)
    return {p.stem: p.read_bytes() for p in (WASM_DIR / "build").glob("*.wasm")}


@pytest.fixture
def master(tmp_path: Path) -> Iterator[MasterProcess]:
    m = MasterProcess(str(tmp_path / "master"), heartbeat_ms=200,
                      extra=["--unreachable-after-missed", "3", "--lost-after-s", "60"])
    m.start()
    try:
        yield m
    finally:
        m.stop()
