"""Sans-IO test helpers for everyone who talks to the master: no sockets, no processes, a
hand-held clock. (Their twins that do I/O — a real master process, these fakes driven over real
sockets, a UDP relay — are in `edgerm_master.testing_io`.)

  `ScriptedAgent` — a minimal, honest agent core: registers, heartbeats, applies commands in id
  order and at most once (a launch it already has never starts a second copy), reports status
  updates oldest first until acknowledged, survives a "restart" with its identity.
  `ScriptedFramework` — builds FrameworkCalls and collects FrameworkEvents.
  `Cluster` — joins a master core (optionally with a real SQLite `Store`), agents and frameworks
  with a fake clock: `cluster.step(dt)`, `cluster.exchange(agent)`, `cluster.call(fw, ...)`.
  Message builders (`task_info`, `wasm_spec`, `docker_spec`, `wasm_module`) and steps shared by
  the core's tests (`launch`, `offer_on`, `task_state`, `number_of`).
"""

from __future__ import annotations

import hashlib
import itertools
from collections import Counter, deque
from collections.abc import Iterable
from typing import Any

from edgerm.coap.codes import Code
from edgerm.coap.options import encode_uint
from edgerm.oscore import SecurityContext, agent_context, protect_request, unprotect_response
from edgerm.wire import (
    PROTOCOL_VERSION,
    decode,
    derive_secret,
    encode,
    pb,
    sign,
    token_key,
    verify,
)

__all__ = [
    "ScriptedAgent", "ScriptedFramework", "Cluster", "wasm_module", "task_info", "wasm_spec",
    "docker_spec", "offer_on", "launch", "task_state", "number_of",
]

TS = pb.TaskState
R = pb.Reason
_NONCES = itertools.count(1)
_TERMINAL = {TS.FINISHED, TS.FAILED, TS.KILLED, TS.ERROR, TS.LOST, TS.DROPPED}


def wasm_module(tag: bytes = b"") -> bytes:
    """The smallest valid-looking WASM module (magic + version), made unique by `tag`
    (a custom section)."""
    body = b"\x00asm\x01\x00\x00\x00"
    if tag:
        name = b"t"
        content = bytes([len(name)]) + name + tag
        size, leb = len(content), bytearray()
        while True:  # unsigned LEB128, as WASM section sizes are
            byte, size = size & 0x7F, size >> 7
            leb.append(byte | (0x80 if size else 0))
            if not size:
                break
        body += b"\x00" + bytes(leb) + content
    return body


# --------------------------------------------------------------------------------------------
# Sans-IO agent


# How far ahead of its seq a ScriptedAgent's "persisted" bound is: a restart resumes there.
SEQ_RESERVE = 64


class ScriptedAgent:
    """An agent core for tests. Every `*_call()` returns encoded AgentCall bytes; feed the
    master's answer to `handle_reply()`.

    Args:
        name, resources, executors: what it registers.
        token: the cluster's agent token.
        auto_run: a launch reports RUNNING at once (else it stays STARTING until `run()`).
    """

    def __init__(self, name: str = "agent", resources: pb.Resources | None = None,
                 executors: Iterable[int] = (pb.DOCKER, pb.WASM, pb.MICROPYTHON),
                 token: str = "agent-token", auto_run: bool = True,
                 attributes: Iterable[pb.Attribute] = (), max_payload: int = 0) -> None:
        self.name = name
        self.resources = resources if resources is not None else pb.Resources(
            cpus=4, mem_mb=4096, disk_mb=10000, ports=[pb.Range(begin=31000, end=31099)])
        self.executors = list(executors)
        self.attributes = list(attributes)
        self.token = token
        self.auto_run = auto_run
        self.max_payload = max_payload
        self.agent_id = 0
        self.secret = b""
        self.nonce = b""
        self.seq = 0
        self.heartbeat_ms = 0
        self.applied = 0                      # highest command id applied
        self.acked_applied = 0                # what the master last heard as command_ack
        self.tasks: dict[int, int] = {}       # task number -> state
        self.specs: dict[int, pb.TaskSpec] = {}
        self.starts: Counter[int] = Counter()  # launches that started a task, per number
        self.queue: deque[pb.AgentCall] = deque()  # unacknowledged updates, oldest first
        self.next_update = 1
        self.update_ack = 0
        self.need_register = True
        self.replies: list[pb.AgentReply] = []
        self.errors: list[pb.Error] = []
        self.bad_macs = 0
        self._oscore: tuple[int, SecurityContext] | None = None

    # --- calls

    def _call(self, **kw: Any) -> bytes:
        self.seq += 1
        call = pb.AgentCall(seq=self.seq, **kw)
        if self.agent_id:
            call.agent_id = self.agent_id
            return sign(call, self.secret)
        if call.HasField("register"):
            return sign(call, token_key(self.token))
        return encode(call)

    def register_call(self) -> bytes:
        reg = pb.Register(name=self.name, resources=self.resources,
                          executors=self.executors,  # type: ignore[arg-type]
                          attributes=self.attributes, protocol_version=PROTOCOL_VERSION,
                          max_payload=self.max_payload)
        if self.agent_id:
            reg.tasks.extend(pb.TaskReport(task=n, state=s)  # type: ignore[arg-type]
                             for n, s in sorted(self.tasks.items()))
            reg.update_next = self.next_update
        else:
            # Unique within the process and reproducible (scale tests register 100,000).
            self.nonce = hashlib.sha256(f"{self.name}/{next(_NONCES)}".encode()).digest()[:8]
            reg.nonce = self.nonce
        return self._call(register=reg)

    def heartbeat_call(self, resources: pb.Resources | None = None) -> bytes:
        hb = pb.Heartbeat()
        if self.applied != self.acked_applied:
            hb.command_ack = self.applied
            self.acked_applied = self.applied
        if resources is not None:
            hb.resources.CopyFrom(resources)
            self.resources = resources
        return self._call(heartbeat=hb)

    def next_call(self) -> bytes:
        """What a real agent sends next: a registration when it must, else its oldest
        unacknowledged update, else a heartbeat."""
        if self.need_register:
            return self.register_call()
        if self.queue:
            head = self.queue[0]
            kind = head.WhichOneof("call")
            return self._call(**{kind: getattr(head, kind)})  # type: ignore[arg-type]
        return self.heartbeat_call()

    # --- OSCORE (the CoAP link: docs/protocol.md)

    def oscore_context(self) -> SecurityContext:
        """This identity's OSCORE context (derived once per identity)."""
        if self._oscore is None or self._oscore[0] != self.agent_id:
            self._oscore = (self.agent_id, agent_context(self.secret, self.agent_id))
        return self._oscore[1]

    def protect(self, data: bytes, path: str = "a", content_format: int | None = None
                ) -> tuple[int, bytes, bytes] | None:
        """A signed call of this agent as an OSCORE request on CoAP `path` ("a", or "c": a
        FETCH with an inner Observe): (seq, OSCORE option value, ciphertext); None for a
        first registration, which goes plain. The call loses agent_id, seq and mac: OSCORE's
        kid, Partial IV and tag stand for them. No inner Content-Format (the resource implies
        CBOR) unless `content_format` (60: the form of agents before that; others: refused)."""
        call = decode(pb.AgentCall, data)
        if not call.agent_id:
            return None
        seq = call.seq
        call.ClearField("agent_id")
        call.ClearField("seq")
        call.ClearField("mac")
        code = Code.FETCH if path == "c" else Code.POST
        options = [(6, b"")] if path == "c" else []
        options += [(11, path.encode())]
        if content_format is not None:
            options.append((12, encode_uint(content_format)))
        option, ciphertext = protect_request(self.oscore_context(), seq, code, options,
                                             encode(call))
        return seq, option, ciphertext

    def unprotect(self, seq: int, option: bytes, ciphertext: bytes
                  ) -> tuple[int | None, int, bytes]:
        """(the master's own Partial IV or None, the inner CoAP code, the AgentReply) of a
        protected response to our request `seq`. Raises edgerm.oscore.OscoreError."""
        piv, code, _options, payload = unprotect_response(self.oscore_context(), seq, option,
                                                          ciphertext)
        return piv, code, payload

    # --- replies

    def handle_reply(self, data: bytes) -> pb.AgentReply:
        reply = decode(pb.AgentReply, data)
        self.replies.append(reply)
        if reply.HasField("error"):
            self.errors.append(reply.error)
        if reply.HasField("registered"):
            r = reply.registered
            if not self.agent_id:
                self.agent_id = r.agent_id
                self.secret = derive_secret(self.token, self.nonce, r.nonce)
            self.heartbeat_ms = r.heartbeat_ms
            self.need_register = False
            self._ack_updates(r.update_ack)
            self.next_update = max(self.next_update, r.update_ack + 1)
        if self.secret and reply.mac and not verify(reply, self.secret):
            self.bad_macs += 1
            return reply
        self._ack_updates(reply.update_ack)
        for cmd in reply.commands:
            self._apply(cmd)
        return reply

    def _ack_updates(self, ack: int) -> None:
        self.update_ack = max(self.update_ack, ack)
        while self.queue:
            head = self.queue[0]
            uid = getattr(head, head.WhichOneof("call") or "status").update_id
            if uid > ack:
                break
            self.queue.popleft()

    def _apply(self, cmd: pb.Command) -> None:
        if cmd.id <= self.applied:
            return
        self.applied = cmd.id
        kind = cmd.WhichOneof("command")
        if kind == "launch":
            n = cmd.launch.task
            if n in self.tasks:
                return  # idempotent: never a second copy
            self.starts[n] += 1
            self.specs[n] = cmd.launch.spec
            self.tasks[n] = TS.STARTING
            self.report(n, TS.STARTING)
            if self.auto_run:
                self.run(n)
        elif kind == "kill":
            n = cmd.kill.task
            state = self.tasks.get(n)
            if state is None:
                self.tasks[n] = TS.KILLED
                self.report(n, TS.KILLED, R.KILLED_BEFORE_LAUNCH)
            elif state in _TERMINAL:
                self.report(n, state)
            else:
                self.tasks[n] = TS.KILLED
                self.report(n, TS.KILLED, R.KILL_REQUESTED)
        elif kind == "reregister":
            self.need_register = True

    # --- the tasks' side

    def report(self, number: int, state: int, reason: int = 0, message: str = "",
               exit_code: int = 0) -> None:
        self.queue.append(pb.AgentCall(status=pb.StatusUpdate(
            update_id=self.next_update, task=number, state=state, reason=reason,  # type: ignore[arg-type]
            message=message, exit_code=exit_code)))
        self.next_update += 1

    def run(self, number: int) -> None:
        self.tasks[number] = TS.RUNNING
        self.report(number, TS.RUNNING)

    def finish(self, number: int, state: int = TS.FINISHED, exit_code: int = 0) -> None:
        self.tasks[number] = state
        self.report(number, state, exit_code=exit_code)

    def publish(self, number: int, data: bytes, topic: str = "") -> None:
        self.queue.append(pb.AgentCall(publish=pb.Publish(
            update_id=self.next_update, task=number, data=data, topic=topic)))
        self.next_update += 1

    def restart(self, keep_tasks: bool = True) -> None:
        """A reboot: identity, unacknowledged updates and (optionally) tasks survive; the seq
        goes on from the bound a real agent keeps ahead of it (docs/protocol.md, never back)
        and the first call is a registration."""
        self.seq += SEQ_RESERVE
        self.need_register = True
        if not keep_tasks:
            self.tasks.clear()

    def running(self) -> list[int]:
        return sorted(n for n, s in self.tasks.items() if s not in _TERMINAL)


# --------------------------------------------------------------------------------------------
# Sans-IO framework


class ScriptedFramework:
    """Builds FrameworkCalls (encoded) and collects the events the master sends."""

    def __init__(self, name: str = "fw", token: str = "framework-token", role: str = "",
                 failover_timeout_s: float = 0.0) -> None:
        self.name = name
        self.token = token
        self.role = role
        self.failover_timeout_s = failover_timeout_s
        self.framework_id = ""
        # Given by the master with a new framework id; proves the id on re-subscription.
        self.framework_secret = b""
        self.call_id = 0
        self.events: list[pb.FrameworkEvent] = []
        self.offers: dict[str, pb.Offer] = {}
        self.updates: list[pb.TaskStatus] = []
        self.outputs: list[pb.TaskOutput] = []
        self.errors: list[pb.Error] = []
        self.closed = False

    def posing_as(self, other: ScriptedFramework) -> ScriptedFramework:
        """This framework, with `other`'s framework id and secret (another process of it, or
        a thief that learnt both): subscribing then claims `other`'s framework."""
        self.framework_id, self.framework_secret = other.framework_id, other.framework_secret
        return self

    def _call(self, **kw: Any) -> bytes:
        self.call_id += 1
        return encode(pb.FrameworkCall(framework_id=self.framework_id, call_id=self.call_id,
                                       **kw))

    def subscribe(self) -> bytes:
        return self._call(subscribe=pb.Subscribe(
            name=self.name, token=self.token, role=self.role,
            failover_timeout_s=self.failover_timeout_s, framework_secret=self.framework_secret))

    def accept(self, offer_ids: Iterable[str], tasks: Iterable[pb.TaskInfo],
               refuse_seconds: float = 0.0) -> bytes:
        offer_ids = list(offer_ids)
        for oid in offer_ids:
            self.offers.pop(oid, None)
        return self._call(accept=pb.Accept(offer_ids=list(offer_ids), launch=list(tasks),
                                           refuse_seconds=refuse_seconds))

    def decline(self, offer_ids: Iterable[str], refuse_seconds: float = 0.0) -> bytes:
        offer_ids = list(offer_ids)
        for oid in offer_ids:
            self.offers.pop(oid, None)
        return self._call(decline=pb.Decline(offer_ids=list(offer_ids),
                                             refuse_seconds=refuse_seconds))

    def kill(self, task_id: str) -> bytes:
        return self._call(kill=pb.KillTask(task_id=task_id))

    def reconcile(self, task_ids: Iterable[str] = ()) -> bytes:
        return self._call(reconcile=pb.Reconcile(task_ids=list(task_ids)))

    def acknowledge(self, status: pb.TaskStatus) -> bytes:
        return self._call(acknowledge=pb.Acknowledge(task_id=status.task_id, uuid=status.uuid))

    def teardown(self) -> bytes:
        return self._call(teardown=pb.Teardown())

    def upload(self, data: bytes, fmt: int = pb.WASM_MODULE, name: str = "") -> bytes:
        return self._call(upload=pb.UploadModule(format=fmt, data=data, name=name))  # type: ignore[arg-type]

    def revive(self) -> bytes:
        return self._call(revive=pb.Revive())

    def suppress(self) -> bytes:
        return self._call(suppress=pb.Suppress())

    def handle_event(self, data: bytes | pb.FrameworkEvent) -> pb.FrameworkEvent:
        ev = decode(pb.FrameworkEvent, data) if isinstance(data, bytes | bytearray) else data
        self.events.append(ev)
        kind = ev.WhichOneof("event")
        if kind == "subscribed":
            self.framework_id = ev.subscribed.framework_id
            if ev.subscribed.framework_secret:
                self.framework_secret = ev.subscribed.framework_secret
        elif kind == "offers":
            for o in ev.offers.offers:
                self.offers[o.offer_id] = o
        elif kind == "rescind":
            self.offers.pop(ev.rescind.offer_id, None)
        elif kind == "update":
            self.updates.append(ev.update)
        elif kind == "output":
            self.outputs.append(ev.output)
        elif kind == "error":
            self.errors.append(ev.error)
        return ev

    def last(self, kind: str) -> Any:
        for ev in reversed(self.events):
            if ev.WhichOneof("event") == kind:
                return getattr(ev, kind)
        raise LookupError(f"no {kind} event")

    def states(self, task_id: str) -> list[int]:
        return [u.state for u in self.updates if u.task_id == task_id]


def task_info(task_id: str, cpus: float = 1.0, mem_mb: float = 128.0,
              image: str = "busybox", **res: Any) -> pb.TaskInfo:
    """A Docker task for tests."""
    return pb.TaskInfo(task_id=task_id, spec=pb.TaskSpec(
        name=task_id, resources=pb.Resources(cpus=cpus, mem_mb=mem_mb, **res),
        docker=pb.DockerTask(image=image)))


def wasm_spec(sha: bytes, size: int, *args: str, mem_mb: float = 4, timeout_s: int = 0,
              devices: Iterable[str] = ()) -> pb.TaskSpec:
    """A WASM task running module `sha` (of `size` bytes) with `args`."""
    return pb.TaskSpec(
        name="w", resources=pb.Resources(cpus=0.1, mem_mb=mem_mb,
                                         devices=[pb.Device(name=d) for d in devices]),
        wasm=pb.WasmTask(sha256=sha, size=size, args=list(args), timeout_s=timeout_s))


def docker_spec(image: str, *command: str, mem_mb: float = 64,
                timeout_s: int = 0) -> pb.TaskSpec:
    """A Docker task running `command` in `image`."""
    return pb.TaskSpec(name="d", resources=pb.Resources(cpus=0.2, mem_mb=mem_mb),
                       docker=pb.DockerTask(image=image, command=list(command),
                                            timeout_s=timeout_s))


# --------------------------------------------------------------------------------------------
# Sans-IO cluster


class Cluster:
    """A master core, optionally persisting to a real `Store`, with scripted agents and
    frameworks and a hand-held clock. Messages go out only after their records are applied to
    the store, as in the service."""

    def __init__(self, config: Any = None, store: Any = None, now: float = 1_000_000.0,
                 seed: int = 0) -> None:
        import random

        from edgerm_master.config import MasterConfig
        from edgerm_master.core import Master

        if config is None:
            config = MasterConfig(agent_tokens=["agent-token"],
                                  framework_tokens=["framework-token"],
                                  operator_tokens=["operator-token"])
        self.rng = random.Random(seed)
        self.master = Master(config, random_bytes=self.rng.randbytes)
        self.store = store
        self.now = now
        self.conns: dict[int, ScriptedFramework] = {}
        self.fw_conn: dict[int, int] = {}
        self.pushes: dict[int, list[bytes]] = {}
        self.closed: list[int] = []
        self._next_conn = 1
        self.committed = 0
        if store is not None:
            # As MasterService.lead(): what recovery emits (the master's next OSCORE sequence
            # bound, pruning) is committed before anything is served, and not counted.
            self.master.recover(store.recover(), now)
            store.apply(self.master.take_records())
            self.master.take_outbox()

    # --- plumbing

    def flush(self) -> None:
        """Commit what the core emitted, then deliver what it allowed."""
        records = self.master.take_records()
        if self.store is not None and records:
            self.store.apply(records)
        self.committed += len(records)
        from edgerm_master.core import CloseFramework, ToAgent, ToFramework
        for item in self.master.take_outbox():
            if isinstance(item, ToFramework):
                fw = self.conns.get(item.conn)
                if fw is not None:
                    fw.handle_event(item.event)
            elif isinstance(item, ToAgent):
                self.pushes.setdefault(item.agent_id, []).append(item.data)
            elif isinstance(item, CloseFramework):
                fw = self.conns.pop(item.conn, None)
                self.closed.append(item.conn)
                if fw is not None:
                    fw.closed = True

    def step(self, dt: float = 0.0) -> None:
        """Advance the clock by `dt`, running every timer that falls due on the way."""
        end = self.now + dt
        while True:
            due = self.master.get_timer()
            if due > end:
                break
            self.now = max(self.now, due)
            self.master.handle_timer(self.now)
            self.flush()
        self.now = end
        self.master.handle_timer(self.now)
        self.flush()

    # --- agents

    def send(self, agent: ScriptedAgent, data: bytes, transport: str = "coap") -> pb.AgentReply:
        result = self.master.agent_call(data, self.now, transport)
        self.flush()
        return agent.handle_reply(result.data)

    def exchange(self, agent: ScriptedAgent) -> pb.AgentReply:
        """One call of the agent (registration, oldest update or heartbeat) and its reply."""
        return self.send(agent, agent.next_call())

    def settle(self, agent: ScriptedAgent, rounds: int = 1000) -> None:
        """Exchange until the agent has nothing to say beyond a steady heartbeat. A heartbeat
        comes `command_resend_s` after the previous call, as a real agent's would come later."""
        for _ in range(rounds):
            if not agent.need_register and not agent.queue:
                self.step(self.master.config.command_resend_s)
            self.exchange(agent)
            if not agent.need_register and not agent.queue and agent.applied == agent.acked_applied:
                self.exchange(agent)  # the heartbeat carrying the final command_ack
                if not agent.queue and not agent.need_register:
                    return
        raise AssertionError("agent did not settle")

    def add_agent(self, agent: ScriptedAgent) -> ScriptedAgent:
        self.settle(agent)
        self.step(0.05)
        return agent

    # --- frameworks

    def connect(self, fw: ScriptedFramework) -> int:
        conn = self._next_conn
        self._next_conn += 1
        self.conns[conn] = fw
        fw.closed = False
        self.fw_conn[id(fw)] = conn
        return conn

    def call(self, fw: ScriptedFramework, data: bytes) -> None:
        conn = self.fw_conn.get(id(fw))
        if conn is None or conn not in self.conns:
            conn = self.connect(fw)
        self.master.framework_call(conn, data, self.now)
        self.flush()

    def subscribe(self, fw: ScriptedFramework) -> ScriptedFramework:
        self.connect(fw)
        self.call(fw, fw.subscribe())
        self.step(0.05)
        return fw

    def disconnect(self, fw: ScriptedFramework) -> None:
        conn = self.fw_conn.pop(id(fw), None)
        if conn is not None:
            self.conns.pop(conn, None)
            self.master.framework_disconnected(conn, self.now)
            self.flush()

    def ack_all(self, fw: ScriptedFramework) -> None:
        """Acknowledge every update that asks for it, in order, until none is left."""
        for _ in range(1000):
            pending = [u for u in fw.updates if u.uuid and u.uuid not in self._acked]
            if not pending:
                return
            for u in pending:
                self._acked.add(u.uuid)
                self.call(fw, fw.acknowledge(u))

    @property
    def _acked(self) -> set[bytes]:
        acked: set[bytes] | None = getattr(self, "_acked_set", None)
        if acked is None:
            acked = set()
            self._acked_set = acked
        return acked


# Steps shared by tests of the core
def offer_on(fw: ScriptedFramework, agent: ScriptedAgent) -> pb.Offer:
    for o in fw.offers.values():
        if o.agent_id == agent.agent_id:
            return o
    raise AssertionError(f"no offer on agent {agent.agent_id}: {list(fw.offers.values())}")


def launch(c: Cluster, fw: ScriptedFramework, agent: ScriptedAgent, *task_ids: str,
           cpus: float = 1.0, mem_mb: float = 128.0, settle: bool = True) -> None:
    """Accept an offer on `agent` with Docker tasks, and let the agent run them."""
    if not any(o.agent_id == agent.agent_id for o in fw.offers.values()):
        c.step(1.0)
    o = offer_on(fw, agent)
    errors = len(fw.errors)
    c.call(fw, fw.accept([o.offer_id], [task_info(t, cpus, mem_mb) for t in task_ids]))
    assert len(fw.errors) == errors, fw.errors[-1]
    if settle:
        c.settle(agent)
        c.ack_all(fw)


def task_state(c: Cluster, fw: ScriptedFramework, task_id: str) -> int:
    f = c.master.frameworks[fw.framework_id]
    t = f.tasks.get(task_id) or f.completed[task_id]
    return t.state


def number_of(c: Cluster, fw: ScriptedFramework, task_id: str) -> int:
    f = c.master.frameworks[fw.framework_id]
    return (f.tasks.get(task_id) or f.completed[task_id]).number
