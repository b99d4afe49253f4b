"""The framework SDK: subscribe to an EdgeRM master, take offers, launch and follow tasks (Trio).

Theory of operation
-------------------
A framework is a Mesos-style scheduler. It opens a WebSocket to the master's `/framework`
resource, sends `FrameworkCall{subscribe}` and receives `FrameworkEvent`s: offers (one per agent),
rescinds, task status updates, published task output, errors and pings (docs/protocol.md,
"Frameworks"). It answers offers with `accept` (launching `TaskInfo`s) or `decline`.

The module has three layers, from pure to I/O:

1. Helpers with no state: `Constraints` (does an offer fit, and which resources a task on it takes)
   and the task builders `wasm_task`, `docker_task`, `micropython_task`, `task_info`.
2. `FrameworkProtocol`, the sans-IO core. It turns calls into frames, frames into events, keeps the
   framework id and its secret, the live offers, the last status of every task, and decides what
   to send back on its own (acknowledgements, the reconciliation after a failover). It never reads
   a clock: every entry point that needs time takes `now`.
3. `Framework`, the Trio shell: one connection task in a nursery that connects, subscribes,
   receives, re-connects with back-off and fails over (re-subscribes with its framework id and
   secret) while the master still keeps the framework (`failover_timeout_s`). Users iterate
   `events()` and await calls (`accept`, `upload`, ...).

Delivery guarantees as a framework sees them:
- Status updates are at-least-once: the master re-sends an update carrying a `uuid` until it is
  acknowledged. The SDK acknowledges automatically once the event is queued for the user (turn it
  off with `auto_ack=False` and call `acknowledge`), and hides a re-sent update it has already
  delivered (same task, same uuid) while still acknowledging it again.
- Task output is delivered once, in per-task `seq` order: the master keeps each output (durably)
  until it surely arrived and re-sends it after a reconnect or a master restart; the SDK drops a
  repeat of a seq already seen. A gap (outputs the master had to drop for a framework away too
  long) is logged and counted in `OutputEvent.missed` and `FrameworkProtocol.outputs_missed`.
- An `accept` whose answer was lost with the connection raises `Disconnected`: the launch may or
  may not have happened. `reconcile` tells (the SDK reconciles by itself after each failover);
  re-launching the same task id is refused by the master with CONFLICT, never run twice.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import math
import random
import socket
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trio
import trio_websocket

from edgerm.service_nursery import open_service_nursery
from edgerm.wire import DEFAULT_LIMITS, DecodeError, Limits, decode, encode, pb

__all__ = [
    "WASM", "DOCKER", "MICROPYTHON", "TERMINAL_STATES", "state_name", "reason_name",
    "FrameworkError", "CallError", "Disconnected", "FailoverExpired", "ModuleTooLarge",
    "MAX_MODULE_BYTES", "describe_connection_error", "endpoint_url",
    "Module", "Constraints", "wasm_task", "docker_task", "micropython_task", "task_info",
    "Event", "Subscribed", "ConnectionLost", "OffersEvent", "RescindEvent", "UpdateEvent",
    "OutputEvent", "ErrorEvent", "CallAnswered",
    "FrameworkProtocol", "Backoff", "Framework",
]

log = logging.getLogger("edgerm.framework")

WASM = pb.WASM
DOCKER = pb.DOCKER
MICROPYTHON = pb.MICROPYTHON

TERMINAL_STATES = frozenset({pb.FINISHED, pb.FAILED, pb.KILLED, pb.ERROR, pb.LOST, pb.DROPPED})

# Scalars travel as doubles: 0.1 + 0.2 offered must still fit a 0.3 request.
_EPSILON = 1e-9

# Without a ping or any other frame for this many heartbeat intervals the connection is dead
# even if TCP has not noticed (a NAT dropped it silently): reconnect.
MISSED_PINGS_BEFORE_RECONNECT = 3

# Status updates remembered per task to hide re-sends; a task has far fewer transitions.
MAX_UUIDS_PER_TASK = 32

# Ended tasks whose last status (and re-send filter) the core keeps; older ones are forgotten so
# a long-lived service framework does not grow without bound. A re-send of a forgotten task's
# update is then delivered again, which at-least-once delivery allows.
MAX_ENDED_TASKS = 10_000

# Events arriving from the network may be large (offers of a big cluster, module answers), but
# a framework never receives module bytes: the default decode limits fit.
EVENT_LIMITS: Limits = DEFAULT_LIMITS

# trio-websocket's default (1 MiB) caps module uploads; modules for small agents are a few KiB,
# Linux WASM modules well under this.
MAX_FRAME_BYTES = 8 * 1024 * 1024

# The master's default limit on one module (`module_max_bytes`). `upload` checks it before
# sending: a bigger module would only be refused, after megabytes on a slow link, or (over the
# master's frame limit) end the connection. Pass `max_module_bytes` for a master set higher.
MAX_MODULE_BYTES = 1024 * 1024


def state_name(state: int) -> str:
    """`pb.RUNNING` -> "RUNNING"; an unknown number stays a number."""
    try:
        return pb.TaskState.Name(state)
    except ValueError:
        return str(state)


def reason_name(reason: int) -> str:
    try:
        return pb.Reason.Name(reason)
    except ValueError:
        return str(reason)


# ---------------------------------------------------------------------------------------------
# Errors


class FrameworkError(Exception):
    """Base of every error this SDK raises."""


class CallError(FrameworkError):
    """The master refused a call: `code` is a `pb.ErrorCode`, `message` says what to do."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        self.message = message
        try:
            name = pb.ErrorCode.Name(code)
        except ValueError:
            name = str(code)
        super().__init__(f"{name}: {message}")


class Disconnected(FrameworkError):
    """The connection dropped before the call was answered; its effect is unknown (reconcile)."""


class ModuleTooLarge(FrameworkError):
    """`upload` refused a module over the limit before sending it."""


class FailoverExpired(FrameworkError):
    """The master no longer knows this framework (its failover timeout passed, or it was torn
    down): its tasks are gone. Fatal for this `Framework`."""


# ---------------------------------------------------------------------------------------------
# Modules, constraints and task builders (pure)


@dataclass(frozen=True)
class Module:
    """A module stored at the master, content-addressed: what a WASM or MicroPython task names."""

    sha256: bytes
    size: int
    format: int = pb.WASM_MODULE

    @property
    def hex(self) -> str:
        return self.sha256.hex()

    @classmethod
    def of(cls, data: bytes, format: int = pb.WASM_MODULE) -> Module:
        """The reference a module's bytes will have once uploaded (computed locally)."""
        return cls(hashlib.sha256(data).digest(), len(data), format)


AttributeValue = str | float | int | Sequence[str]


@dataclass(frozen=True)
class Constraints:
    """What a task needs from an agent; `match(offer)` says whether an offer has it.

    Args:
      cpus, mem_mb, disk_mb: scalar amounts the task takes.
      ports: how many host ports it takes (from the offer's port ranges).
      devices: names of sensors/actuators/host devices it needs ("temp").
      executors: it runs on any of these (e.g. `[WASM]`); empty: any executor.
      attributes: each must be present on the agent: a text attribute equal to the string, a
        scalar equal to the number, a set attribute containing the string (or all strings of a
        list).
      agent_name: the agent's name, exactly or as a shell pattern ("pi-*").
    """

    cpus: float = 0.0
    mem_mb: float = 0.0
    disk_mb: float = 0.0
    ports: int = 0
    devices: Sequence[str] = ()
    executors: Sequence[int] = ()
    attributes: Mapping[str, AttributeValue] = field(default_factory=dict)
    agent_name: str | None = None

    def match(self, offer: pb.Offer) -> bool:
        return self.mismatch(offer) is None

    def mismatch(self, offer: pb.Offer) -> str | None:
        """Why `offer` does not fit, in words, or None when it does."""
        r = offer.resources
        for what, need, have in (("cpus", self.cpus, r.cpus), ("mem_mb", self.mem_mb, r.mem_mb),
                                 ("disk_mb", self.disk_mb, r.disk_mb)):
            if need > have + _EPSILON:
                return f"{what}: needs {need:g}, offered {have:g}"
        if self.ports and _count_ports(r.ports) < self.ports:
            return f"ports: needs {self.ports}, offered {_count_ports(r.ports)}"
        offered = {d.name for d in r.devices}
        for name in self.devices:
            if name not in offered:
                return f"device {name!r} not offered"
        if self.executors and not set(self.executors) & set(offer.executors):
            wanted = ", ".join(pb.Executor.Name(e) for e in self.executors)
            return f"executor: needs one of {wanted}"
        if self.agent_name is not None and not fnmatch.fnmatchcase(offer.agent_name,
                                                                   self.agent_name):
            return f"agent name {offer.agent_name!r} is not {self.agent_name!r}"
        attrs = {a.name: a for a in offer.attributes}
        for name, want in self.attributes.items():
            attr = attrs.get(name)
            if attr is None:
                return f"attribute {name!r} missing"
            if not _attribute_matches(attr, want):
                return f"attribute {name!r} is not {want!r}"
        return None

    def resources(self, offer: pb.Offer) -> pb.Resources:
        """The resources a task with these constraints takes from `offer` (which must match):
        the scalars, the first free ports, and each device (an exclusive one whole, a shared
        one a single share)."""
        res = pb.Resources(cpus=self.cpus, mem_mb=self.mem_mb, disk_mb=self.disk_mb)
        wanted = self.ports
        for rng in offer.resources.ports:
            if wanted <= 0:
                break
            take = min(wanted, rng.end - rng.begin + 1)
            res.ports.add(begin=rng.begin, end=rng.begin + take - 1)
            wanted -= take
        by_name = {d.name: d for d in offer.resources.devices}
        for name in self.devices:
            dev = by_name.get(name)
            # In an offer shares is what is left; 0 means an exclusive device, taken whole.
            shares = 0 if dev is None or dev.shares == 0 else 1
            kind = dev.kind if dev is not None else pb.DEVICE_KIND_UNSPECIFIED
            res.devices.add(name=name, kind=kind, shares=shares)
        return res


def _count_ports(ranges: Iterable[pb.Range]) -> int:
    return sum(max(0, r.end - r.begin + 1) for r in ranges)


def _attribute_matches(attr: pb.Attribute, want: AttributeValue) -> bool:
    kind = attr.WhichOneof("value")
    if isinstance(want, str):
        if kind == "text":
            return attr.text == want
        if kind == "set":
            return want in attr.set.items
        return False
    if isinstance(want, int | float):
        return kind == "scalar" and abs(attr.scalar - float(want)) <= _EPSILON
    wanted = set(want)
    if kind == "set":
        return wanted <= set(attr.set.items)
    return kind == "text" and wanted == {attr.text}


def _env(env: Mapping[str, str] | Iterable[tuple[str, str]] | None) -> list[pb.EnvVar]:
    items = env.items() if isinstance(env, Mapping) else (env or ())
    return [pb.EnvVar(name=k, value=v) for k, v in items]


def wasm_task(module: Module, *, name: str = "", resources: pb.Resources | None = None,
              args: Sequence[str] = (), env: Mapping[str, str] | None = None,
              entry: str = "", timeout_s: int = 0) -> pb.TaskSpec:
    """A WASM task running an uploaded module (see proto/wasm_abi.md)."""
    spec = pb.TaskSpec(name=name, wasm=pb.WasmTask(
        sha256=module.sha256, size=module.size, entry=entry, args=list(args), env=_env(env),
        timeout_s=timeout_s))
    if resources is not None:
        spec.resources.CopyFrom(resources)
    return spec


def docker_task(image: str, command: Sequence[str] = (), *, name: str = "",
                resources: pb.Resources | None = None, env: Mapping[str, str] | None = None,
                ports: Iterable[tuple[int, int]] = (),
                network: pb.NetworkMode = pb.NETWORK_MODE_UNSPECIFIED,
                timeout_s: int = 0) -> pb.TaskSpec:
    """A Docker task. `ports` maps (container port, host port); host ports come from the
    task's ports resource. A container still running `timeout_s` after it started is killed
    (FAILED TIMEOUT); 0: no limit."""
    spec = pb.TaskSpec(name=name, docker=pb.DockerTask(
        image=image, command=list(command), env=_env(env), network=network,
        ports=[pb.PortMapping(container_port=c, host_port=h) for c, h in ports],
        timeout_s=timeout_s))
    if resources is not None:
        spec.resources.CopyFrom(resources)
    return spec


def micropython_task(module: Module, *, name: str = "", resources: pb.Resources | None = None,
                     args: Sequence[str] = (), env: Mapping[str, str] | None = None,
                     timeout_s: int = 0) -> pb.TaskSpec:
    """A MicroPython task running uploaded source (or .mpy bytecode)."""
    spec = pb.TaskSpec(name=name, micropython=pb.MicroPythonTask(
        sha256=module.sha256, size=module.size, mpy=module.format == pb.MICROPYTHON_MPY,
        args=list(args), env=_env(env), timeout_s=timeout_s))
    if resources is not None:
        spec.resources.CopyFrom(resources)
    return spec


def task_info(task_id: str, spec: pb.TaskSpec) -> pb.TaskInfo:
    return pb.TaskInfo(task_id=task_id, spec=spec)


# ---------------------------------------------------------------------------------------------
# Events: what a framework receives


class Event:
    """Base of the events `Framework.events()` yields."""


@dataclass(frozen=True)
class Subscribed(Event):
    """The master accepted the subscription (again, after a failover, when `failover`)."""

    framework_id: str
    heartbeat_interval_s: float
    weight: float
    failover: bool


@dataclass(frozen=True)
class ConnectionLost(Event):
    """The connection dropped; the SDK is re-connecting. Offers it held are void."""

    reason: str


@dataclass(frozen=True)
class OffersEvent(Event):
    offers: list[pb.Offer]


@dataclass(frozen=True)
class RescindEvent(Event):
    offer_id: str


@dataclass(frozen=True)
class UpdateEvent(Event):
    """A task's new status. `status.timestamp` is the master's time (seconds since the epoch)."""

    status: pb.TaskStatus

    @property
    def task_id(self) -> str:
        return self.status.task_id

    @property
    def state(self) -> int:
        return self.status.state

    @property
    def terminal(self) -> bool:
        return self.status.state in TERMINAL_STATES


@dataclass(frozen=True)
class OutputEvent(Event):
    """Data a task published (`publish()` in the WASM ABI), in order per task. `missed` counts
    the outputs of this task just before this one that never arrived (the master keeps at most
    `outputs_kept` per task for a framework that is away, then drops the oldest); 0 normally.
    Known for tasks this framework launched or already heard output from."""

    task_id: str
    seq: int
    data: bytes
    topic: str
    missed: int = 0


@dataclass(frozen=True)
class ErrorEvent(Event):
    """An error from the master not tied to a call awaiting its answer (a refused decline or
    kill names it by `call_id`)."""

    code: int
    message: str
    call_id: int = 0


@dataclass(frozen=True)
class CallAnswered(Event):
    """Internal: the answer to a call the shell awaits (`accepted`, `module_stored`, an error).
    The core hands it to the shell, never to the user."""

    call_id: int
    event: pb.FrameworkEvent


# ---------------------------------------------------------------------------------------------
# The sans-IO core


class FrameworkProtocol:
    """The framework side of the conversation, as a plain object.

    I/O contract: the shell calls `connection_made()` and sends the subscribe frame it returns,
    feeds every frame received to `receive_frame(data, now)` and handles the events returned,
    sends `frames_to_send()` after each receive, calls `connection_lost(now, reason)` when the
    connection drops, and asks `liveness_deadline()` when to give up on a silent connection.
    Calls (`accept`, `kill`, ...) return `(call_id, frame)`.

    Error handling: `receive_frame` never raises for bad input from the network: an undecodable
    frame is counted in `bad_frames` and logged, and changes nothing.
    """

    def __init__(self, name: str, token: str, *, failover_timeout_s: float = 60.0,
                 role: str = "", framework_id: str = "", framework_secret: bytes = b"",
                 auto_ack: bool = True) -> None:
        self.name = name
        self.token = token
        self.failover_timeout_s = failover_timeout_s
        self.role = role
        self.framework_id = framework_id
        # What the master gave the framework with its id: proves the id when re-subscribing.
        # Keep it wherever the id is kept; never log it.
        self.framework_secret = framework_secret
        self.auto_ack = auto_ack
        self.subscribed = False
        self.heartbeat_interval_s = 0.0
        self.weight = 0.0
        self.offers: dict[str, pb.Offer] = {}
        self._offer_expiry: dict[str, float] = {}   # offer id -> when the master drops it
        self.tasks: dict[str, pb.TaskStatus] = {}
        self.bad_frames = 0
        self.outputs_missed = 0                  # outputs that never arrived (gaps in seq)
        self._next_call_id = 1
        self._subscribe_call_id = 0
        self._reconcile_call_id = 0            # the SDK's own reconciliation after a failover
        self._awaited: set[int] = set()        # call ids whose answer the shell waits for
        self._last_rx = 0.0
        self._disconnected_at: float | None = None
        self._seen_uuids: dict[str, list[bytes]] = {}  # task id -> uuids of delivered updates
        self._output_seq: dict[str, int] = {}    # task id -> last output seq delivered
        self._ended: dict[str, None] = {}        # ended task ids, oldest first
        self._outbox: list[bytes] = []

    # -- connection lifecycle

    def connection_made(self, now: float) -> bytes:
        """A new connection is open: the subscribe frame to send first."""
        self.subscribed = False
        self._last_rx = now
        self._outbox.clear()
        self._subscribe_call_id = self._new_call_id()
        call = pb.FrameworkCall(framework_id=self.framework_id, call_id=self._subscribe_call_id,
                                subscribe=pb.Subscribe(name=self.name, token=self.token,
                                                       failover_timeout_s=self.failover_timeout_s,
                                                       role=self.role,
                                                       framework_secret=self.framework_secret))
        return encode(call)

    def connection_lost(self, now: float) -> list[int]:
        """The connection dropped. Returns the call ids whose answers will never come; offers
        are void (the master rescinds them)."""
        if self.subscribed or self._disconnected_at is None:
            self._disconnected_at = now
        self.subscribed = False
        self.offers.clear()
        self._outbox.clear()
        lost = sorted(self._awaited)
        self._awaited.clear()
        return lost

    def failover_deadline(self) -> float | None:
        """Until when a re-subscribe can still take the framework over (None: not disconnected,
        or never subscribed)."""
        if self._disconnected_at is None or not self.framework_id:
            return None
        return self._disconnected_at + self.failover_timeout_s

    def liveness_deadline(self) -> float:
        """When to declare a connection dead if nothing arrives (inf: no heartbeat known)."""
        if not self.subscribed or self.heartbeat_interval_s <= 0:
            return math.inf
        return self._last_rx + MISSED_PINGS_BEFORE_RECONNECT * self.heartbeat_interval_s

    # -- calls

    def _new_call_id(self) -> int:
        call_id = self._next_call_id
        # call_id is a uint32 on the wire; 0 means "not an answer".
        self._next_call_id = call_id + 1 if call_id < 0xFFFFFFFF else 1
        return call_id

    def call(self, awaited: bool = False, **kind: Any) -> tuple[int, bytes]:
        """Frame one call, e.g. `call(kill=pb.KillTask(task_id="t1"))`. With `awaited` the
        answer comes back as `CallAnswered` instead of a user event."""
        if not self.framework_id:
            raise FrameworkError("not subscribed yet")
        call_id = self._new_call_id()
        msg = pb.FrameworkCall(framework_id=self.framework_id, call_id=call_id, **kind)
        if awaited:
            self._awaited.add(call_id)
        return call_id, encode(msg)

    def forget_call(self, call_id: int) -> None:
        """The shell stopped waiting (timeout): a late answer becomes a user event."""
        self._awaited.discard(call_id)

    def accept(self, offer_ids: Sequence[str], tasks: Sequence[pb.TaskInfo],
               refuse_seconds: float = 0.0) -> tuple[int, bytes]:
        for offer_id in offer_ids:
            self.offers.pop(offer_id, None)   # used up whatever the answer
        for info in tasks:
            # A task's outputs are numbered from 1: a first one above 1 is a gap.
            self._output_seq.setdefault(info.task_id, 0)
        return self.call(True, accept=pb.Accept(offer_ids=list(offer_ids), launch=list(tasks),
                                                refuse_seconds=refuse_seconds))

    def decline(self, offer_ids: Sequence[str], refuse_seconds: float = 0.0) -> tuple[int, bytes]:
        for offer_id in offer_ids:
            self.offers.pop(offer_id, None)
        return self.call(decline=pb.Decline(offer_ids=list(offer_ids),
                                            refuse_seconds=refuse_seconds))

    def acknowledge(self, task_id: str, uuid: bytes) -> tuple[int, bytes]:
        return self.call(acknowledge=pb.Acknowledge(task_id=task_id, uuid=uuid))

    # -- events

    def receive_frame(self, data: bytes, now: float) -> list[Event]:
        """Handle one frame from the master; the events for the shell (possibly none)."""
        try:
            ev = decode(pb.FrameworkEvent, data, EVENT_LIMITS)
        except DecodeError as e:
            self.bad_frames += 1
            log.warning("dropped an undecodable frame from the master: %s", e)
            return []
        self._last_rx = now
        self._expire_offers(now)
        kind = ev.WhichOneof("event")
        if ev.call_id and ev.call_id == self._subscribe_call_id and not self.subscribed:
            return self._answer_to_subscribe(ev, kind)
        if ev.call_id and ev.call_id in self._awaited:
            self._awaited.discard(ev.call_id)
            return [CallAnswered(ev.call_id, ev)]
        if kind == "offers":
            offers = list(ev.offers.offers)
            for offer in offers:
                self.offers[offer.offer_id] = offer
                if offer.expires_in_s > 0:
                    self._offer_expiry[offer.offer_id] = now + offer.expires_in_s
            return [OffersEvent(offers)] if offers else []
        if kind == "rescind":
            self.offers.pop(ev.rescind.offer_id, None)
            return [RescindEvent(ev.rescind.offer_id)]
        if kind == "update":
            return self._update(ev.update, ev.call_id)
        if kind == "output":
            return self._output(ev.output)
        if kind == "error":
            return [ErrorEvent(ev.error.code, ev.error.message, ev.call_id)]
        # ping (liveness already noted), late answers to calls nobody awaits any more, and
        # event kinds from a newer master: nothing for the user.
        return []

    def _output(self, out: pb.TaskOutput) -> list[Event]:
        """Deliver each output once, in seq order; say when some never arrived."""
        last = self._output_seq.get(out.task_id)
        if out.seq and last is not None and out.seq <= last:
            return []       # re-sent after a reconnect or a master restart: delivered before
        missed = 0
        if out.seq and last is not None and out.seq > last + 1:
            missed = out.seq - last - 1
            self.outputs_missed += missed
            log.warning("task %s: %d output(s) before seq %d never arrived (the master drops "
                        "the oldest past outputs_kept while the framework is away)",
                        out.task_id, missed, out.seq)
        if out.seq:
            self._output_seq[out.task_id] = out.seq
        return [OutputEvent(out.task_id, out.seq, out.data, out.topic, missed)]

    def _expire_offers(self, now: float) -> None:
        for offer_id, deadline in list(self._offer_expiry.items()):
            if deadline <= now or offer_id not in self.offers:
                del self._offer_expiry[offer_id]
                self.offers.pop(offer_id, None)

    def _answer_to_subscribe(self, ev: pb.FrameworkEvent, kind: str | None) -> list[Event]:
        if kind == "error":
            code, message = ev.error.code, ev.error.message
            if self.framework_id and code == pb.NOT_FOUND:
                raise FailoverExpired(f"the master no longer knows framework "
                                      f"{self.framework_id}: {message}")
            raise CallError(code, message)
        if kind != "subscribed":
            self.bad_frames += 1
            raise CallError(pb.INTERNAL, f"expected 'subscribed', the master sent {kind!r}")
        sub = ev.subscribed
        failover = bool(self.framework_id) and sub.framework_id == self.framework_id
        self.framework_id = sub.framework_id
        if sub.framework_secret:  # only with a new framework id
            self.framework_secret = sub.framework_secret
        self.heartbeat_interval_s = sub.heartbeat_interval_s
        self.weight = sub.weight
        self.subscribed = True
        self._disconnected_at = None
        if failover:
            # Updates and answers may have been lost with the old connection: ask for the
            # state of every task (implicit reconciliation).
            self._reconcile_call_id, frame = self.call(reconcile=pb.Reconcile())
            self._outbox.append(frame)
        return [Subscribed(sub.framework_id, sub.heartbeat_interval_s, sub.weight, failover)]

    def _update(self, status: pb.TaskStatus, call_id: int = 0) -> list[Event]:
        """Deliver each status once, an end last. Hidden: a re-sent update (same uuid); any
        status after the task's end was delivered (an end is final), except answers to the
        user's own questions (reconcile, kill); and an answer to the SDK's implicit
        reconciliation that only confirms the state already delivered. Updates carrying a
        uuid are acknowledged all the same."""
        task_id = status.task_id
        seen = self._seen_uuids.setdefault(task_id, [])
        known = self.tasks.get(task_id)
        ended = known is not None and known.state in TERMINAL_STATES
        if status.uuid:
            if status.uuid in seen:
                # Delivered before; our acknowledgement was lost. Acknowledge again, tell nobody.
                if self.auto_ack:
                    self._outbox.append(self.acknowledge(task_id, status.uuid)[1])
                return []
            if ended:
                # The user already has this task's end (from a reconciliation); the master's
                # own update adds nothing. Acknowledged even without auto_ack: the user never
                # sees it, and the master must not re-send it forever.
                seen.append(status.uuid)
                del seen[:-MAX_UUIDS_PER_TASK]
                self._outbox.append(self.acknowledge(task_id, status.uuid)[1])
                return []
        elif call_id and call_id != self._reconcile_call_id:
            # The answer to the user's own reconcile or kill: they asked, so they get it; an
            # end stays the task's last status.
            if ended:
                return [UpdateEvent(status)]
        elif ended or (call_id and known is not None and known.state == status.state):
            return []   # no news: the implicit reconciliation confirms what the user has
        self.tasks[task_id] = status
        if status.state in TERMINAL_STATES:
            self._forget_old_tasks(task_id)
        if status.uuid:
            seen.append(status.uuid)
            # A task has a handful of transitions; bound the memory against a master that
            # invents uuids.
            del seen[:-MAX_UUIDS_PER_TASK]
            if self.auto_ack:
                self._outbox.append(self.acknowledge(task_id, status.uuid)[1])
        return [UpdateEvent(status)]

    def _forget_old_tasks(self, ended: str) -> None:
        self._ended.pop(ended, None)
        self._ended[ended] = None
        while len(self._ended) > MAX_ENDED_TASKS:
            old = next(iter(self._ended))
            del self._ended[old]
            for table in (self.tasks, self._seen_uuids, self._output_seq):
                table.pop(old, None)

    def frames_to_send(self) -> list[bytes]:
        """Frames the core decided to send on its own (acknowledgements, reconciliation)."""
        out, self._outbox = self._outbox, []
        return out


# ---------------------------------------------------------------------------------------------
# Back-off


@dataclass
class Backoff:
    """Exponential back-off with jitter for re-connecting: first, first*2, ... up to `cap`
    seconds, each spread by ±`jitter` so frameworks restarted together do not reconnect
    together."""

    first: float = 0.1
    cap: float = 5.0
    jitter: float = 0.2
    rng: random.Random = field(default_factory=random.Random)
    _attempt: int = 0

    def next_delay(self) -> float:
        base = min(self.cap, self.first * (2 ** self._attempt))
        self._attempt += 1
        return base * (1 + self.rng.uniform(-self.jitter, self.jitter))

    def reset(self) -> None:
        self._attempt = 0


# ---------------------------------------------------------------------------------------------
# The Trio shell


class _Fatal:
    """Sentinel on the event channel: the framework ended with `error`."""

    def __init__(self, error: FrameworkError) -> None:
        self.error = error


class _Waiter:
    __slots__ = ("done", "event", "error")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.event: pb.FrameworkEvent | None = None
        self.error: FrameworkError | None = None


class Framework:
    """A framework connected to a master. Create it with `Framework.connect(...)`.

    Args:
      master: "ws://host:port" (the `/framework` path is added when missing).
      name, token, role: what `Subscribe` carries.
      failover_timeout_s: how long the master keeps this framework's tasks after a disconnect.
      framework_id, framework_secret: fail over into an existing framework instead of
        registering a new one (both as `framework_id` / `framework_secret` gave them).
      auto_ack: acknowledge status updates once they are queued for `events()`.
      call_timeout_s: how long `accept`/`upload` wait for their answer.
      connect_timeout_s: how long the first subscription may take (re-tries included).
      max_module_bytes: `upload` refuses bigger modules without sending them (the master's
        `module_max_bytes`, 1 MiB by default).

    Resource handling: `connect` runs the connection task in its own nursery and closes the
    connection when the `async with` block ends; the master then keeps the tasks for
    `failover_timeout_s` (call `teardown()` to end them now).

    Error handling: connection drops are retried with back-off and reported as `ConnectionLost`
    and `Subscribed(failover=True)` events; calls in flight raise `Disconnected`. Refused
    calls raise `CallError`. A refused (re-)subscription — wrong token, failover window
    passed — ends the framework: `events()` and every call then raise that error. A master
    address that is not ws:// or wss:// raises ValueError here; a module over
    `max_module_bytes` raises `ModuleTooLarge` from `upload` before anything is sent.
    """

    def __init__(self, master: str, *, name: str, token: str, failover_timeout_s: float = 60.0,
                 role: str = "", framework_id: str = "", framework_secret: bytes = b"",
                 auto_ack: bool = True, call_timeout_s: float = 10.0,
                 connect_timeout_s: float = 10.0, backoff: Backoff | None = None,
                 max_module_bytes: int = MAX_MODULE_BYTES) -> None:
        self.url = framework_url(master)
        self.max_module_bytes = max_module_bytes
        self.core = FrameworkProtocol(name, token, failover_timeout_s=failover_timeout_s,
                                      role=role, framework_id=framework_id,
                                      framework_secret=framework_secret, auto_ack=auto_ack)
        self.call_timeout_s = call_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.backoff = backoff or Backoff()
        self._ws: trio_websocket.WebSocketConnection | None = None
        self._changed = trio.Event()   # set (and replaced) whenever _ws or _fatal changes
        self._waiters: dict[int, _Waiter] = {}
        self._fatal: FrameworkError | None = None
        self._closing = False
        self._started = False                  # the first subscription succeeded
        self._run_scope = trio.CancelScope()   # the connection task's; teardown cancels it
        self._send_lock = trio.Lock()
        # Unbounded on purpose: the receive task must never block on a slow consumer, or the
        # answer to an `accept` the consumer awaits would queue behind the events it does not
        # read. Events are small and the consumer drains them.
        self._events_in, self._events_out = trio.open_memory_channel[Any](math.inf)

    # -- construction

    @classmethod
    @asynccontextmanager
    async def connect(cls, master: str, **kwargs: Any) -> AsyncIterator[Framework]:
        """Subscribe and yield the framework (raises `CallError`/`FrameworkError` if the first
        subscription fails within `connect_timeout_s`)."""
        fw = cls(master, **kwargs)
        async with open_service_nursery() as nursery:
            await nursery.start(fw._run)
            try:
                yield fw
            finally:
                fw._closing = True
                nursery.cancel_scope.cancel()

    # -- what users read

    @property
    def framework_id(self) -> str:
        return self.core.framework_id

    @property
    def framework_secret(self) -> bytes:
        """Proves `framework_id` is this framework's: a process taking it over after a crash
        passes both to `Framework.connect`. Keep it as secret as the token."""
        return self.core.framework_secret

    @property
    def offers(self) -> dict[str, pb.Offer]:
        """Live offers (neither used, declined nor rescinded), by id."""
        return self.core.offers

    @property
    def tasks(self) -> dict[str, pb.TaskStatus]:
        """The last status of every task this framework heard of."""
        return self.core.tasks

    async def events(self) -> AsyncIterator[Event]:
        """Offers, rescinds, updates, outputs, errors and connection changes, in arrival order.
        Raises the fatal error when the framework ends."""
        async for item in self._events_out:
            if isinstance(item, _Fatal):
                raise item.error
            yield item

    async def next_event(self) -> Event:
        item = await self._events_out.receive()
        if isinstance(item, _Fatal):
            raise item.error
        return item

    # -- calls

    async def accept(self, offer_ids: Sequence[str] | str, tasks: Sequence[pb.TaskInfo],
                     refuse_seconds: float = 0.0) -> list[str]:
        """Launch `tasks` on the offers (all from one agent). Returns the accepted task ids."""
        ids = [offer_ids] if isinstance(offer_ids, str) else list(offer_ids)
        ev = await self._awaited_call(*self.core.accept(ids, tasks, refuse_seconds))
        if ev.WhichOneof("event") != "accepted":
            raise CallError(pb.INTERNAL, f"expected 'accepted', got {ev.WhichOneof('event')!r}")
        return list(ev.accepted.task_ids)

    async def launch(self, offer: pb.Offer, task_id: str, spec: pb.TaskSpec,
                     refuse_seconds: float = 0.0) -> None:
        """Launch one task on one offer."""
        await self.accept([offer.offer_id], [task_info(task_id, spec)], refuse_seconds)

    async def upload(self, data: bytes, format: pb.ModuleFormat = pb.WASM_MODULE,
                     name: str = "") -> Module:
        """Store a module at the master; returns its reference (sha256, size). Raises
        `ModuleTooLarge` without sending anything for a module over `max_module_bytes`."""
        if len(data) > self.max_module_bytes:
            raise ModuleTooLarge(module_too_large(len(data), self.max_module_bytes))
        call = self.core.call(True, upload=pb.UploadModule(format=format, data=data, name=name))
        ev = await self._awaited_call(*call)
        if ev.WhichOneof("event") != "module_stored":
            raise CallError(pb.INTERNAL,
                            f"expected 'module_stored', got {ev.WhichOneof('event')!r}")
        stored = ev.module_stored
        expected = hashlib.sha256(data).digest()
        if stored.sha256 != expected:
            raise FrameworkError(f"the master stored the module as {stored.sha256.hex()}, "
                                 f"its bytes hash to {expected.hex()}")
        return Module(stored.sha256, stored.size, stored.format or format)

    async def decline(self, offer_ids: Sequence[str] | str, refuse_seconds: float = 0.0) -> None:
        ids = [offer_ids] if isinstance(offer_ids, str) else list(offer_ids)
        await self._send(self.core.decline(ids, refuse_seconds)[1])

    async def kill(self, task_id: str) -> None:
        await self._send(self.core.call(kill=pb.KillTask(task_id=task_id))[1])

    async def reconcile(self, task_ids: Sequence[str] = ()) -> None:
        """Ask for the status of these tasks (none: all of this framework's)."""
        await self._send(self.core.call(reconcile=pb.Reconcile(task_ids=list(task_ids)))[1])

    async def acknowledge(self, status: pb.TaskStatus) -> None:
        """Acknowledge an update (only needed with `auto_ack=False`)."""
        if status.uuid:
            await self._send(self.core.acknowledge(status.task_id, status.uuid)[1])

    async def revive(self) -> None:
        await self._send(self.core.call(revive=pb.Revive())[1])

    async def suppress(self) -> None:
        await self._send(self.core.call(suppress=pb.Suppress())[1])

    async def teardown(self) -> None:
        """End the framework at the master: its tasks are killed. The connection closes."""
        await self._send(self.core.call(teardown=pb.Teardown())[1])
        self._closing = True
        self._run_scope.cancel()

    # -- internals

    def _check_alive(self) -> None:
        if self._fatal is not None:
            raise self._fatal
        if self._closing:
            raise FrameworkError("the framework is closed")

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _send(self, frame: bytes) -> None:
        """Send one frame, waiting while the SDK re-connects."""
        self._check_alive()
        while (ws := self._ws) is None:
            await self._changed.wait()
            self._check_alive()
        try:
            async with self._send_lock:
                await ws.send_message(frame)
        except trio_websocket.ConnectionClosed as e:
            raise Disconnected(describe_connection_error(e)) from None

    async def _awaited_call(self, call_id: int, frame: bytes) -> pb.FrameworkEvent:
        waiter = self._waiters[call_id] = _Waiter()
        try:
            with trio.move_on_after(self.call_timeout_s) as scope:
                await self._send(frame)
                await waiter.done.wait()
            if scope.cancelled_caught:
                raise FrameworkError(f"no answer from the master within {self.call_timeout_s} s")
        finally:
            self._waiters.pop(call_id, None)
            self.core.forget_call(call_id)
        if waiter.error is not None:
            raise waiter.error
        assert waiter.event is not None
        if waiter.event.WhichOneof("event") == "error":
            raise CallError(waiter.event.error.code, waiter.event.error.message)
        return waiter.event

    def _fail_waiters(self, call_ids: Iterable[int], error: FrameworkError) -> None:
        for call_id in call_ids:
            waiter = self._waiters.get(call_id)
            if waiter is not None and not waiter.done.is_set():
                waiter.error = error
                waiter.done.set()

    async def _run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                   ) -> None:
        """The connection task: connect, subscribe, receive; on a drop, back off and fail over.
        Ends when cancelled, torn down, or when the master refuses the framework."""
        try:
            with self._run_scope:
                await self._connect_loop(task_status)
        except FrameworkError as e:
            if not self._started:
                raise
            self._end(e)
        finally:
            self._ws = None
            self._fail_waiters(list(self._waiters), FrameworkError("the framework is closed"))
            self._notify()
            self._events_in.close()

    async def _connect_loop(self, task_status: trio.TaskStatus[None]) -> None:
        first_deadline = trio.current_time() + self.connect_timeout_s
        while not self._closing:
            try:
                await self._connection(None if self._started else task_status)
                reason = "closed by the master"
            except (OSError, trio_websocket.HandshakeError,
                    trio_websocket.ConnectionClosed, _Silent) as e:
                reason = _describe(e)
            except CallError as e:
                if e.code in (pb.UNAUTHENTICATED, pb.BAD_REQUEST, pb.FORBIDDEN, pb.UNSUPPORTED):
                    raise
                reason = str(e)     # UNAVAILABLE (master recovering) and the like: retry
            self._disconnect(reason)
            if self._closing:
                return
            now = trio.current_time()
            failover = self.core.failover_deadline()
            if failover is not None and now > failover:
                raise FailoverExpired(f"could not re-subscribe within the failover timeout "
                                      f"({self.core.failover_timeout_s:g} s): {reason}")
            if not self._started and now > first_deadline:
                raise FrameworkError(f"cannot subscribe at {self.url}: {reason}")
            await trio.sleep(self.backoff.next_delay())

    def _end(self, error: FrameworkError) -> None:
        log.error("framework %s ended: %s", self.core.framework_id, error)
        self._fatal = error
        self._fail_waiters(list(self._waiters), error)
        self._events_in.send_nowait(_Fatal(error))
        self._notify()   # wake senders so they see the error

    def _disconnect(self, reason: str) -> None:
        was_up = self._ws is not None
        self._ws = None
        if was_up:
            self._notify()
        lost = self.core.connection_lost(trio.current_time())
        self._fail_waiters(lost, Disconnected(f"connection lost ({reason})"))
        if was_up and not self._closing:
            log.warning("connection to %s lost: %s; re-connecting", self.url, reason)
            self._events_in.send_nowait(ConnectionLost(reason))

    async def _connection(self, task_status: trio.TaskStatus[None] | None) -> None:
        async with trio_websocket.open_websocket_url(
                self.url, max_message_size=MAX_FRAME_BYTES,
                connect_timeout=self.connect_timeout_s, disconnect_timeout=1) as ws:
            await ws.send_message(self.core.connection_made(trio.current_time()))
            while True:
                with trio.move_on_at(self._receive_deadline()):
                    data = await ws.get_message()
                    break
                raise _Silent("no answer to the subscription")
            for ev in self.core.receive_frame(_as_bytes(data), trio.current_time()):
                self._dispatch(ev)
            if not self.core.subscribed:
                raise CallError(pb.INTERNAL, "the master did not answer the subscription")
            self._ws = ws
            self._notify()
            self.backoff.reset()
            if task_status is not None:
                self._started = True
                task_status.started()
            await self._flush(ws)
            while True:
                with trio.move_on_at(self.core.liveness_deadline()):
                    data = await ws.get_message()
                    for ev in self.core.receive_frame(_as_bytes(data), trio.current_time()):
                        self._dispatch(ev)
                    await self._flush(ws)
                    continue
                raise _Silent(f"nothing heard for {MISSED_PINGS_BEFORE_RECONNECT} heartbeat "
                              f"intervals")

    def _receive_deadline(self) -> float:
        return trio.current_time() + self.call_timeout_s

    async def _flush(self, ws: trio_websocket.WebSocketConnection) -> None:
        for frame in self.core.frames_to_send():
            async with self._send_lock:
                await ws.send_message(frame)

    def _dispatch(self, ev: Event) -> None:
        if isinstance(ev, CallAnswered):
            waiter = self._waiters.get(ev.call_id)
            if waiter is not None:
                waiter.event = ev.event
                waiter.done.set()
            return
        self._events_in.send_nowait(ev)


class _Silent(Exception):
    """The connection went quiet past its liveness deadline."""


def _describe(e: BaseException) -> str:
    if isinstance(e, trio_websocket.ConnectionClosed | OSError | trio_websocket.HandshakeError):
        return describe_connection_error(e)
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


def describe_connection_error(e: BaseException) -> str:
    """Why a connection to the master failed or ended, in words a user can act on.

    trio-websocket raises a `HandshakeError` without text for a failed connect, caused by
    Trio's "all attempts to connect ... failed" `OSError`, caused by a group of the real
    errors (connection refused, unknown host): the innermost one says what happened."""
    if isinstance(e, trio_websocket.ConnectionClosed):
        reason = e.reason
        if reason is None:
            return "connection closed"
        if reason.code == 1009:
            return (f"the master refused a message over its size limit ({reason.reason or ''}) "
                    "and closed the connection")
        text = f"{reason.code} {reason.name}" + (f": {reason.reason}" if reason.reason else "")
        return f"connection closed ({text})"
    if isinstance(e, trio_websocket.ConnectionRejected):
        return (f"HTTP {e.status_code} instead of a WebSocket handshake: is this the "
                "master's WebSocket port (5690 by default)?")
    if isinstance(e, trio_websocket.ConnectionTimeout):
        return "no answer to the WebSocket handshake in time: is the master running there?"
    cause: BaseException | None = e
    while cause is not None:
        while isinstance(cause, BaseExceptionGroup) and cause.exceptions:
            cause = cause.exceptions[0]
        if isinstance(cause, socket.gaierror):
            return f"unknown host ({cause.strerror}): check the master address"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused: is the master running, and is this its WebSocket port?"
        if isinstance(cause, OSError) and cause.strerror:
            return f"{cause.strerror}: check the master address and that the master is running"
        if cause.__cause__ is None and str(cause):
            return f"{type(cause).__name__}: {cause}"
        cause = cause.__cause__
    return type(e).__name__


def _as_bytes(data: bytes | str) -> bytes:
    # The protocol uses binary frames only; a text frame is decoded as garbage and dropped.
    return data if isinstance(data, bytes) else data.encode()


def module_too_large(size: int, limit: int) -> str:
    return (f"module of {size} bytes is over the limit of {limit} bytes "
            f"({limit / (1024 * 1024):g} MiB) for one module: make it smaller")


def framework_url(master: str) -> str:
    """"ws://h:p" (or "h:p", or "ws://h:p/state") -> "ws://h:p/framework"."""
    return endpoint_url(master, "/framework")


def endpoint_url(master: str, path: str) -> str:
    """The master's WebSocket resource `path` ("/framework", "/state") at address `master`.
    Raises ValueError, saying what to give instead, for an address that is not ws:// or
    wss:// (an http:// or coap:// address is a common slip)."""
    given = master
    if "://" not in master:
        master = "ws://" + master
    scheme, rest = master.split("://", 1)
    host = rest.split("/", 1)[0]
    if scheme not in ("ws", "wss") or not host:
        hint = " (coap:// is how agents reach the master)" if scheme == "coap" else ""
        raise ValueError(f"master address {given!r} is not a WebSocket address{hint}: give "
                         "ws://HOST:PORT, the master's WebSocket port (5690 by default)")
    return f"{scheme}://{host}{path}"
