"""The parties of the system tests: agent processes started inside the `edge` namespace, the
master inside `core`, and a framework (the real SDK, its sockets in `core`) whose events are
recorded for the assertions."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from edgerm import framework as sdk
from edgerm.wire import pb
from edgerm_master.testing_io import MasterProcess, end_process

from .netns import CORE_IP, Topology, entered

TS = pb.TaskState
AGENT_TOKEN = "agent-token"
FRAMEWORK_TOKEN = "framework-token"


def start_master(topo: Topology, data_dir: Path, heartbeat_ms: int,
                 *extra: str) -> MasterProcess:
    """`python -m edgerm_master --host 10.77.0.1` forked from a thread that is inside `core`
    (the child inherits the namespace). Blocking: call it through `trio.to_thread`."""
    master = MasterProcess(str(data_dir), agent_token=AGENT_TOKEN,
                           framework_token=FRAMEWORK_TOKEN, heartbeat_ms=heartbeat_ms,
                           host=CORE_IP, extra=["--allocation-interval-s", "0.2", *extra])
    with entered(topo.core):
        master.start()
    return master


class EdgeProcess:
    """A process started with `ip netns exec EDGE …` (or another namespace `ns`), its output in
    a log file."""

    def __init__(self, topo: Topology, name: str, argv: Sequence[str], log_path: Path,
                 cwd: Path | None = None, env: dict[str, str] | None = None,
                 ns: str | None = None) -> None:
        self.topo = topo
        self.env = None if env is None else {**os.environ, **env}
        self.name = name
        self.argv = topo.argv(ns or topo.edge, *argv)
        self.log_path = log_path
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> EdgeProcess:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                         cwd=self.cwd, env=self.env)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """SIGINT (a clean stop), SIGKILL after 5 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        end_process(self.proc, signal.SIGINT, timeout=5)

    def kill(self) -> None:
        """SIGKILL (a power cut: nothing flushed on the way down), reaped."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def log(self, tail: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except FileNotFoundError:
            return ""


def linux_agent(topo: Topology, work: Path, url: str, name: str, *,
                call_timeout_s: float = 5.0, backoff_max_s: float = 1.0,
                extra: str = "") -> EdgeProcess:
    """`python -m edgerm_agent -v CONFIG` (WASM executor) dialling `url` from the edge;
    `extra` is appended to its TOML (e.g. a `[gateway]` section)."""
    work.mkdir(parents=True, exist_ok=True)
    config = work / "agent.toml"
    config.write_text(f"""
name = "{name}"
work_dir = "{work / 'state'}"
[master]
url = "{url}"
token = "{AGENT_TOKEN}"
[resources]
cpus = 2
mem_mb = 512
[executors]
enabled = ["wasm"]
[timing]
call_timeout_s = {call_timeout_s}
backoff_initial_s = 0.1
backoff_max_s = {backoff_max_s}
heartbeat_s = 0.5
{extra}""")
    return EdgeProcess(topo, name, [sys.executable, "-m", "edgerm_agent", "-v", str(config)],
                       work / "agent.log")


def micro_agent(topo: Topology, work: Path, build: Path, master_coap: tuple[str, int],
                name: str, *, ack_timeout_ms: int = 300, max_retransmit: int = 3,
                heap: str = "64k", ns: str | None = None) -> EdgeProcess:
    """The MicroPython agent (.mpy build, `micropython -X heapsize=64k`) in the edge."""
    work.mkdir(parents=True, exist_ok=True)
    config = {
        "master": f"{master_coap[0]}:{master_coap[1]}", "token": AGENT_TOKEN, "name": name,
        "heartbeat_ms": 500, "ack_timeout_ms": ack_timeout_ms, "max_retransmit": max_retransmit,
        "log_level": 2, "block_szx": 4, "cpus": 1.0, "mem_mb": 0.0625,
        "state": str(work / "state.cbor"), "cache": str(work / "cache"),
        "sensors": [{"name": "temp", "unit": "Cel", "sim": [20.5, 21.0, 21.5]}],
    }
    (work / "config.json").write_text(json.dumps(config))
    (work / "cache").mkdir(exist_ok=True)
    argv = ["micropython", "-X", f"heapsize={heap}", str(build / "main.py"),
            str(work / "config.json")]
    return EdgeProcess(topo, name, argv, work / "agent.log", cwd=work,
                       env={"MICROPYPATH": f"{build}:.frozen"}, ns=ns)


def posix_agent(topo: Topology, binary: Path, work: Path, master: tuple[str, int], name: str,
                *, ns: str | None = None) -> EdgeProcess:
    """The POSIX build of the C agent (firmware/zephyr), its JSON-line events in its log."""
    work.mkdir(parents=True, exist_ok=True)
    argv = [str(binary), "--master", f"{master[0]}:{master[1]}", "--token", AGENT_TOKEN,
            "--state", str(work / "agent.state"), "--name", name, "--sensor", "temp=21.5:Cel"]
    return EdgeProcess(topo, name, argv, work / "agent.log", ns=ns)


# ---------------------------------------------------------------------------------------------
# The framework


class Observer:
    """Consumes a `Framework`'s events and keeps what a test asserts on: every status update
    and every output as delivered to the user, in arrival order."""

    def __init__(self, fw: sdk.Framework) -> None:
        self.fw = fw
        self.updates: list[pb.TaskStatus] = []
        self.outputs: list[sdk.OutputEvent] = []
        self.lost_connections: list[str] = []
        self.errors: list[sdk.ErrorEvent] = []
        self.timeline: list[tuple[float, str]] = []   # (trio time, what), for failure reports
        self._changed = trio.Event()

    async def run(self) -> None:
        async for ev in self.fw.events():
            if isinstance(ev, sdk.UpdateEvent):
                self.updates.append(ev.status)
                self.timeline.append((trio.current_time(),
                                      f"{ev.task_id} {sdk.state_name(ev.state)}"))
            elif isinstance(ev, sdk.OutputEvent):
                self.outputs.append(ev)
                self.timeline.append((trio.current_time(), f"{ev.task_id} output {ev.seq}"))
            elif isinstance(ev, sdk.ConnectionLost):
                self.lost_connections.append(ev.reason)
            elif isinstance(ev, sdk.ErrorEvent):
                self.errors.append(ev)
            self._changed.set()
            self._changed = trio.Event()

    # -- what was seen

    def states(self, task_id: str) -> list[int]:
        return [u.state for u in self.updates if u.task_id == task_id]

    def state_names(self, task_id: str) -> list[str]:
        return [sdk.state_name(s) for s in self.states(task_id)]

    def last(self, task_id: str) -> pb.TaskStatus | None:
        ups = [u for u in self.updates if u.task_id == task_id]
        return ups[-1] if ups else None

    def data(self, task_id: str) -> list[bytes]:
        return [o.data for o in self.outputs if o.task_id == task_id]

    def seqs(self, task_id: str) -> list[int]:
        return [o.seq for o in self.outputs if o.task_id == task_id]

    def print_timeline(self) -> None:
        t0 = self.timeline[0][0] if self.timeline else 0.0
        for t, what in self.timeline:
            print(f"{t - t0:8.2f} s  {what}")

    def offer_from(self, agent_name: str, needs: sdk.Constraints | None = None
                   ) -> pb.Offer | None:
        return next((o for o in self.fw.offers.values() if o.agent_name == agent_name
                     and (needs is None or needs.match(o))), None)

    # -- waiting

    async def wait_for(self, predicate: Callable[[], Any], timeout: float,
                       what: Callable[[], str] | str = "") -> Any:
        """Wait for events until `predicate()` is truthy; fail with `what` (and the updates
        seen) after `timeout` seconds."""
        with trio.move_on_after(timeout):
            while not (result := predicate()):
                await self._changed.wait()
            return result
        detail = what() if callable(what) else what
        seen = {tid: self.state_names(tid) for tid in dict.fromkeys(u.task_id
                                                                    for u in self.updates)}
        raise AssertionError(f"timed out after {timeout} s waiting for {detail}; "
                             f"states seen: {seen}")

    async def offer(self, agent_name: str, timeout: float,
                    needs: sdk.Constraints | None = None) -> pb.Offer:
        """A live offer from `agent_name` (that matches `needs`)."""
        return await self.wait_for(  # type: ignore[no-any-return]
            lambda: self.offer_from(agent_name, needs), timeout,
            f"an offer from {agent_name} matching {needs}")

    async def wait_state(self, task_id: str, states: Sequence[int], timeout: float
                         ) -> pb.TaskStatus:
        def reached() -> pb.TaskStatus | None:
            last = self.last(task_id)
            return last if last is not None and last.state in states else None
        return await self.wait_for(  # type: ignore[no-any-return]
            reached, timeout, lambda: f"{task_id} in {[sdk.state_name(s) for s in states]}")

    async def wait_terminal(self, task_ids: Sequence[str], timeout: float) -> None:
        await self.wait_for(
            lambda: all(self.states(t) and self.states(t)[-1] in sdk.TERMINAL_STATES
                        for t in task_ids), timeout, f"{list(task_ids)} to end")


@asynccontextmanager
async def open_framework(master: MasterProcess, name: str = "system-test"
                         ) -> AsyncIterator[Observer]:
    """The real SDK subscribed to the master at its WebSocket address in `core` (the caller's
    Trio sockets must be made in `core`: the `core_sockets` fixture)."""
    host, port = master.ws
    async with sdk.Framework.connect(f"ws://{host}:{port}", name=name, token=FRAMEWORK_TOKEN,
                                     failover_timeout_s=120.0, call_timeout_s=20.0) as fw:
        obs = Observer(fw)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(obs.run)
            yield obs
            nursery.cancel_scope.cancel()


def wasm_spec(module: sdk.Module, *args: str) -> pb.TaskSpec:
    return sdk.wasm_task(module, args=args, resources=pb.Resources(cpus=0.1, mem_mb=4))


def micropython_spec(module: sdk.Module, *args: str, devices: Sequence[str] = ()
                     ) -> pb.TaskSpec:
    return sdk.micropython_task(module, args=args, resources=pb.Resources(
        cpus=0.1, devices=[pb.Device(name=d) for d in devices]))


__all__ = ["start_master", "EdgeProcess", "linux_agent", "micro_agent", "posix_agent", "Observer",
           "open_framework", "wasm_spec", "micropython_spec", "TS"]
