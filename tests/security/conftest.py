"""Fixtures of the on-path attacker tests: a real master process, a real agent that reaches it
only through an `OnPathRelay` (edgerm.testing_onpath), a framework over WebSocket, and what the
attacks compare: the master's state before and after (its ClusterState and its store), and
the recorded datagrams, opened by the test with the agent's secret (peek.py) to tell which call
each one was.

`scene` starts all of it; `scene.workload()` makes the agent send every kind of call (first
registration, Observe FETCH, heartbeats, status updates, publishes, module Block2 GETs, and a
re-registration after an agent restart), with distinctive task arguments, sensor values and
module bytes that `test_confidentiality.py` then looks for in clear."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio

from edgerm.coap.codes import RST, Code
from edgerm.coap.options import OSCORE, URI_PATH
from edgerm.testing_onpath import Datagram, OnPathRelay
from edgerm.wire import DecodeError, decode, pb
from edgerm_cli.listing import fetch_state
from edgerm_master.testing_io import Framework, MasterProcess, open_framework

from .agents import (
    AGENT_TOKEN,
    KINDS,
    SECRET_ARG,
    AgentHandle,
    Kind,
    c_kind,
    micropython_kind,
    python_kind,
)
from .peek import Opened, Peek

TS = pb.TaskState
OPERATOR_TOKEN = "operator-token"

# Agents heartbeat every 200 ms; an attack holds the agent's datagrams back for a few seconds
# at most, so 100 missed intervals (20 s) keep it from going UNREACHABLE meanwhile (a test
# that cuts it on purpose checks that it comes back).
MASTER_FLAGS = ("--unreachable-after-missed", "100", "--lost-after-s", "120")


@pytest.fixture(scope="session", params=KINDS)
def kind(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Kind:
    """Each kind of agent in turn (agents.py), its task modules built once."""
    if request.param == "python":
        return python_kind()
    if request.param == "c":
        return c_kind()
    return micropython_kind(tmp_path_factory.mktemp("micropython"))


def request_kind(opened: Opened) -> str:
    """What an opened agent request was: "observe", "module_get", or the AgentCall's kind
    ("register", "heartbeat", "status", "publish", "module")."""
    path = opened.inner.opts(URI_PATH)
    if path[:1] == [b"c"]:
        return "observe"
    if path[:1] == [b"m"]:
        return "module_get"
    try:
        call = decode(pb.AgentCall, opened.inner.payload)
    except DecodeError:
        return "undecodable"
    return call.WhichOneof("call") or "empty"


def first_registration(d: Datagram) -> bool:
    m = d.message
    if m is None or m.opt(OSCORE) is not None or m.code != Code.POST:
        return False
    try:
        call = decode(pb.AgentCall, m.payload)
    except DecodeError:
        return False
    return call.WhichOneof("call") == "register" and not call.agent_id


@dataclass
class Scene:
    """One master, one agent behind the on-path relay, one framework."""

    tmp: Path
    master: MasterProcess
    relay: OnPathRelay
    agent: AgentHandle
    kind: Kind
    nursery: trio.Nursery
    sha: dict[str, bytes] = field(default_factory=dict)
    launched: list[str] = field(default_factory=list)
    spin_id: str = ""
    fw: Framework = field(init=False)
    _fw_scope: trio.CancelScope | None = None

    async def open_framework(self) -> Framework:
        """Subscribe a framework (failing over into the previous one, if any)."""
        old = getattr(self, "fw", None)
        fid, secret = (old.fw.framework_id, old.fw.framework_secret) if old else ("", b"")
        self.fw, self._fw_scope = await self.nursery.start(self._run_framework, fid, secret)
        return self.fw

    async def _run_framework(self, fid: str, secret: bytes, *,
                             task_status: trio.TaskStatus[tuple[Framework, trio.CancelScope]]
                             = trio.TASK_STATUS_IGNORED) -> None:
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as n:
                f = await open_framework(n, self.master.ws, fid, secret)
                task_status.started((f, scope))
                await trio.sleep_forever()

    def close_framework(self) -> None:
        """Close the framework's connection (before the master goes away under it)."""
        if self._fw_scope is not None:
            self._fw_scope.cancel()
            self._fw_scope = None

    async def restart_master(self) -> None:
        """SIGKILL the master and start it again on its ports and store; the framework
        fails over into its id at the new one and reconciles its tasks."""
        self.close_framework()
        await trio.to_thread.run_sync(self.master.restart)
        await self.open_framework()
        await self.fw.send(self.fw.fw.reconcile(self.launched))

    # -------------------------------------------------------------------------------------
    # The master's state

    async def cluster_state(self) -> pb.ClusterState:
        host, port = self.master.ws
        return await fetch_state(f"ws://{host}:{port}", OPERATOR_TOKEN, 10.0)

    def store_rows(self) -> dict[str, list[dict[str, Any]]]:
        """Every row of every table of the master's SQLite store (read-only, beside it)."""
        path = Path(self.master.data_dir) / "master.sqlite3"
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        db.row_factory = sqlite3.Row
        try:
            tables = [r[0] for r in db.execute(
                "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
            return {t: sorted((dict(r) for r in db.execute(f"SELECT * FROM {t}")), key=repr)
                    for t in tables if not t.startswith("sqlite_")}
        finally:
            db.close()

    async def settled(self, timeout: float = 20.0) -> None:
        """Wait until the store holds no update the framework has yet to acknowledge and no
        command the agent has yet to acknowledge: nothing legitimate is under way."""
        rows: dict[str, list[dict[str, Any]]] = {}
        with trio.move_on_after(timeout):
            while True:
                rows = self.store_rows()
                if not rows.get("updates") and not rows.get("commands"):
                    return
                await trio.sleep(0.05)
        raise AssertionError(f"still under way after {timeout} s: updates {rows.get('updates')}"
                             f", commands {rows.get('commands')}\n{self.agent.log()}")

    async def snapshot(self, settle: bool = True) -> dict[str, Any]:
        """What must not change under an attack: the ClusterState without clocks and offer
        ids, and every row of the store. Before an attack (`settle`) it first waits until
        nothing legitimate is under way; after it, it takes what is there."""
        if settle:
            await self.settled()
        st = await self.cluster_state()
        return {
            "agents": sorted((a.agent_id, a.name, a.state, a.total.SerializeToString(),
                              a.used.SerializeToString(), a.transport) for a in st.agents),
            "tasks": sorted((t.task_id, t.framework_id, t.agent_id, t.state, t.reason,
                             t.message) for t in st.tasks),
            # (Offers come and go as the allocator runs; that none names an agent the master
            # does not show is what an attack must not change.)
            "offers_of_unknown_agents": sorted({o.agent_id for o in st.offers}
                                               - {a.agent_id for a in st.agents}),
            "frameworks": sorted((f.framework_id, f.tasks) for f in st.frameworks),
            "store": self.store_rows(),
        }

    def agent_secret(self) -> tuple[int, bytes]:
        """The agent's id and secret, from the master's store (the first agent admitted:
        an attack that made the master admit another one must not change whom we read)."""
        rows = sorted(self.store_rows()["agents"], key=lambda r: r["id"])
        assert rows, "no agent in the store"
        return int(rows[0]["id"]), bytes(rows[0]["secret"])

    def peek(self) -> Peek:
        agent_id, secret = self.agent_secret()
        return Peek(secret, agent_id)

    # -------------------------------------------------------------------------------------
    # The recording

    def calls(self, since: int = 0) -> list[tuple[str, Datagram, Opened | None]]:
        """The agent's genuine requests from `since` on, each with its kind ("first_register"
        for the plain one) and, when protected, opened."""
        peek = self.peek()
        out: list[tuple[str, Datagram, Opened | None]] = []
        for d in self.relay.requests(since):
            if first_registration(d):
                out.append(("first_register", d, None))
                continue
            opened = peek.request(d.data)
            out.append((request_kind(opened) if opened else "unprotected", d, opened))
        return out

    def answer_opened(self, request: Datagram, answer: Datagram | None = None
                      ) -> pb.AgentReply | None:
        """The master's protected answer to `request`, opened and decoded (None when there is
        none or it does not open)."""
        answer = answer or self.relay.answer_to(request)
        if answer is None:
            return None
        opened = self.peek().response(answer.data, request.data)
        if opened is None:
            return None
        try:
            return decode(pb.AgentReply, opened.inner.payload)
        except DecodeError:
            return None

    async def agent_keeps_working(self, since: int, calls: int = 3,
                                  timeout: float = 15.0) -> None:
        """The agent's own requests after index `since` get protected answers that open and
        carry no error, `calls` of them, and its tasks are still where they were."""
        def good() -> int:
            n = 0
            for kind, d, _ in self.calls(since):
                if kind == "first_register":
                    raise AssertionError("the agent registered afresh: it lost its identity")
                reply = self.answer_opened(d)
                if reply is not None and not reply.HasField("error"):
                    n += 1
            return n
        try:
            await self.relay.wait_for(lambda: good() >= calls, timeout)
        except trio.TooSlowError:
            raise AssertionError(f"the agent's calls after #{since} did not succeed: "
                                 f"{self.describe(since)}\n{self.agent.log()}") from None

    def describe(self, since: int = 0) -> str:
        lines = []
        for d in self.relay.recorded[since:]:
            m = d.message
            what = "?" if m is None else (f"{m.mtype}/{m.code >> 5}.{m.code & 31:02d} "
                                         f"mid={m.mid} oscore={m.opt(OSCORE)!r}")
            lines.append(f"#{d.index} {d.direction} {d.source} {what} {len(d.data)}B")
        return "\n".join(lines[-40:])

    # -------------------------------------------------------------------------------------
    # Driving it

    async def registered(self, timeout: float = 15.0) -> int:
        """Wait until the master shows the agent (and the relay saw it confirm its key with
        a protected call that was answered); its id."""
        with trio.move_on_after(timeout):
            while True:
                st = await self.cluster_state()
                if st.agents and st.agents[0].state == "active":
                    return int(st.agents[0].agent_id)
                await trio.sleep(0.1)
        raise AssertionError(f"the agent is not shown active after {timeout} s:\n"
                             f"{self.describe()}\n{self.agent.log()}")

    async def workload(self) -> None:
        """Every kind of agent call, with the secret values: modules (hello and sampler, with
        the pattern) fetched by Block2 GETs, hello's secret argument published back, the
        probe's secret reading published three times, status updates of each; then the agent
        restarts (SIGKILL) and re-registers, and a task that spins is left RUNNING."""
        await self.registered()
        for name in ("hello", "sampler", "spin"):
            self.sha[name] = await self.upload(name)

        await self.launch("hello", "hello", SECRET_ARG)
        st = await self.fw.wait_state("hello", TS.FINISHED, TS.FAILED, TS.ERROR)
        assert st.state == TS.FINISHED, (st, self.agent.log())
        await self.launch("sampler", "sampler", *self.kind.sampler_args, devices=("probe",))
        st = await self.fw.wait_state("sampler", TS.FINISHED, TS.FAILED, TS.ERROR)
        assert st.state == TS.FINISHED, (st, self.agent.log())
        await self.fw.wait_for(lambda: [o.data for o in self.fw.fw.outputs
                                        if o.task_id == "sampler"] == [self.kind.reading] * 3)
        assert [o.data for o in self.fw.fw.outputs if o.task_id == "hello"] == \
            [SECRET_ARG.encode()]
        await self.restart_agent()
        await self.start_spin()

    async def start_spin(self) -> str:
        """Launch a task that runs until killed; wait until it runs."""
        self.spin_id = f"spin{len(self.launched)}"
        await self.launch(self.spin_id, "spin")
        await self.fw.wait_state(self.spin_id, TS.RUNNING)
        return self.spin_id

    async def upload(self, module: str) -> bytes:
        """Upload one of the kind's task modules; its sha256."""
        data = self.kind.modules[module]
        await self.fw.send(self.fw.fw.upload(data, self.kind.module_format))
        sha = hashlib.sha256(data).digest()
        await self.fw.wait_for(lambda: any(e.WhichOneof("event") == "module_stored"
                                           and e.module_stored.sha256 == sha
                                           for e in self.fw.fw.events))
        return sha

    async def launch(self, task_id: str, module: str, *args: str,
                     devices: tuple[str, ...] = ()) -> None:
        """Launch `task_id` running `module`; accepted by the master (an offer that was being
        rescinded as the framework took it is refused: then again with a fresh one)."""
        if module not in self.sha:
            self.sha[module] = await self.upload(module)
        self.launched.append(task_id)
        spec = self.kind.spec(module, self.sha[module], *args, devices=devices)
        for _ in range(5):
            seen = len(self.fw.fw.events)

            def answered(seen: int = seen) -> str | None:
                for e in self.fw.fw.events[seen:]:
                    kind = e.WhichOneof("event")
                    if kind == "accepted" or (kind == "update" and e.update.task_id == task_id):
                        return "accepted"
                    if kind == "error":
                        return "error"
                return None
            await self.fw.launch(task_id, spec)
            if await self.fw.wait_for(answered) == "accepted":
                return
            await trio.sleep(0.2)
        raise AssertionError(f"the master refused every launch of {task_id}")

    async def restart_agent(self) -> None:
        """SIGKILL the agent and start it again from its state; wait until it re-registered
        (a protected `register` answered without error) and called again after it. (A
        running spin task is killed first: a WASM task does not survive its agent, and its
        end arriving later would be a change no attack made.)"""
        if self.spin_running():
            await self.fw.send(self.fw.fw.kill(self.spin_id))
            await self.fw.wait_state(self.spin_id, TS.KILLED, TS.FAILED)
        mark = len(self.relay.recorded)
        self.agent.kill()
        self.agent.start()
        await self.reregistered(mark)

    async def reregistered(self, mark: int) -> None:
        """Wait until the agent re-registered after index `mark` (a protected `register`
        answered with `registered`) and called again after that."""
        def reregistered() -> bool:
            calls = self.calls(mark)
            for i, (kind, d, _) in enumerate(calls):
                if kind == "register":
                    reply = self.answer_opened(d)
                    if reply is not None and reply.HasField("registered"):
                        return any(self.answer_opened(later) is not None
                                   for _, later, _ in calls[i + 1:])
            return False
        try:
            await self.relay.wait_for(reregistered, 15.0)
        except trio.TooSlowError:
            raise AssertionError(f"no re-registration after #{mark}:\n"
                                 f"{self.describe(mark)}\n{self.agent.log()}") from None

    def spin_running(self) -> bool:
        return bool(self.spin_id) and self.fw.states(self.spin_id)[-1:] == [TS.RUNNING]


def is_plain_refusal(answer: Datagram | None) -> bool:
    """A plain (unprotected) error answer — 4.01 or 4.02 from OSCORE, or another 4.xx/5.xx
    when the flip turned the request into a plain one that the master routes and refuses
    (no OSCORE option: 4.04) —, a Reset (a message the master could not parse, RFC 7252
    §4.2), or none at all."""
    if answer is None:
        return True
    m = answer.message
    if m is not None and m.mtype == RST and m.code == 0:
        return True
    return m is not None and m.opt(OSCORE) is None and m.code >= 0x80


@pytest.fixture
async def scene(tmp_path: Path, kind: Kind) -> AsyncIterator[Scene]:
    master = MasterProcess(str(tmp_path / "master"), agent_token=AGENT_TOKEN, heartbeat_ms=200,
                           extra=MASTER_FLAGS)
    master.start()
    agent: AgentHandle | None = None
    try:
        async with trio.open_nursery() as nursery:
            relay = OnPathRelay(master.coap)
            port = await nursery.start(relay.run)
            agent = kind.make_agent(tmp_path / "agent", port)
            agent.start()
            scene = Scene(tmp_path, master, relay, agent, kind, nursery)
            await scene.open_framework()
            yield scene
            nursery.cancel_scope.cancel()
    finally:
        if agent is not None:
            agent.stop()
            print(f"--- agent log ---\n{agent.log()}")
        master.stop()
        with open(master.log_path, "rb") as f:
            print(f"--- master log ---\n{f.read()[-4000:].decode(errors='replace')}")
