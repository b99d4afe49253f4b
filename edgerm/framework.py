"""The framework SDK: subscribe to an EdgeRM master, take offers, launch and follow tasks (Trio).

Theory of operation
-------------------
A framework is a Mesos-style scheduler. It opens a WebSocket to the master's `/framework`
resource, sends `FrameworkCall{subscribe}` and receives `FrameworkEvent`s: offers (one per agent),
rescinds, task status updates, published task output, errors and pings (docs/protocol.md,
"Frameworks"). It answers offers with `accept` (launching `TaskInfo`s) or `decline`.

The SDK has three layers, from pure to I/O, one module each; this module re-exports the names of
the other two, so `from edgerm.framework import ...` (or `from edgerm import ...`) is all a
framework needs:

1. `edgerm.tasks`, helpers with no state: `Constraints` (does an offer fit, and which resources a
   task on it takes) and the task builders `wasm_task`, `docker_task`, `micropython_task`,
   `task_info`.
2. `edgerm.framework_protocol`: `FrameworkProtocol`, the sans-IO core. It turns calls into frames,
   frames into events, keeps the framework id and its secret, the live offers, the last status of
   every task, and decides what to send back on its own (acknowledgements, the reconciliation
   after a failover). It never reads a clock: every entry point that needs time takes `now`. The
   SDK's errors and events live there too.
3. `Framework` (here), the Trio shell: one connection task in a nursery that connects, subscribes,
   receives, re-connects with back-off and fails over (re-subscribes with its framework id and
   secret) while the master still keeps the framework (`failover_timeout_s`). Users iterate
   `events()` and await calls (`accept`, `upload`, ...). The WebSocket connection itself (open,
   send, receive, close) is the shared transport's client, `edgerm.transport.websocket`; the
   reconnect loop is the SDK's own, as it is a failover with deadlines, not a plain re-dial.

Several masters (docs/ha.md): `master` may be a list (or a comma-separated string). A standby
refuses the subscription with NOT_LEADER naming the leader; the SDK goes there if that URL is
one of its masters, else to the next one, and it moves on after a lost connection or a timeout
too (`edgerm.masters.MasterList`). It keeps its framework id and secret, its tasks and the
updates not yet acknowledged: at the leader it fails over (re-subscribes with id and secret)
and reconciles, as after any reconnect.

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

import hashlib
import logging
import math
import random
import socket
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trio
from trio_websocket import ConnectionRejected, ConnectionTimeout

from edgerm.framework_protocol import (
    MISSED_PINGS_BEFORE_RECONNECT,
    TERMINAL_STATES,
    CallAnswered,
    CallError,
    ConnectionLost,
    Disconnected,
    ErrorEvent,
    Event,
    FailoverExpired,
    FrameworkError,
    FrameworkProtocol,
    ModuleTooLarge,
    OffersEvent,
    OutputEvent,
    RescindEvent,
    Subscribed,
    UpdateEvent,
    reason_name,
    state_name,
)
from edgerm.masters import MasterList, split_urls
from edgerm.service_nursery import open_service_nursery
from edgerm.tasks import (
    DOCKER,
    MICROPYTHON,
    WASM,
    Constraints,
    Module,
    docker_task,
    micropython_task,
    task_info,
    wasm_task,
)
from edgerm.tls import TlsError
from edgerm.transport.websocket import (
    RECONNECTABLE,
    ConnectionClosed,
    HandshakeError,
    WebSocketConfig,
    WsConnection,
    connect_websocket,
)
from edgerm.wire import pb

__all__ = [
    "WASM", "DOCKER", "MICROPYTHON", "TERMINAL_STATES", "state_name", "reason_name",
    "FrameworkError", "CallError", "Disconnected", "FailoverExpired", "ModuleTooLarge",
    "MAX_MODULE_BYTES", "describe_connection_error", "endpoint_url",
    "Module", "Constraints", "wasm_task", "docker_task", "micropython_task", "task_info",
    "Event", "Subscribed", "ConnectionLost", "OffersEvent", "RescindEvent", "UpdateEvent",
    "OutputEvent", "ErrorEvent", "CallAnswered",
    "FrameworkProtocol", "Backoff", "Framework",
]

# The WebSocket default (1 MiB, WebSocketConfig.max_message_size) would cap module uploads;
# modules for small agents are a few KiB, Linux WASM modules well under this.
MAX_FRAME_BYTES = 8 * 1024 * 1024

# The master's default limit on one module (`module_max_bytes`). `upload` checks it before
# sending: a bigger module would only be refused, after megabytes on a slow link, or (over the
# master's frame limit) end the connection. Pass `max_module_bytes` for a master set higher.
MAX_MODULE_BYTES = 1024 * 1024

log = logging.getLogger("edgerm.framework")


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
      master: "ws://host:port" (the `/framework` path is added when missing), or several
        masters: a list, or one string of comma-separated addresses.
      name, token, role: what `Subscribe` carries.
      failover_timeout_s: how long the master keeps this framework's tasks after a disconnect.
      framework_id, framework_secret: fail over into an existing framework instead of
        registering a new one (both as `framework_id` / `framework_secret` gave them).
      auto_ack: acknowledge status updates once they are queued for `events()`.
      call_timeout_s: how long `accept`/`upload` wait for their answer.
      connect_timeout_s: how long the first subscription may take (re-tries included).
      max_module_bytes: `upload` refuses bigger modules without sending them (the master's
        `module_max_bytes`, 1 MiB by default).
      ca_file: the PEM CA certificates a wss:// master's certificate must chain to (default:
        `EDGERM_CA_FILE`, else the system's trust store). A certificate that does not verify
        is a `TlsError` (an OSError) naming what was wrong: retried like a lost connection,
        then the first subscription's `FrameworkError` carries its text.

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

    def __init__(self, master: str | Sequence[str], *, name: str, token: str,
                 failover_timeout_s: float = 60.0,
                 role: str = "", framework_id: str = "", framework_secret: bytes = b"",
                 auto_ack: bool = True, call_timeout_s: float = 10.0,
                 connect_timeout_s: float = 10.0, backoff: Backoff | None = None,
                 max_module_bytes: int = MAX_MODULE_BYTES, ca_file: str | None = None) -> None:
        given = split_urls([master] if isinstance(master, str) else master)
        self.masters = MasterList(framework_url(m) for m in given or [""])
        self._hint: str | None = None   # a NOT_LEADER refusal's leader ("" none) to act on
        self._followed = 0              # named leaders followed at once, in a row
        self.max_module_bytes = max_module_bytes
        # wss:// masters are verified against this CA file (else EDGERM_CA_FILE, else the
        # system's trust store: edgerm.tls).
        self.ca_file = ca_file
        self.core = FrameworkProtocol(name, token, failover_timeout_s=failover_timeout_s,
                                      role=role, framework_id=framework_id,
                                      framework_secret=framework_secret, auto_ack=auto_ack)
        self.call_timeout_s = call_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.backoff = backoff or Backoff()
        # The shared WebSocket client: no transport pings, the master's heartbeat frames and the
        # core's liveness deadline find a dead connection; one received frame buffered (the
        # receive loop reads at once), of up to MAX_FRAME_BYTES.
        self._ws_config = WebSocketConfig(ping_interval=None, max_message_size=MAX_FRAME_BYTES,
                                          message_queue_size=1,
                                          connect_timeout=connect_timeout_s,
                                          disconnect_timeout=1.0)
        self._ws: WsConnection | None = None
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
    async def connect(cls, master: str | Sequence[str], **kwargs: Any
                      ) -> AsyncIterator[Framework]:
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
    def url(self) -> str:
        """The master in use now (its /framework URL)."""
        return self.masters.current

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
                await ws.send(frame)
        except ConnectionClosed as e:
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
            except TlsError as e:
                # A certificate that does not verify stays so until someone changes it:
                # before the first subscription, with no other master to try, say so now.
                if not self._started and len(self.masters) < 2:
                    raise FrameworkError(f"cannot subscribe at {self.url}: {e}") from None
                reason = str(e)
            except (*RECONNECTABLE, _Silent) as e:
                reason = _describe(e)
            except CallError as e:
                if e.code in (pb.UNAUTHENTICATED, pb.BAD_REQUEST, pb.FORBIDDEN, pb.UNSUPPORTED):
                    raise
                reason = str(e)     # UNAVAILABLE (master recovering) and the like: retry
                if e.code == pb.NOT_LEADER:
                    self._hint = e.leader
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
            if not await self._next_master():
                await trio.sleep(self.backoff.next_delay())

    async def _next_master(self) -> bool:
        """After a refusal or a lost connection: move to the next master (the named leader if
        it is one of ours). True when the move needs no back-off first (following a named
        leader, a few times in a row at most: masters mid-failover may name each other)."""
        hint, self._hint = self._hint, None
        if len(self.masters) < 2:
            return False
        old = self.url
        new = self.masters.refused(hint) if hint is not None else self.masters.rotate()
        if hint and self.masters.find(hint) is None:
            log.warning("the master at %s is a standby naming %s, which is not one of this "
                        "framework's masters; trying %s", old, hint, new)
        else:
            log.info("trying the master at %s (%s was %s)", new, old,
                     "a standby" if hint is not None else "unreachable")
        if hint and new != old and self.masters.find(hint) is not None and self._followed < 3:
            self._followed += 1
            return True
        self._followed = 0
        return False

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
        async with connect_websocket(self.url, config=self._ws_config,
                                     ca_file=self.ca_file) as ws:
            await ws.send(self.core.connection_made(trio.current_time()))
            while True:
                with trio.move_on_at(self._receive_deadline()):
                    data = await ws.receive()
                    break
                raise _Silent("no answer to the subscription")
            for ev in self.core.receive_frame(data, trio.current_time()):
                self._dispatch(ev)
            if not self.core.subscribed:
                raise CallError(pb.INTERNAL, "the master did not answer the subscription")
            self._ws = ws
            self._notify()
            self.backoff.reset()
            self._followed = 0
            if task_status is not None:
                self._started = True
                task_status.started()
            await self._flush(ws)
            while True:
                with trio.move_on_at(self.core.liveness_deadline()):
                    data = await ws.receive()
                    for ev in self.core.receive_frame(data, trio.current_time()):
                        self._dispatch(ev)
                    await self._flush(ws)
                    continue
                raise _Silent(f"nothing heard for {MISSED_PINGS_BEFORE_RECONNECT} heartbeat "
                              f"intervals")

    def _receive_deadline(self) -> float:
        return trio.current_time() + self.call_timeout_s

    async def _flush(self, ws: WsConnection) -> None:
        for frame in self.core.frames_to_send():
            async with self._send_lock:
                await ws.send(frame)

    def _dispatch(self, ev: Event) -> None:
        if isinstance(ev, ErrorEvent) and ev.code == pb.NOT_LEADER:
            self._hint = ev.leader   # this master stepped down; it closes the connection
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
    if isinstance(e, ConnectionClosed | OSError | HandshakeError):
        return describe_connection_error(e)
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


def describe_connection_error(e: BaseException) -> str:
    """Why a connection to the master failed or ended, in words a user can act on.

    trio-websocket raises a `HandshakeError` without text for a failed connect, caused by
    Trio's "all attempts to connect ... failed" `OSError`, caused by a group of the real
    errors (connection refused, unknown host): the innermost one says what happened. A TLS
    failure (`edgerm.tls.TlsError`) says what was wrong with the master's certificate."""
    if isinstance(e, TlsError):
        return str(e)
    if isinstance(e, ConnectionClosed):
        reason = e.reason
        if reason is None:
            return "connection closed"
        if reason.code == 1009:
            return (f"the master refused a message over its size limit ({reason.reason or ''}) "
                    "and closed the connection")
        text = f"{reason.code} {reason.name}" + (f": {reason.reason}" if reason.reason else "")
        return f"connection closed ({text})"
    if isinstance(e, ConnectionRejected):
        return (f"HTTP {e.status_code} instead of a WebSocket handshake: is this the "
                "master's WebSocket port (5690 by default)?")
    if isinstance(e, ConnectionTimeout):
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
