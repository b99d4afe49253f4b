"""Trio shell for the CoAP core: a UDP server routing to async handlers, and a client.

Design (why it looks like this):

* All protocol decisions are in :class:`edgerm.coap.CoapEndpoint`; this module only moves
  datagrams, runs handlers and arms one timer — the aioquic ``transmit()`` pattern.
* The receive loop never awaits anything a peer controls. It reads every datagram that is
  ready from a non-blocking socket (``trio.lowlevel.wait_readable`` then ``recvfrom`` until
  ``BlockingIOError``), feeds the core, and hands requests to a fixed pool of handler tasks
  through a bounded channel with ``send_nowait``; when the channel is full the request is
  answered 5.03 and counted. Sends are non-blocking too; a full socket buffer drops the
  datagram (counted) and retransmission, which is the core's job, recovers CON traffic.
  Reading and writing the raw socket directly instead of through ``trio.socket`` saves a
  scheduler round-trip per datagram, which is most of the cost at 20k requests/s.
* A fixed pool of workers rather than a task per request: it bounds memory and concurrency
  (``handler_workers``, ``max_pending_requests``) and costs less per request than spawning.
  Each handler runs under ``handler_timeout``; a slow one occupies one worker only.
* The queue in front of the workers (:class:`_WorkQueue`) is fair to peers: one peer (address
  and port) may have at most ``max_pending_per_peer`` requests waiting or running, all ports of
  one address together ``max_pending_per_ip``, and when the queue is full a request from a peer
  holding fewer displaces the newest request of the peer holding the most. A flood from a few
  sources therefore delays a well-behaved client by at most one queue's worth of work and does
  not get it refused; a flood from many ports of one address takes at most its share.
* The timer task sleeps in a cancel scope whose deadline is the core's ``get_timer()``;
  every ``_transmit()`` pulls that deadline earlier if needed, so there is one timer, never a
  sleep per message.

Resource handling: sockets are opened inside ``serve()`` / ``open_coap_client()`` and closed
when they exit, including by cancellation; every task lives in their nursery.

Error handling: malformed datagrams, socket send errors and ICMP errors surfacing as
``OSError`` on receive are counted in ``stats`` and never end the loop. An exception escaping
a handler is logged and answered 5.00; :class:`~edgerm.coap.errors.RenderableError` is
answered with its code.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import math
import random
import socket
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, NoReturn

import outcome
import trio

from edgerm.coap.codes import Code, code_str, is_success
from edgerm.coap.config import CoapConfig
from edgerm.coap.endpoint import CoapEndpoint
from edgerm.coap.errors import RenderableError
from edgerm.coap.events import (
    Addr,
    ObserverGone,
    RequestFailed,
    RequestReceived,
    ResponseReceived,
)
from edgerm.coap.linkformat import WELL_KNOWN_CORE, Link, format_links
from edgerm.coap.message import Option
from edgerm.coap.options import CF_LINK_FORMAT
from edgerm.service_nursery import open_service_nursery

log = logging.getLogger(__name__)

# Datagrams read per wake-up before yielding, so a flood cannot starve the handler tasks.
_RECV_BATCH = 64
# Receive buffer: bigger than any datagram we accept; oversized ones are refused by the core.
_RECV_SIZE = 65535
# Kernel socket buffers sized for bursts of thousands of small datagrams (capped by the
# kernel's rmem_max/wmem_max).
_SOCKET_BUFFER = 4 * 1024 * 1024
# errnos that a UDP recvfrom reports for an ICMP error from an earlier send; not fatal.
_TRANSIENT_RECV_ERRNOS = {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH,
                          errno.ECONNRESET, errno.EINTR}

# --------------------------------------------------------------------------- handler API


class Request:
    """What a handler sees of one request (Block1 already reassembled)."""

    __slots__ = ("method", "path", "query", "payload", "content_format", "accept", "remote",
                 "confirmable", "options", "observation")

    def __init__(self, event: RequestReceived, observation: Observation | None) -> None:
        self.method: int = event.method
        self.path: tuple[str, ...] = event.path
        self.query: tuple[str, ...] = event.query
        self.payload: bytes = event.payload
        self.content_format: int | None = event.content_format
        self.accept: int | None = event.accept
        self.remote: Addr = event.remote
        self.confirmable: bool = event.confirmable
        self.options: list[Option] = event.options
        #: Present when the client asked to observe (Observe=0 on GET/FETCH). Keep it and
        #: return ``Response(..., observe=True)`` to accept; then ``notify`` it later.
        self.observation = observation

    def __repr__(self) -> str:
        return (f"<Request {code_str(self.method)} /{'/'.join(self.path)} from {self.remote} "
                f"{len(self.payload)}B>")


@dataclass(slots=True)
class Response:
    """What a handler returns."""

    code: int = Code.CONTENT
    payload: bytes = b""
    content_format: int | None = None
    options: Sequence[Option] = ()
    #: Accept the Observe registration carried by the request (ignored otherwise).
    observe: bool = False
    #: Answer duplicates of the request with this response. Default: a success is remembered;
    #: an error is not (a duplicate is handled again), which keeps a flood of bad requests
    #: from holding state. Set True for an error answered after the request changed state.
    remember: bool | None = None


Handler = Callable[[Request], Awaitable[Response]]


class ObservationGone(Exception):
    """The observer is no longer registered (it reset, timed out, or deregistered)."""


class Observation:
    """Server-side handle of one observer: push notifications to it at any later time.

    Its life: created with the request, live once the handler's response accepted it, gone
    when the core reports the observer gone ("reset", "timeout", "deregistered", "ended") or
    the registration was not accepted ("not accepted", "refused" when the limit is reached).
    """

    def __init__(self, server: CoapServer, remote: Addr, path: tuple[str, ...]) -> None:
        self._server = server
        self.remote = remote
        self.path = path
        self.id: int | None = None
        self.reason: str | None = None
        self._gone_event = trio.Event()

    @property
    def gone(self) -> bool:
        return self.reason is not None

    async def notify(self, payload: bytes = b"", *, code: int = Code.CONTENT,
                     content_format: int | None = None,
                     confirmable: bool | None = None) -> None:
        """Send one notification (large payloads go block-wise). Raises ObservationGone.

        Returns once the datagram is handed to the socket, not when it is acknowledged; a
        lost observer shows up later through :meth:`wait_gone`.
        """
        await trio.lowlevel.checkpoint()
        if self.id is None or self.reason is not None:
            raise ObservationGone(self.reason or "not registered")
        server = self._server
        if not server.endpoint.notify(self.id, code, payload, content_format,
                                      confirmable=confirmable, now=trio.current_time()):
            raise ObservationGone(self.reason or "gone")
        server._process_events()
        server._transmit()

    def cancel(self) -> None:
        """Forget this observer on our side."""
        if self.id is not None and self.reason is None:
            self._server.endpoint.end_observation(self.id)
            self._server._process_events()

    async def wait_gone(self) -> str:
        """Wait until the observer is gone; returns the reason."""
        await self._gone_event.wait()
        assert self.reason is not None
        return self.reason

    def _set_gone(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
            self._gone_event.set()


class _Work:
    """One request waiting for (or served by) a handler worker."""

    __slots__ = ("route", "request", "request_id", "peer", "displaced")

    def __init__(self, route: _Route, request: Request, request_id: int) -> None:
        self.route = route
        self.request = request
        self.request_id = request_id
        self.peer: Addr = request.remote
        self.displaced = False


class _WorkQueue:
    """Requests waiting for a handler worker: FIFO, bounded in total and per peer.

    ``held`` counts each peer's requests from admission until ``done()`` (waiting or running),
    ``held_ip`` the same per source address.
    Queued requests per peer are also bucketed by count, so the peer with the most waiting is
    known in O(1) when the queue is full and someone has to give way.
    """

    def __init__(self, limit: int, per_peer: int, per_ip: int) -> None:
        self._limit = limit
        self._per_peer = per_peer
        self._per_ip = per_ip
        self.held_ip: dict[Any, int] = {}
        self._queue: deque[_Work] = deque()
        self._queued = 0  # live entries of _queue (displaced ones are skipped lazily)
        self.held: dict[Addr, int] = {}
        self._waiting: dict[Addr, deque[_Work]] = {}
        # _buckets[n]: peers with exactly n requests waiting; _top: the largest such n.
        self._buckets: list[set[Addr]] = [set() for _ in range(per_peer + 1)]
        self._top = 0
        # Idle workers, longest idle first. A request is handed straight to one (as a memory
        # channel does), so no worker is woken for a request another one took meanwhile.
        self._idle: OrderedDict[trio.lowlevel.Task, None] = OrderedDict()

    def __len__(self) -> int:
        return self._queued

    def put(self, work: _Work) -> tuple[bool, _Work | None]:
        """Admit ``work`` if its peer's quota and the queue allow it; never waits.

        Returns (admitted, displaced): ``displaced`` is a waiting request of the biggest holder
        dropped to make room; the caller answers it (and the refused one) 5.03.
        """
        peer = work.peer
        held = self.held.get(peer, 0)
        ip = peer[0]
        held_ip = self.held_ip.get(ip, 0)
        if held >= self._per_peer or held_ip >= self._per_ip:
            return False, None
        displaced = None
        if self._queued >= self._limit:
            waiting = self._waiting.get(peer)
            mine = len(waiting) if waiting is not None else 0
            # Give way only to someone strictly fairer off, so the displacement converges.
            if self._top <= mine + 1:
                return False, None
            victim_peer = next(iter(self._buckets[self._top]))
            displaced = self._waiting[victim_peer][-1]
            self._unqueue(victim_peer, last=True)
            displaced.displaced = True
            self._release(victim_peer)
            held_ip = self.held_ip.get(ip, 0)  # the victim may share our address
        self.held[peer] = held + 1
        self.held_ip[ip] = held_ip + 1
        if self._idle:
            task, _ = self._idle.popitem(last=False)
            trio.lowlevel.reschedule(task, outcome.Value(work))
            return True, displaced
        waiting = self._waiting.get(peer)
        if waiting is None:
            waiting = self._waiting[peer] = deque()
        n = len(waiting)
        waiting.append(work)
        buckets = self._buckets
        if n:
            buckets[n].discard(peer)
        buckets[n + 1].add(peer)
        if n + 1 > self._top:
            self._top = n + 1
        self._queue.append(work)
        self._queued += 1
        return True, displaced

    async def get(self) -> _Work:
        # Like a memory channel's receive: a checkpoint when a request is already waiting (so
        # a worker whose handlers never yield still lets the receive loop run); otherwise wait
        # to be handed one by put().
        await trio.lowlevel.checkpoint_if_cancelled()
        work = self._pop()
        if work is not None:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return work
        task = trio.lowlevel.current_task()
        self._idle[task] = None

        def abort(_: Any) -> trio.lowlevel.Abort:
            del self._idle[task]
            return trio.lowlevel.Abort.SUCCEEDED

        result: _Work = await trio.lowlevel.wait_task_rescheduled(abort)
        return result

    def _pop(self) -> _Work | None:
        queue = self._queue
        while queue:
            work = queue.popleft()
            if not work.displaced:
                self._unqueue(work.peer, last=False)
                return work
        return None

    def done(self, work: _Work) -> None:
        """The request was answered: its peer's quota is free again."""
        self._release(work.peer)

    def _release(self, peer: Addr) -> None:
        held = self.held
        n = held[peer] - 1
        if n:
            held[peer] = n
        else:
            del held[peer]
        held_ip = self.held_ip
        ip = peer[0]
        n = held_ip[ip] - 1
        if n:
            held_ip[ip] = n
        else:
            del held_ip[ip]

    def _unqueue(self, peer: Addr, *, last: bool) -> None:
        waiting = self._waiting[peer]
        n = len(waiting)
        if last:
            waiting.pop()
        else:
            waiting.popleft()
        self._queued -= 1
        buckets = self._buckets
        buckets[n].discard(peer)
        if n > 1:
            buckets[n - 1].add(peer)
        else:
            del self._waiting[peer]
        while self._top and not buckets[self._top]:
            self._top -= 1


class _WorkerSlot:
    """What the watchdog needs to know about one handler worker."""

    __slots__ = ("scope", "started", "request_id", "request", "work")

    def __init__(self) -> None:
        self.work: _Work | None = None
        self.scope: trio.CancelScope | None = None
        self.started = math.inf
        self.request_id: int | None = None
        self.request: Request | None = None


@dataclass
class _Route:
    handler: Handler
    methods: frozenset[int]
    prefix: bool
    link: Link


class Site:
    """Routes Uri-Path to handlers and renders ``/.well-known/core``.

    ``add("m", h, prefix=True)`` routes ``m`` and everything below it (``m/<sha256>``) to
    ``h``; the handler reads ``request.path``. Exact routes win over prefixes, longer
    prefixes over shorter.
    """

    def __init__(self) -> None:
        self._exact: dict[tuple[str, ...], _Route] = {}
        self._prefixes: dict[tuple[str, ...], _Route] = {}
        self._links_cache: bytes | None = None

    def add(self, path: str, handler: Handler, *,
            methods: Sequence[int] = (Code.GET, Code.POST, Code.PUT, Code.DELETE, Code.FETCH),
            prefix: bool = False, observable: bool = False, rt: str | None = None,
            if_: str | None = None, ct: int | None = None, title: str | None = None) -> None:
        key = tuple(seg for seg in path.strip("/").split("/") if seg)
        attrs: dict[str, str | int | bool] = {}
        if rt:
            attrs["rt"] = rt
        if if_:
            attrs["if"] = if_
        if ct is not None:
            attrs["ct"] = ct
        if observable:
            attrs["obs"] = True
        if title:
            attrs["title"] = title
        route = _Route(handler, frozenset(methods), prefix, Link("/" + "/".join(key), attrs))
        (self._prefixes if prefix else self._exact)[key] = route
        self._links_cache = None

    def resolve(self, path: tuple[str, ...]) -> _Route | None:
        route = self._exact.get(path)
        if route is not None:
            return route
        for n in range(len(path), -1, -1):
            route = self._prefixes.get(path[:n])
            if route is not None:
                return route
        return None

    def links_payload(self) -> bytes:
        if self._links_cache is None:
            routes = list(self._exact.values()) + list(self._prefixes.values())
            self._links_cache = format_links(r.link for r in routes).encode()
        return self._links_cache


# --------------------------------------------------------------------------- UDP plumbing


def _open_udp_socket(family: int, sockaddr: Any) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, opt, _SOCKET_BUFFER)
            except OSError:
                pass  # a smaller buffer only costs burst tolerance
        if family == socket.AF_INET6 and sockaddr[0] in ("::", ""):
            # Dual stack: one socket serves IPv6 and IPv4-mapped peers.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock


async def _resolve(host: str, port: int) -> tuple[int, Any]:
    """(family, sockaddr) for a host; literals skip the resolver."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        if not infos:
            raise OSError(f"cannot resolve {host!r}") from None
        family, _, _, _, sockaddr = infos[0]
        return family, sockaddr
    if ip.version == 6:
        return socket.AF_INET6, (ip.compressed, port, 0, 0)
    return socket.AF_INET, (ip.compressed, port)


@dataclass
class ShellStats:
    """Counters of the Trio shell (the core's are in ``endpoint.stats``)."""

    send_errors: int = 0
    recv_errors: int = 0
    # Requests answered 5.03 because their peer's quota or the queue was full.
    overloaded: int = 0
    # Waiting requests answered 5.03 to make room for a peer holding fewer.
    displaced: int = 0
    handler_errors: int = 0
    handler_timeouts: int = 0


class _UdpShell:
    """What server and client share: the endpoint, sockets, transmit and the one timer."""

    def __init__(self, config: CoapConfig | None, rng: random.Random | None) -> None:
        self.config = config or CoapConfig()
        self.endpoint = CoapEndpoint(self.config, rng=rng)
        self.shell_stats = ShellStats()
        self._sockets: dict[int, socket.socket] = {}
        self._timer_scope = trio.CancelScope()
        self._timer_generation = -1
        self._clock: trio.abc.Clock | None = None

    def _now(self) -> float:
        # trio.current_time() costs ~1 µs through its KeyboardInterrupt-protection wrapper;
        # the clock object itself is the same source (and honours MockClock in tests).
        clock = self._clock
        if clock is None:
            clock = self._clock = trio.lowlevel.current_clock()
        return clock.current_time()

    def _socket_for(self, addr: Addr) -> socket.socket | None:
        return self._sockets.get(socket.AF_INET6 if len(addr) == 4 else socket.AF_INET)

    def _transmit(self) -> None:
        endpoint = self.endpoint
        datagrams = endpoint.datagrams_to_send(self._now())
        if datagrams:
            sockets = self._sockets
            single = next(iter(sockets.values())) if len(sockets) == 1 else None
            for data, addr in datagrams:
                sock = single or self._socket_for(addr)
                if sock is None:
                    self.shell_stats.send_errors += 1
                    continue
                try:
                    sock.sendto(data, addr)
                except OSError:
                    # Includes BlockingIOError: never wait for a peer; CON traffic is
                    # retransmitted by the core, NON is best-effort by definition.
                    self.shell_stats.send_errors += 1
        # Only something newly scheduled can make the next deadline earlier; skip the lookup
        # (and the cancel-scope update) when nothing was.
        if endpoint.timer_generation != self._timer_generation:
            self._timer_generation = endpoint.timer_generation
            deadline = endpoint.get_timer()
            if deadline is not None and deadline < self._timer_scope.deadline:
                self._timer_scope.deadline = deadline

    def _process_events(self) -> None:
        raise NotImplementedError

    async def _timer_loop(self) -> NoReturn:
        endpoint = self.endpoint
        while True:
            deadline = endpoint.get_timer()
            with trio.CancelScope(deadline=math.inf if deadline is None else deadline) as scope:
                self._timer_scope = scope
                await trio.sleep_forever()
            endpoint.handle_timer(self._now())
            self._timer_generation = -1  # re-read the deadline after every expiry run
            self._process_events()
            self._transmit()

    async def _receive_loop(self, sock: socket.socket) -> NoReturn:
        endpoint = self.endpoint
        receive = endpoint.receive_datagram
        while True:
            await trio.lowlevel.wait_readable(sock)
            now = self._now()
            for _ in range(_RECV_BATCH):
                try:
                    data, addr = sock.recvfrom(_RECV_SIZE)
                except BlockingIOError:
                    break
                except OSError as exc:
                    if exc.errno not in _TRANSIENT_RECV_ERRNOS:
                        raise
                    self.shell_stats.recv_errors += 1
                    continue
                receive(data, addr, now)
            self._process_events()
            self._transmit()

    def _close_sockets(self) -> None:
        for sock in self._sockets.values():
            trio.lowlevel.notify_closing(sock)
            sock.close()
        self._sockets.clear()


# --------------------------------------------------------------------------- server


class CoapServer(_UdpShell):
    """A CoAP server for one :class:`Site`. Run ``await nursery.start(server.serve, host, port)``.

    Attributes:
      address: the bound socket address once serving.
      endpoint: the sans-IO core (its ``stats`` count dropped and refused input).
      shell_stats: counters of this shell (overload, send errors, handler failures).
    """

    def __init__(self, site: Site, *, config: CoapConfig | None = None,
                 rng: random.Random | None = None) -> None:
        super().__init__(config, rng)
        self.site = site
        self.address: Addr | None = None
        self._observations: dict[int, Observation] = {}
        cfg = self.config
        self._work = _WorkQueue(cfg.max_pending_requests, cfg.max_pending_per_peer,
                                cfg.max_pending_per_ip)
        self._slots: list[_WorkerSlot] = []

    async def serve(self, host: str, port: int, *,
                    task_status: trio.TaskStatus[Addr] = trio.TASK_STATUS_IGNORED) -> NoReturn:
        """Bind ``host``:``port`` (``"::"`` is dual-stack) and serve until cancelled.

        Reports the bound address through ``task_status.started(address)``.
        """
        family, sockaddr = await _resolve(host, port)
        sock = _open_udp_socket(family, sockaddr)
        self._sockets[family] = sock
        try:
            self.address = sock.getsockname()
            async with trio.open_nursery() as nursery:
                for _ in range(self.config.handler_workers):
                    nursery.start_soon(self._worker)
                nursery.start_soon(self._timer_loop)
                nursery.start_soon(self._watchdog)
                task_status.started(self.address)
                await self._receive_loop(sock)
        finally:
            self._close_sockets()
            for obs in list(self._observations.values()):
                obs._set_gone("server stopped")
            self._observations.clear()
        raise AssertionError("unreachable")  # pragma: no cover

    @property
    def observer_count(self) -> int:
        return self.endpoint.observer_count

    def _process_events(self) -> None:
        endpoint = self.endpoint
        while (event := endpoint.next_event()) is not None:
            if type(event) is RequestReceived:
                self._dispatch(event)
            elif type(event) is ObserverGone:
                obs = self._observations.pop(event.observation_id, None)
                if obs is not None:
                    obs._set_gone(event.reason)

    def _dispatch(self, event: RequestReceived) -> None:
        route = self.site.resolve(event.path)
        endpoint = self.endpoint
        if route is None:
            if event.path == WELL_KNOWN_CORE and event.method == Code.GET:
                endpoint.respond(event.request_id, Code.CONTENT, self.site.links_payload(),
                                 CF_LINK_FORMAT, now=trio.current_time())
            else:
                endpoint.respond(event.request_id, Code.NOT_FOUND)
            return
        if event.method not in route.methods:
            endpoint.respond(event.request_id, Code.METHOD_NOT_ALLOWED)
            return
        observation = None
        if event.observe == 0:
            observation = Observation(self, event.remote, event.path)
        admitted, displaced = self._work.put(
            _Work(route, Request(event, observation), event.request_id))
        if displaced is not None:
            # Answered here, not through _respond: we are inside _process_events already.
            self.shell_stats.displaced += 1
            endpoint.respond(displaced.request_id, Code.SERVICE_UNAVAILABLE, b"overloaded")
            if displaced.request.observation is not None:
                displaced.request.observation._set_gone("not accepted")
        if not admitted:
            self.shell_stats.overloaded += 1
            endpoint.respond(event.request_id, Code.SERVICE_UNAVAILABLE, b"overloaded")

    async def _worker(self) -> NoReturn:
        # One long-lived cancel scope per worker instead of one per request: entering a scope
        # costs more than the whole CoAP core's work for a request. The watchdog cancels the
        # scope of a worker whose handler overran; the worker answers 5.03 and re-enters.
        slot = _WorkerSlot()
        self._slots.append(slot)
        clock = trio.lowlevel.current_clock()
        queue = self._work
        while True:
            with trio.CancelScope() as scope:
                slot.scope = scope
                while True:
                    work = await queue.get()
                    route, request, request_id = work.route, work.request, work.request_id
                    slot.work = work
                    slot.request_id = request_id
                    slot.request = request
                    slot.started = clock.current_time()
                    try:
                        response = await route.handler(request)
                        if not isinstance(response, Response):
                            raise TypeError(f"handler returned {type(response).__name__}, "
                                            "not Response")
                    except RenderableError as exc:
                        response = Response(exc.code, exc.diagnostic_payload())
                    except Exception:
                        self.shell_stats.handler_errors += 1
                        log.exception("CoAP handler for %r failed", request)
                        response = Response(Code.INTERNAL_SERVER_ERROR)
                    slot.started = math.inf
                    slot.request_id = None
                    slot.work = None
                    queue.done(work)
                    self._respond(request_id, request, response)
            if slot.request_id is not None and slot.request is not None:
                self.shell_stats.handler_timeouts += 1
                rid, request = slot.request_id, slot.request
                slot.request_id = None
                slot.started = math.inf
                if slot.work is not None:
                    queue.done(slot.work)
                    slot.work = None
                self._respond(rid, request,
                              Response(Code.SERVICE_UNAVAILABLE, b"handler timed out"))

    async def _watchdog(self) -> NoReturn:
        timeout = self.config.handler_timeout
        # Checking a few times per timeout keeps overruns within ~25% of handler_timeout.
        period = max(0.01, min(1.0, timeout / 4))
        while True:
            await trio.sleep(period)
            limit = trio.current_time() - timeout
            for slot in self._slots:
                if slot.started < limit and slot.scope is not None:
                    slot.scope.cancel()

    def _respond(self, request_id: int, request: Request, response: Response) -> None:
        observation = request.observation
        obs_id = self.endpoint.respond(
            request_id, response.code, response.payload, response.content_format,
            options=response.options, observe=response.observe and observation is not None,
            now=self._now(), remember=response.remember)
        if observation is not None:
            if obs_id is not None:
                observation.id = obs_id
                self._observations[obs_id] = observation
            else:
                refused = response.observe and is_success(response.code)
                observation._set_gone("refused" if refused else "not accepted")
        self._process_events()
        self._transmit()


async def serve_coap(site: Site, host: str, port: int, *, config: CoapConfig | None = None,
                     rng: random.Random | None = None,
                     task_status: trio.TaskStatus[Addr] = trio.TASK_STATUS_IGNORED
                     ) -> NoReturn:
    """Serve ``site`` over CoAP/UDP until cancelled; ``task_status.started(bound_address)``.

    Use :class:`CoapServer` directly when you need its counters.
    """
    await CoapServer(site, config=config, rng=rng).serve(host, port, task_status=task_status)


# --------------------------------------------------------------------------- client


class CoapRequestError(Exception):
    """A request or observation ended without a response (reason in ``args[0]``)."""


class CoapTimeout(CoapRequestError, TimeoutError):
    """No response within the retransmission span or the caller's timeout."""


@dataclass(slots=True)
class ClientResponse:
    code: int
    payload: bytes
    content_format: int | None
    remote: Addr
    #: Observe sequence number for notifications, else None.
    observe: int | None = None
    options: list[Option] = field(default_factory=list, repr=False)

    @property
    def success(self) -> bool:
        return is_success(self.code)


class _Waiter:
    """Results of one request id, consumed by exactly one task."""

    __slots__ = ("queue", "event", "limit", "dropped", "done")

    def __init__(self, limit: int) -> None:
        self.queue: deque[ResponseReceived | RequestFailed] = deque()
        self.event = trio.Event()
        self.limit = limit
        self.dropped = 0
        self.done = False

    def put(self, item: ResponseReceived | RequestFailed) -> None:
        if len(self.queue) >= self.limit:
            # An observer cares about the newest state: drop the oldest notification.
            self.queue.popleft()
            self.dropped += 1
        self.queue.append(item)
        self.event.set()

    async def get(self) -> ResponseReceived | RequestFailed:
        while not self.queue:
            self.event = trio.Event()
            await self.event.wait()
        return self.queue.popleft()


def _split_path(path: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(path, str):
        return tuple(seg for seg in path.strip("/").split("/") if seg)
    return tuple(path)


class ClientObservation:
    """Async iterator over the responses of one Observe registration.

    The first item is the registration's response. Iteration stops after a response that
    ends the observation (no Observe option, e.g. the server declined, or an error code);
    :class:`CoapRequestError` is raised if it fails (e.g. "timeout" of a CON registration).
    """

    def __init__(self, client: CoapClient, request_id: int, waiter: _Waiter) -> None:
        self._client = client
        self.request_id = request_id
        self._waiter = waiter
        self._ended = False

    @property
    def dropped(self) -> int:
        """Notifications discarded because the consumer fell behind."""
        return self._waiter.dropped

    def __aiter__(self) -> ClientObservation:
        return self

    async def __anext__(self) -> ClientResponse:
        if self._ended:
            raise StopAsyncIteration
        item = await self._waiter.get()
        if isinstance(item, RequestFailed):
            self._ended = True
            raise CoapTimeout(item.reason) if item.reason == "timeout" else \
                CoapRequestError(item.reason)
        if not item.observing:
            self._ended = True
        return ClientResponse(item.code, item.payload, item.content_format, item.remote,
                              item.observe, item.options)


class CoapClient(_UdpShell):
    """CoAP client; create with :func:`open_coap_client`.

    One endpoint, one socket per address family (opened on first use), all requests
    concurrent. Every method resolves ``remote = (host, port)`` itself.
    """

    def __init__(self, nursery: trio.Nursery, config: CoapConfig | None,
                 rng: random.Random | None) -> None:
        super().__init__(config, rng)
        self._nursery = nursery
        self._waiters: dict[int, _Waiter] = {}
        self._bind_host: dict[int, str] = {socket.AF_INET: "0.0.0.0", socket.AF_INET6: "::"}

    def _process_events(self) -> None:
        endpoint = self.endpoint
        while (event := endpoint.next_event()) is not None:
            if isinstance(event, ResponseReceived | RequestFailed):
                waiter = self._waiters.get(event.request_id)
                if waiter is not None:
                    waiter.put(event)

    async def _prepare(self, remote: tuple[str, int] | Addr) -> Addr:
        family, sockaddr = await _resolve(remote[0], remote[1])
        if family not in self._sockets:
            bind: Addr = (self._bind_host[family], 0)
            if family == socket.AF_INET6:
                bind = (self._bind_host[family], 0, 0, 0)
            sock = _open_udp_socket(family, bind)
            self._sockets[family] = sock
            self._nursery.start_soon(self._receive_loop, sock)
        return sockaddr

    async def request(
        self,
        remote: tuple[str, int] | Addr,
        method: int,
        path: str | Sequence[str],
        payload: bytes = b"",
        *,
        content_format: int | None = None,
        accept: int | None = None,
        query: Sequence[str] = (),
        confirmable: bool = True,
        token_length: int | None = None,
        block_size: int | None = None,
        options: Sequence[Option] = (),
        timeout: float | None = None,
    ) -> ClientResponse:
        """Send one request and return its (block-wise reassembled) response.

        Args:
          remote: ``(host, port)``; IPv4 or IPv6 literal or a name.
          method: ``Code.GET``, ``Code.POST``, ``Code.FETCH``, …
          path: ``"m/abc"`` or ``("m", "abc")``; becomes Uri-Path options.
          token_length: 0..8; 1 or 2 keeps a heartbeat datagram small.
          block_size: Block1 size for large payloads and, if given, the Block2 size asked
            for from the first request on (e.g. 64 on a constrained link).
          timeout: overall limit (default ``config.request_timeout``); CON retransmissions
            happen inside it.

        Raises:
          CoapTimeout: no response (retransmissions exhausted or ``timeout`` passed).
          CoapRequestError: the server reset the request or block-wise transfer failed.
        """
        sockaddr = await self._prepare(remote)
        endpoint = self.endpoint
        rid = endpoint.request(sockaddr, method, _split_path(path), payload,
                               content_format=content_format, accept=accept, query=query,
                               confirmable=confirmable, token_length=token_length,
                               block_size=block_size, options=options)
        waiter = _Waiter(1)
        self._waiters[rid] = waiter
        try:
            self._transmit()
            with trio.fail_after(self.config.request_timeout if timeout is None else timeout):
                item = await waiter.get()
        except trio.TooSlowError:
            raise CoapTimeout("timeout") from None
        finally:
            del self._waiters[rid]
            endpoint.cancel_request(rid)
        if isinstance(item, RequestFailed):
            if item.reason == "timeout":
                raise CoapTimeout(item.reason)
            raise CoapRequestError(item.reason)
        return ClientResponse(item.code, item.payload, item.content_format, item.remote,
                              item.observe, item.options)

    async def get(self, remote: tuple[str, int] | Addr, path: str | Sequence[str],
                  **kwargs: Any) -> ClientResponse:
        return await self.request(remote, Code.GET, path, **kwargs)

    async def post(self, remote: tuple[str, int] | Addr, path: str | Sequence[str],
                   payload: bytes = b"", **kwargs: Any) -> ClientResponse:
        return await self.request(remote, Code.POST, path, payload, **kwargs)

    async def fetch(self, remote: tuple[str, int] | Addr, path: str | Sequence[str],
                    payload: bytes = b"", **kwargs: Any) -> ClientResponse:
        return await self.request(remote, Code.FETCH, path, payload, **kwargs)

    @asynccontextmanager
    async def observe(
        self,
        remote: tuple[str, int] | Addr,
        path: str | Sequence[str],
        payload: bytes = b"",
        *,
        method: int = Code.GET,
        content_format: int | None = None,
        accept: int | None = None,
        query: Sequence[str] = (),
        confirmable: bool = True,
        token_length: int | None = None,
        block_size: int | None = None,
        deregister: bool = True,
    ) -> AsyncIterator[ClientObservation]:
        """Register an observation (GET or FETCH with Observe=0) for the ``async with`` body.

        ``async for response in observation`` yields the first response and then each
        notification. Leaving the block cancels it: with ``deregister`` (default) explicitly
        with Observe=1, otherwise the next notification is answered with RST.
        """
        sockaddr = await self._prepare(remote)
        endpoint = self.endpoint
        rid = endpoint.request(sockaddr, method, _split_path(path), payload,
                               content_format=content_format, accept=accept, query=query,
                               confirmable=confirmable, token_length=token_length,
                               block_size=block_size, observe=True)
        waiter = _Waiter(self.config.max_queued_notifications)
        self._waiters[rid] = waiter
        try:
            self._transmit()
            yield ClientObservation(self, rid, waiter)
        finally:
            del self._waiters[rid]
            endpoint.cancel_request(rid, deregister=deregister)
            self._transmit()


@asynccontextmanager
async def open_coap_client(*, config: CoapConfig | None = None,
                           rng: random.Random | None = None) -> AsyncIterator[CoapClient]:
    """A :class:`CoapClient` whose sockets and tasks live exactly as long as the block."""
    client: CoapClient | None = None
    try:
        async with open_service_nursery() as nursery:
            client = CoapClient(nursery, config, rng)
            nursery.start_soon(client._timer_loop)
            try:
                yield client
            finally:
                nursery.cancel_scope.cancel()
    finally:
        # After the nursery: no task waits on the sockets any more.
        if client is not None:
            client._close_sockets()


__all__ = [
    "Request", "Response", "Handler", "Site", "Observation", "ObservationGone",
    "CoapServer", "serve_coap", "ShellStats",
    "CoapClient", "ClientResponse", "ClientObservation", "CoapRequestError", "CoapTimeout",
    "open_coap_client",
]
