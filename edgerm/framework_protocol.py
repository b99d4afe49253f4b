"""The framework side of the conversation with the master, sans-IO: `FrameworkProtocol`.

It turns calls into frames, frames into events, keeps the framework id and its secret, the live
offers, the last status of every task, and decides what to send back on its own
(acknowledgements, the reconciliation after a failover). It never reads a clock: every entry
point that needs time takes `now`. The Trio shell driving it is `edgerm.framework.Framework`
(see that module's docstring for the delivery guarantees); this module also holds the
vocabulary both share: the SDK's errors and the events `Framework.events()` yields.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from edgerm.wire import DEFAULT_LIMITS, DecodeError, Limits, decode, encode, pb

__all__ = [
    "TERMINAL_STATES", "MISSED_PINGS_BEFORE_RECONNECT", "state_name", "reason_name",
    "FrameworkError", "CallError", "Disconnected", "FailoverExpired", "ModuleTooLarge",
    "Event", "Subscribed", "ConnectionLost", "OffersEvent", "RescindEvent", "UpdateEvent",
    "OutputEvent", "ErrorEvent", "CallAnswered", "FrameworkProtocol",
]

# The SDK's one logger, shared with the Trio shell.
log = logging.getLogger("edgerm.framework")

TERMINAL_STATES = frozenset({pb.FINISHED, pb.FAILED, pb.KILLED, pb.ERROR, pb.LOST, pb.DROPPED})

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
    """The master refused a call: `code` is a `pb.ErrorCode`, `message` says what to do;
    `leader`: for NOT_LEADER, the leading master's URL if the refusing standby knows it."""

    def __init__(self, code: int, message: str, leader: str = "") -> None:
        self.code = code
        self.message = message
        self.leader = leader
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
    kill names it by `call_id`). NOT_LEADER (the master became a standby) names the leader in
    `leader` when known; the SDK moves there by itself if it is one of its masters."""

    code: int
    message: str
    call_id: int = 0
    leader: str = ""


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
            return [ErrorEvent(ev.error.code, ev.error.message, ev.call_id, ev.error.leader)]
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
            raise CallError(code, message, ev.error.leader)
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
