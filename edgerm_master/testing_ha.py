"""Test helpers for several masters sharing one etcd store (docs/ha.md): the masters as real
processes, and agents and frameworks that follow the leader and count everything.

  `MasterSet` — N `MasterProcess`es with the etcd backend on one cluster: `leader()` (the one
  whose operator state answers), `kill(i)` / `stop(i)` / `cont(i)` (SIGKILL, SIGSTOP,
  SIGCONT), `restart(i)` (what a supervisor does: the same ports and name).
  `HaAgent` — a `ScriptedAgent` over CoAP that moves to the master a refusal names (or the next
  one on a timeout) and finishes every task it launches at once; `executions` counts every
  launch it executed, per task id (the id travels as the task's first argument).
  `HaFramework` — a framework over WebSocket that launches a list of task ids, follows the
  leader (re-subscribing with its id and secret), acknowledges every update and keeps what it
  was told: `accepted` (launches the master acknowledged), `states` (per task, in arrival order).
  `check_no_loss(...)` — the scenarios' verdict: every acknowledged launch ran exactly once and
  every task's updates arrived in lifecycle order up to FINISHED.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import trio
from trio_websocket import ConnectionClosed, HandshakeError, connect_websocket_url

from edgerm.masters import MasterList
from edgerm.wire import decode, encode, pb
from edgerm_master.testing import ScriptedAgent, ScriptedFramework, wasm_module, wasm_spec
from edgerm_master.testing_io import MasterProcess, coap_agent_call

__all__ = ["MasterSet", "HaAgent", "HaFramework", "check_no_loss", "NOT_LEADER", "TASK_MODULE",
           "task_spec"]

log = logging.getLogger("edgerm.testing_ha")

TS = pb.TaskState
# issue 12's refusal code (ha-clients adds it to the protocol).
NOT_LEADER = int(getattr(pb.ErrorCode, "NOT_LEADER", 11))
# The module every scenario task names (the scripted agents never run it).
TASK_MODULE = wasm_module(b"ha")
# A task's states in the order the protocol allows them to reach a framework.
_ORDER: dict[int, int] = {TS.STAGING: 0, TS.STARTING: 1, TS.RUNNING: 2, TS.FINISHED: 3}


# --------------------------------------------------------------------------------------------
# Masters


class MasterSet:
    """`n` masters with the etcd backend on `endpoints` under `prefix`, each with its own data
    dir under `base_dir`, its own name (m0, m1, ...) and fixed ports once started (a restart
    reuses them, as a supervisor restarting a service would). `module`: what runs them
    (edgerm_master.testing_fencing for the fencing scenario)."""

    def __init__(self, base_dir: str, endpoints: Sequence[str], prefix: str, n: int = 3,
                 lease_ttl_s: float = 2.0, extra: Iterable[str] = (),
                 module: str = "edgerm_master") -> None:
        self.masters = [
            MasterProcess(os.path.join(base_dir, f"m{i}"), heartbeat_ms=200, module=module,
                          extra=["--name", f"m{i}", "--store-backend", "etcd",
                                 "--store-endpoint", ",".join(endpoints),
                                 "--store-prefix", prefix, "--store-timeout-s", "1",
                                 "--store-lease-ttl-s", str(lease_ttl_s),
                                 # Agents find a new leader within a few seconds: not
                                 # UNREACHABLE meanwhile (10 s window).
                                 "--unreachable-after-missed", "50", *extra])
            for i in range(n)]
        self.prefix = prefix
        self.exits: list[list[int]] = [[] for _ in range(n)]  # exit codes seen, per master
        self.restarts = 0

    def start(self) -> MasterSet:
        for m in self.masters:
            m.start()
        return self

    @property
    def coap(self) -> list[tuple[str, int]]:
        return [m.coap for m in self.masters]

    @property
    def ws(self) -> list[tuple[str, int]]:
        return [m.ws for m in self.masters]

    def alive(self, i: int) -> bool:
        p = self.masters[i].proc
        return p is not None and p.poll() is None

    def kill(self, i: int) -> None:
        """SIGKILL master `i` (a crash); `supervise()` starts it again."""
        self.masters[i].kill()

    def signal(self, i: int, sig: int) -> None:
        p = self.masters[i].proc
        assert p is not None
        p.send_signal(sig)

    def pause(self, i: int) -> None:
        self.signal(i, signal.SIGSTOP)

    def resume(self, i: int) -> None:
        self.signal(i, signal.SIGCONT)

    async def supervise(self, poll_s: float = 0.1) -> None:
        """What systemd's Restart=always does: start every master that exited again (its exit
        code kept in `exits`). Run it in a nursery."""
        while True:
            for i, m in enumerate(self.masters):
                p = m.proc
                if p is not None and p.poll() is not None:
                    self.exits[i].append(p.returncode)
                    m.stop()  # reaps it, closes its pipe
                    await trio.to_thread.run_sync(m.start)
                    self.restarts += 1
            await trio.sleep(poll_s)

    async def leader(self, timeout: float = 20.0, token: str = "operator-token",
                     not_: int = -1) -> int:
        """The index of the master whose operator state answers (only the leader's does),
        other than `not_`."""
        with trio.fail_after(timeout):
            while True:
                for i, m in enumerate(self.masters):
                    if i != not_ and self.alive(i) and await _answers_state(m.ws, token):
                        return i
                await trio.sleep(0.05)

    def log(self, i: int) -> str:
        with open(self.masters[i].log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def close(self) -> None:
        for i, m in enumerate(self.masters):
            if self.alive(i):
                self.resume(i)  # a stopped process does not act on SIGTERM
            m.stop()


async def _answers_state(ws: tuple[str, int], token: str) -> bool:
    """True when the master at `ws` answers the operator state (a standby refuses it)."""
    try:
        with trio.move_on_after(1.0):
            async with trio.open_nursery() as nursery:
                conn = await connect_websocket_url(nursery, f"ws://{ws[0]}:{ws[1]}/state")
                await conn.send_message(encode(pb.StateRequest(token=token)))
                data = await conn.get_message()
                await conn.aclose()
                assert isinstance(data, bytes)
                try:
                    # Only a ClusterState carries the master's version.
                    return bool(decode(pb.ClusterState, data).version)
                except Exception:
                    return False
    except (OSError, ConnectionClosed, HandshakeError):
        return False
    return False


# --------------------------------------------------------------------------------------------
# Agents


class HaAgent:
    """A scripted agent over CoAP (`coap` from `open_coap_client()`) that follows the leader
    among `masters` and runs every launch to FINISHED at once."""

    def __init__(self, coap: Any, masters: Sequence[tuple[str, int]], name: str,
                 call_timeout_s: float = 1.0, heartbeat_s: float = 0.1) -> None:
        self.coap = coap
        self.masters = list(masters)
        # The same rule as the real clients: a named leader only if configured, else the next.
        self._list = MasterList(f"coap://{host}:{port}" for host, port in self.masters)
        self.agent = ScriptedAgent(name, resources=pb.Resources(cpus=8, mem_mb=8192,
                                                                 disk_mb=1000))
        self.call_timeout_s = call_timeout_s
        self.heartbeat_s = heartbeat_s
        self.executions: Counter[str] = Counter()
        self.refusals = 0
        self.switches = 0
        self.calls = 0
        self.timeouts = 0

    @property
    def current(self) -> int:
        return self._list.index

    def _move(self, leader: str) -> None:
        self._list.refused(leader)
        self.switches += 1

    async def run(self) -> None:
        a = self.agent
        while True:
            # Acknowledge applied commands before the next update (a heartbeat carries the
            # ack), as the real agents do: else a new leader's ReRegister may wait behind
            # launches the agent already has.
            if not a.need_register and a.applied != a.acked_applied:
                data = a.heartbeat_call()
            else:
                data = a.next_call()
            resp = None
            # A first registration unanswered and sent again would admit a second agent (a
            # new nonce): give it longer than a commit on an etcd electing a new leader takes.
            timeout = self.call_timeout_s if a.agent_id else 5.0
            with trio.move_on_after(timeout):
                # (Plain for a first registration, else OSCORE-protected.)
                resp = await coap_agent_call(self.coap, self.masters[self.current], a, data)
            self.calls += 1
            if resp is None:
                self.timeouts += 1
                self._move("")
                continue
            before = set(a.starts)
            reply = a.handle_reply(resp[1])
            if reply.HasField("error") and reply.error.code in (NOT_LEADER,
                                                                pb.ErrorCode.UNAVAILABLE):
                self.refusals += 1
                self._move(getattr(reply.error, "leader", ""))
                await trio.sleep(0.05)
                continue
            for n in set(a.starts) - before:
                spec = a.specs[n]
                self.executions[spec.wasm.args[0] if spec.wasm.args else f"#{n}"] += 1
                a.finish(n)
            if not (a.queue or a.need_register or a.applied != a.acked_applied):
                await trio.sleep(self.heartbeat_s)


# --------------------------------------------------------------------------------------------
# Frameworks


class HaFramework:
    """Launches `task_ids` (one WASM task each, 0.01 CPU) through whichever master leads."""

    def __init__(self, masters: Sequence[tuple[str, int]], name: str, task_ids: Iterable[str],
                 per_accept: int = 10, max_outstanding: int = 40,
                 connect_timeout_s: float = 1.0) -> None:
        self.masters = list(masters)
        self._list = MasterList(f"ws://{host}:{port}/framework" for host, port in self.masters)
        self.fw = ScriptedFramework(name, failover_timeout_s=300.0)
        self.todo = list(task_ids)
        self.all = list(self.todo)
        self.per_accept = per_accept
        # Launched and not yet finished, at most: launches go on during the whole run.
        self.max_outstanding = max_outstanding
        self.connect_timeout_s = connect_timeout_s
        self.accepted: set[str] = set()
        self.accepted_at: list[float] = []         # monotonic time of each `accepted`
        self.inflight: dict[int, list[str]] = {}     # accept call_id -> task ids
        self.unsure: set[str] = set()                # sent, connection lost before the answer
        self.states: dict[str, list[int]] = {}
        self.errors: list[pb.Error] = []
        self.connections = 0
        self.finished = trio.Event()

    def finished_count(self) -> int:
        return sum(1 for states in self.states.values() if states[-1] == TS.FINISHED)

    def done(self) -> bool:
        return all(self.states.get(t, [0])[-1] == TS.FINISHED for t in self.all)

    @property
    def current(self) -> int:
        return self._list.index

    def _move(self, leader: str) -> None:
        self._list.refused(leader)

    async def run(self) -> None:
        while not self.done():
            host, port = self.masters[self.current]
            leader = ""
            try:
                async with trio.open_nursery() as nursery:
                    with trio.fail_after(self.connect_timeout_s):
                        conn = await connect_websocket_url(nursery,
                                                           f"ws://{host}:{port}/framework")
                    leader = await self._session(conn)
                    nursery.cancel_scope.cancel()
            except* (OSError, ConnectionClosed, HandshakeError, trio.TooSlowError):
                pass  # the master went away (or never answered): the next one
            # Whatever was sent and not answered: ask the next leader (reconcile).
            for ids in self.inflight.values():
                self.unsure.update(ids)
            self.inflight.clear()
            self.fw.offers.clear()
            if self.done():
                break
            self._move(leader)
            await trio.sleep(0.05)
        self.finished.set()

    async def _session(self, conn: Any) -> str:
        """One connection: subscribe, then react to events until it ends; the leader a refusal
        named ("" if none)."""
        fw = self.fw
        self.connections += 1
        await conn.send_message(fw.subscribe())
        while True:
            with trio.fail_after(5.0):  # pings come every framework_heartbeat_s
                data = await conn.get_message()
            ev = fw.handle_event(data)
            kind = ev.WhichOneof("event")
            if kind == "error":
                self.errors.append(ev.error)
                ids = self.inflight.pop(ev.call_id, None)
                if ev.error.code in (NOT_LEADER, pb.ErrorCode.UNAVAILABLE) and not ids:
                    return getattr(ev.error, "leader", "")
                if ids:  # an accept refused (an offer of a previous leader): launch again
                    self.todo[:0] = ids
            elif kind == "subscribed":
                # Uploading again is harmless (content-addressed) and makes sure of the module.
                await conn.send_message(fw.upload(TASK_MODULE, pb.WASM_MODULE))
                if self.unsure:
                    await conn.send_message(fw.reconcile(sorted(self.unsure)))
            elif kind == "accepted":
                ids = self.inflight.pop(ev.call_id, None) or list(ev.accepted.task_ids)
                self.accepted.update(ids)
                self.accepted_at.append(time.monotonic())
            elif kind == "update":
                u = ev.update
                if u.task_id in self.unsure:
                    self.unsure.discard(u.task_id)
                    if u.state == TS.LOST and u.reason == pb.Reason.TASK_UNKNOWN:
                        self.todo.insert(0, u.task_id)  # never persisted: launch it again
                        continue
                    self.accepted.add(u.task_id)  # the master has it: it was persisted
                if u.uuid:
                    self.states.setdefault(u.task_id, []).append(u.state)
                    await conn.send_message(fw.acknowledge(u))
                if self.done():
                    return ""
                if u.state == TS.FINISHED and fw.offers:
                    await self._launch(conn)  # room again under max_outstanding
            elif kind == "offers":
                await self._launch(conn)

    async def _launch(self, conn: Any) -> None:
        fw = self.fw
        for offer in list(fw.offers.values()):
            if not self.todo:
                break
            room = int(min(offer.resources.cpus / 0.01, offer.resources.mem_mb / 1))
            sent = sum(len(ids) for ids in self.inflight.values())
            outstanding = len(self.accepted) + len(self.unsure) + sent - self.finished_count()
            take = min(room, self.per_accept, len(self.todo),
                       self.max_outstanding - outstanding)
            if take <= 0:
                continue
            ids, self.todo = self.todo[:take], self.todo[take:]
            tasks = [pb.TaskInfo(task_id=t, spec=task_spec(t)) for t in ids]
            data = fw.accept([offer.offer_id], tasks)
            self.inflight[fw.call_id] = ids
            await conn.send_message(data)


def task_spec(task_id: str) -> pb.TaskSpec:
    """The scenarios' task: TASK_MODULE with the task id as its first argument."""
    spec = wasm_spec(hashlib.sha256(TASK_MODULE).digest(), len(TASK_MODULE), task_id, mem_mb=1)
    spec.resources.cpus = 0.01
    return spec


def check_no_loss(frameworks: Sequence[HaFramework], agents: Sequence[HaAgent]) -> None:
    """Every acknowledged launch ran exactly once on the agents, and each task's updates reached
    its framework in lifecycle order, ending FINISHED (a repeat of an unacknowledged update is
    allowed; a step back is not)."""
    executions: Counter[str] = Counter()
    for a in agents:
        executions.update(a.executions)
    twice = {t: n for t, n in executions.items() if n > 1}
    assert not twice, f"tasks run more than once: {twice}"
    for f in frameworks:
        never = sorted(t for t in f.accepted if executions[t] == 0)
        assert not never, f"{f.fw.name}: acknowledged launches lost: {never[:20]}"
        for t in f.all:
            seen = f.states.get(t, [])
            names = [TS.Name(s) for s in seen]
            # UNREACHABLE may come between any two (an agent slow to find the new leader);
            # otherwise the lifecycle order, each state delivered (a repeat is allowed: an
            # update is re-sent until acknowledged).
            ranks = [_ORDER.get(s, -1) for s in seen if s != TS.UNREACHABLE]
            assert -1 not in ranks and ranks == sorted(ranks), \
                f"{f.fw.name} {t}: states out of order {names}"
            assert {TS.STARTING, TS.RUNNING, TS.FINISHED} <= set(seen), \
                f"{f.fw.name} {t}: updates missing: {names}"
            assert seen[-1] == TS.FINISHED, f"{f.fw.name} {t}: did not finish: {names}"
