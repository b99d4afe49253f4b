"""Fixtures for the Zephyr agent's tests: the host builds under firmware/zephyr (its Makefile
fetches zcbor and wasm3 at build time and builds WAMR from the shared sources) and the example
WASM tasks.

Builds run once per session; a build failure fails the tests that need it (never a skip: every
tool used here is part of the project's test setup)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIRMWARE = ROOT / "firmware" / "zephyr"
BUILD = FIRMWARE / "build-host"
EXAMPLES = ROOT / "examples" / "wasm"
CONFORMANCE = ROOT / "tests" / "firmware" / "conformance"


# Every build in firmware/zephyr goes through this lock: under pytest-xdist two workers may
# build there at once (an orphaned cmake of one removing libvmlib.a under the other's ar), and
# a make that times out is killed with its whole process group, so no orphan keeps writing.
BUILD_LOCK = FIRMWARE / "build-host.lock"


def make(*targets: str, cwd: Path = FIRMWARE, timeout: float = 300,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run make (one at a time across processes); the result carries stdout+stderr in
    `.stdout`."""
    jobs = os.environ.get("EDGERM_MAKE_JOBS", "2")
    cmd = ["flock", str(BUILD_LOCK), "make", f"-j{jobs}", *targets]
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, **(env or {})},
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError(f"make {' '.join(targets)} took over {timeout:.0f} s "
                             f"(killed):\n{out[-4000:]}") from None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, None)


def must(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stdout[-4000:]
    return proc.stdout


@pytest.fixture(scope="session", params=["wasm3", "wamr"])
def posix_agent(request: pytest.FixtureRequest) -> Path:
    """The POSIX build of the agent with each WASM executor (wasm3 in child processes, WAMR on
    threads: chosen at build time), plus the example and conformance tasks it runs. WAMR is
    built from the shared sources (the Makefile's WAMR_DIR); without them this fails and says
    how to get them."""
    must(make(f"agent-{request.param}"))
    must(make(cwd=EXAMPLES))
    must(make(cwd=CONFORMANCE))
    return BUILD / ("edgerm-agent-posix" if request.param == "wasm3"
                    else "edgerm-agent-posix-wamr")
