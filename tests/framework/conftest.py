"""Fixtures for the framework SDK and CLI tests.

`fake_master`: a scripted stand-in for the master's framework and state resources, over a real
WebSocket on loopback.

It speaks the framework side of docs/protocol.md just far enough for SDK and CLI unit tests:
subscribe (token check, failover by framework id within a window), accept (answers `accepted`,
then optionally plays a task's life: STAGING, RUNNING, outputs, a final state, each update with a
uuid re-sent until acknowledged), upload (`module_stored`), kill, reconcile, decline, teardown,
and `/state`. Tests also push any event and drop the connection at will. The end-to-end tests use
the real master (`edgerm_master.testing_io.MasterProcess`); this one only makes the SDK testable
before and apart from it.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio
import trio_websocket

from edgerm.framework import (
    WASM,
    Constraints,
    Framework,
    Module,
    OffersEvent,
    OutputEvent,
    Subscribed,
    UpdateEvent,
    wasm_task,
)
from edgerm.wire import decode, encode, pb


@dataclass
class TaskScript:
    """How a launched task behaves: states after RUNNING, outputs published while running."""

    outputs: list[bytes] = field(default_factory=list)
    final: int = pb.FINISHED
    reason: int = pb.REASON_UNSPECIFIED
    message: str = ""
    exit_code: int = 0
    step_s: float = 0.01
    hold: bool = False          # stay RUNNING until killed


class FakeMaster:
    TaskScript = TaskScript

    def __init__(self, token: str = "fw-token", operator_token: str = "op-token",
                 heartbeat_interval_s: float = 0.0, failover_window_s: float = 5.0) -> None:
        self.token = token
        self.operator_token = operator_token
        self.heartbeat_interval_s = heartbeat_interval_s
        self.failover_window_s = failover_window_s
        self.port = 0
        self.calls: list[pb.FrameworkCall] = []
        self.acks: list[tuple[str, bytes]] = []
        self.subscribes: list[pb.Subscribe] = []
        self.state = pb.ClusterState(version="fake")
        self.script: Callable[[pb.TaskInfo], TaskScript] = lambda info: TaskScript()
        self.refuse_accept: pb.Error | None = None
        self.offers_on_subscribe: list[pb.Offer] = []   # pushed right after `subscribed`
        self.resend_unacked_after_s = 0.05
        self.ws: trio_websocket.WebSocketConnection | None = None
        self.framework_ids: dict[str, float | None] = {}   # id -> disconnected at (None: live)
        self.tasks: dict[str, pb.TaskStatus] = {}
        self.killed: set[str] = set()
        self._ids = itertools.count(1)
        self._uuids = itertools.count(1)
        self._unacked: dict[bytes, pb.TaskStatus] = {}
        self._output_seq: dict[str, int] = {}
        self._nursery: trio.Nursery | None = None
        self.call_received = trio.Event()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def serve(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                    ) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            server = await nursery.start(trio_websocket.serve_websocket, self._handle,
                                         "127.0.0.1", 0, None)
            self.port = server.port
            nursery.start_soon(self._resender)
            task_status.started()

    # -- test controls

    async def push(self, event: pb.FrameworkEvent) -> None:
        assert self.ws is not None, "no framework connected"
        await self.ws.send_message(encode(event))

    async def push_raw(self, data: bytes) -> None:
        assert self.ws is not None
        await self.ws.send_message(data)

    async def drop(self) -> None:
        """Close the framework's connection as a network failure would."""
        if self.ws is not None:
            await self.ws.aclose()

    def offer(self, offer_id: str = "", agent_id: int = 1, agent_name: str = "pi-1",
              cpus: float = 1.0, mem_mb: float = 256.0, devices: tuple[str, ...] = ("temp",),
              executors: tuple[int, ...] = (pb.WASM,),
              attributes: dict[str, str] | None = None) -> pb.Offer:
        offer = pb.Offer(offer_id=offer_id or f"o{next(self._ids)}", agent_id=agent_id,
                         agent_name=agent_name, executors=list(executors), expires_in_s=30)
        offer.resources.cpus = cpus
        offer.resources.mem_mb = mem_mb
        for d in devices:
            offer.resources.devices.add(name=d, kind=pb.SENSOR, shares=4)
        for k, v in (attributes or {"os": "linux"}).items():
            offer.attributes.add(name=k, text=v)
        return offer

    async def wait_for_call(self, kind: str, timeout: float = 5.0) -> pb.FrameworkCall:
        with trio.fail_after(timeout):
            while True:
                for call in self.calls:
                    if call.WhichOneof("call") == kind:
                        return call
                self.call_received = trio.Event()
                await self.call_received.wait()

    def calls_of(self, kind: str) -> list[pb.FrameworkCall]:
        return [c for c in self.calls if c.WhichOneof("call") == kind]

    # -- the resources

    async def _handle(self, request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept()
        try:
            if request.path == "/state":
                await self._state(ws)
            elif request.path == "/framework":
                await self._framework(ws)
            else:
                await ws.aclose(code=1008, reason="unknown path")
        except trio_websocket.ConnectionClosed:
            pass

    async def _state(self, ws: trio_websocket.WebSocketConnection) -> None:
        req = decode(pb.StateRequest, await ws.get_message())
        if req.token != self.operator_token:
            await ws.send_message(encode(pb.Error(code=pb.UNAUTHENTICATED,
                                                  message="wrong operator token")))
        else:
            await ws.send_message(encode(self.state))
        await ws.aclose()

    async def _framework(self, ws: trio_websocket.WebSocketConnection) -> None:
        call = decode(pb.FrameworkCall, await ws.get_message())
        sub = call.subscribe
        self.subscribes.append(sub)
        if sub.token != self.token:
            await ws.send_message(encode(pb.FrameworkEvent(call_id=call.call_id, error=pb.Error(
                code=pb.UNAUTHENTICATED, message="wrong token"))))
            await ws.aclose()
            return
        fid = call.framework_id
        if fid:
            gone_at = self.framework_ids.get(fid, 0.0)
            if fid not in self.framework_ids or (
                    gone_at is not None and trio.current_time() - gone_at > self.failover_window_s):
                await ws.send_message(encode(pb.FrameworkEvent(
                    call_id=call.call_id, error=pb.Error(code=pb.NOT_FOUND,
                                                         message="unknown framework"))))
                await ws.aclose()
                return
        else:
            fid = f"fw-{next(self._ids)}"
        self.framework_ids[fid] = None
        self.ws = ws
        subscribed = pb.Subscribed(framework_id=fid, weight=1.0,
                                   heartbeat_interval_s=self.heartbeat_interval_s)
        await ws.send_message(encode(pb.FrameworkEvent(call_id=call.call_id,
                                                       subscribed=subscribed)))
        if self.offers_on_subscribe:
            await ws.send_message(encode(pb.FrameworkEvent(offers=pb.Offers(
                offers=self.offers_on_subscribe))))
        try:
            while True:
                call = decode(pb.FrameworkCall, await ws.get_message())
                self.calls.append(call)
                self.call_received.set()
                await self._on_call(ws, call)
        finally:
            if self.ws is ws:
                self.ws = None
            self.framework_ids[fid] = trio.current_time()

    async def _on_call(self, ws: trio_websocket.WebSocketConnection,
                       call: pb.FrameworkCall) -> None:
        kind = call.WhichOneof("call")
        if kind == "accept":
            if self.refuse_accept is not None:
                await ws.send_message(encode(pb.FrameworkEvent(call_id=call.call_id,
                                                               error=self.refuse_accept)))
                return
            ids = [t.task_id for t in call.accept.launch]
            await ws.send_message(encode(pb.FrameworkEvent(
                call_id=call.call_id, accepted=pb.Accepted(task_ids=ids))))
            assert self._nursery is not None
            for info in call.accept.launch:
                self._nursery.start_soon(self._play, info, self.script(info))
        elif kind == "upload":
            data = call.upload.data
            await ws.send_message(encode(pb.FrameworkEvent(
                call_id=call.call_id, module_stored=pb.ModuleStored(
                    sha256=hashlib.sha256(data).digest(), size=len(data),
                    format=call.upload.format))))
        elif kind == "acknowledge":
            self.acks.append((call.acknowledge.task_id, call.acknowledge.uuid))
            self._unacked.pop(call.acknowledge.uuid, None)
        elif kind == "kill":
            self.killed.add(call.kill.task_id)
        elif kind == "reconcile":
            ids = list(call.reconcile.task_ids) or list(self.tasks)
            for task_id in ids:
                status = pb.TaskStatus()
                if task_id in self.tasks:
                    status.CopyFrom(self.tasks[task_id])
                    status.uuid = b""
                    status.reason = pb.RECONCILIATION
                else:
                    status.task_id, status.state = task_id, pb.LOST
                    status.reason = pb.TASK_UNKNOWN
                # Answers carry the reconcile's call_id, as the real master's do.
                await ws.send_message(encode(pb.FrameworkEvent(call_id=call.call_id,
                                                               update=status)))

    async def _status(self, task_id: str, state: int, reason: int = 0, message: str = "",
                      exit_code: int = 0) -> None:
        status = pb.TaskStatus(task_id=task_id, state=state, reason=reason, message=message,
                               agent_id=1, uuid=next(self._uuids).to_bytes(16, "big"),
                               timestamp=1_700_000_000.0, exit_code=exit_code)
        self.tasks[task_id] = status
        self._unacked[status.uuid] = status
        await self._send_soft(pb.FrameworkEvent(update=status))

    async def _send_soft(self, event: pb.FrameworkEvent) -> None:
        # The real master keeps events for a disconnected framework; here they are dropped and
        # only updates come back (by the re-send loop), which is what the tests check.
        if self.ws is not None:
            try:
                await self.ws.send_message(encode(event))
            except trio_websocket.ConnectionClosed:
                pass

    async def _play(self, info: pb.TaskInfo, script: TaskScript) -> None:
        task_id = info.task_id
        await self._status(task_id, pb.STAGING)
        await trio.sleep(script.step_s)
        await self._status(task_id, pb.RUNNING)
        for data in script.outputs:
            await trio.sleep(script.step_s)
            seq = self._output_seq[task_id] = self._output_seq.get(task_id, 0) + 1
            await self._send_soft(pb.FrameworkEvent(output=pb.TaskOutput(
                task_id=task_id, seq=seq, data=data)))
        while script.hold and task_id not in self.killed:
            await trio.sleep(script.step_s)
        await trio.sleep(script.step_s)
        if task_id in self.killed:
            await self._status(task_id, pb.KILLED, pb.KILL_REQUESTED)
        else:
            await self._status(task_id, script.final, script.reason, script.message,
                               script.exit_code)

    async def _resender(self) -> None:
        while True:
            await trio.sleep(self.resend_unacked_after_s)
            for status in list(self._unacked.values()):
                await self._send_soft(pb.FrameworkEvent(update=status))


@pytest.fixture
async def fake_master(nursery: trio.Nursery) -> FakeMaster:
    master = FakeMaster()
    await nursery.start(master.serve)
    return master


# ---------------------------------------------------------------------------------------------
# End to end: the real master and a real Linux agent, as processes


ROOT = Path(__file__).resolve().parents[2]
WASM_DIR = ROOT / "examples" / "wasm"
AGENT_TOKEN, FRAMEWORK_TOKEN, OPERATOR_TOKEN = "e2e-agent", "e2e-framework", "e2e-operator"


@dataclass
class RealCluster:
    """A master (`MasterProcess`) and two Linux agents with the WASM executor: `agent_name`
    with simulated sensors `temp` and `humidity`, `second_agent` with `humidity` only."""

    master: Any
    agents: list[subprocess.Popen[bytes]]
    agent_name: str
    second_agent: str
    home: Path

    @property
    def url(self) -> str:
        host, port = self.master.ws
        return f"ws://{host}:{port}"

    def connect(self, **kw: Any) -> Any:
        from edgerm.framework import Framework
        opts: dict[str, Any] = {"name": "e2e", "token": FRAMEWORK_TOKEN, "call_timeout_s": 10.0}
        opts.update(kw)
        return Framework.connect(self.url, **opts)

    def env(self) -> dict[str, str]:
        return dict(os.environ, EDGERM_MASTER=self.url, EDGERM_TOKEN=FRAMEWORK_TOKEN,
                    EDGERM_OPERATOR_TOKEN=OPERATOR_TOKEN, EDGERM_HOME=str(self.home))


@pytest.fixture(scope="session")
def wasm_modules() -> dict[str, bytes]:
    """The example WASM tasks, built with their Makefile (clang + lld)."""
    if shutil.which("clang") is None:
        pytest.fail("clang is needed to build examples/wasm (apt-get install clang lld)")
    subprocess.run(["make", "-s", "-C", str(WASM_DIR)], check=True)
    return {p.stem: p.read_bytes() for p in (WASM_DIR / "build").glob("*.wasm")}


def _agent_toml(url: str, work: Path, name: str, sensors: tuple[str, ...]) -> str:
    from edgerm_cli.cluster_processes import ClusterSettings, linux_agent_toml
    settings = ClusterSettings()
    known = {"temp": ("Cel", 21.0, 0.5, 30.0), "humidity": ("%RH", 40.0, 2.0, 30.0)}
    settings.sensors = {s: known[s] for s in sensors}
    return linux_agent_toml(name, url, AGENT_TOKEN, work, ["wasm"], settings)


async def wait_for_agent(url: str, name: str, timeout: float = 30.0) -> None:
    from edgerm_cli.listing import StateError, fetch_state
    with trio.fail_after(timeout):
        while True:
            try:
                state = await fetch_state(url, OPERATOR_TOKEN)
                if any(a.name == name and a.state == "active" for a in state.agents):
                    return
            except StateError:
                pass
            await trio.sleep(0.1)


async def wait_for_agents(url: str, names: list[str]) -> None:
    for name in names:
        await wait_for_agent(url, name)


@pytest.fixture(scope="module")
def real_cluster(tmp_path_factory: pytest.TempPathFactory,
                 wasm_modules: dict[str, bytes]) -> Iterator[RealCluster]:
    from edgerm_master.testing_io import MasterProcess

    base = tmp_path_factory.mktemp("cluster")
    master = MasterProcess(str(base / "master"), agent_token=AGENT_TOKEN,
                           framework_token=FRAMEWORK_TOKEN, operator_token=OPERATOR_TOKEN,
                           heartbeat_ms=300).start()
    host, port = master.ws
    agents: list[subprocess.Popen[bytes]] = []
    logs: list[Path] = []
    names = {"linux-e2e": ("temp", "humidity"), "linux-e2e-2": ("humidity",)}
    try:
        for name, sensors in names.items():
            work = base / name
            work.mkdir()
            config = work / "agent.toml"
            config.write_text(_agent_toml(f"ws://{host}:{port}", work, name, sensors))
            logs.append(base / f"{name}.log")
            with open(logs[-1], "wb") as out:
                agents.append(subprocess.Popen(
                    [sys.executable, "-m", "edgerm_agent", str(config)],
                    stdout=out, stderr=subprocess.STDOUT))
        cluster = RealCluster(master, agents, "linux-e2e", "linux-e2e-2", base)
        trio.run(wait_for_agents, cluster.url, list(names))
        yield cluster
    finally:
        for agent in agents:
            agent.send_signal(signal.SIGTERM)
        for agent in agents:
            try:
                agent.wait(10)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait()
        master.stop()
        for log in logs:
            print(f"--- {log} ---\n" + log.read_text(errors="replace")[-2000:])
        print(f"--- master log ({master.log_path}) ---\n"
              + Path(master.log_path).read_text(errors="replace")[-3000:])


class TcpRelay:
    """A TCP relay on loopback in front of the master; `cut()` drops every connection through
    it at once, as a failing network would (the SDK sees its WebSocket die)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._scopes: set[trio.CancelScope] = set()

    async def serve(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                    ) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, client: trio.SocketStream) -> None:
        with trio.CancelScope() as scope:
            self._scopes.add(scope)
            try:
                server = await trio.open_tcp_stream(*self.target)
                async with client, server, trio.open_nursery() as nursery:
                    nursery.start_soon(self._pipe, client, server)
                    nursery.start_soon(self._pipe, server, client)
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            finally:
                self._scopes.discard(scope)

    @staticmethod
    async def _pipe(src: trio.SocketStream, dst: trio.SocketStream) -> None:
        while data := await src.receive_some(65536):
            await dst.send_all(data)
        raise trio.BrokenResourceError("closed")

    def cut(self) -> None:
        for scope in list(self._scopes):
            scope.cancel()


# ---------------------------------------------------------------------------------------------
# The private Docker engine is the session fixture `docker_engine` (tests/conftest.py).


# ---------------------------------------------------------------------------------------------
# A task running across a failover (test_e2e_follow_leader, test_e2e_ha_failover)


SAMPLER_WANT = Constraints(cpus=0.1, mem_mb=16, devices=["temp"], executors=[WASM])


async def launch_sampler(fw: Framework, module: Module, task_id: str = "s") -> None:
    """Launch the sampler as `task_id` (a `temp` reading every 50 ms, 100000 of them: it runs
    through the test) on the first offer that fits `SAMPLER_WANT`."""
    async for ev in fw.events():
        if isinstance(ev, OffersEvent) and any(SAMPLER_WANT.match(o) for o in ev.offers):
            offer = next(o for o in ev.offers if SAMPLER_WANT.match(o))
            await fw.launch(offer, task_id, wasm_task(
                module, name=task_id, resources=SAMPLER_WANT.resources(offer),
                args=["temp", "100000", "50"]))
            return


async def collect_outputs(fw: Framework, seqs: list[int], until: int,
                          task_id: str = "s") -> None:
    """Append the sequence number of each output of `task_id` to `seqs` until it holds
    `until` of them."""
    async for ev in fw.events():
        if isinstance(ev, OutputEvent) and ev.task_id == task_id:
            seqs.append(ev.seq)
            if len(seqs) >= until:
                return


async def failed_over(fw: Framework) -> bool:
    """Wait for the framework to be subscribed again by failing over into its id."""
    async for ev in fw.events():
        if isinstance(ev, Subscribed) and ev.failover:
            return True
    return False


async def kill_and_wait(fw: Framework, task_id: str = "s") -> pb.TaskStatus:
    """Kill `task_id`; its final status."""
    await fw.kill(task_id)
    async for ev in fw.events():
        if isinstance(ev, UpdateEvent) and ev.task_id == task_id and ev.terminal:
            return ev.status
    raise AssertionError(f"the events ended before {task_id} did")
