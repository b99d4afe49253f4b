"""The Trio CoAP server: a UDP socket routing requests to async handlers through a :class:`Site`.

Design (why it looks like this):

* The shell part (socket, receive loop, transmit, the one timer) is :class:`.coap_shell.UdpShell`;
  this module adds what a server needs on top: routing, handler workers and Observe handles.
* The receive loop hands requests to a fixed pool of handler tasks through a
  :class:`.fair_queue.FairQueue` with ``put()``, which never waits; when the request's peer is
  at its quota or the queue is full it is answered 5.03 and counted.
* A route may have an *inline* handler too (``Site.add(..., inline=...)``): a plain function
  the receive loop calls first, which answers at once or declines (then the request is queued
  as usual). The master answers steady heartbeats this way: no queue, no task switch.
* A fixed pool of workers rather than a task per request: it bounds memory and concurrency
  (``handler_workers``, ``max_pending_requests``) and costs less per request than spawning.
  Each handler runs under ``handler_timeout``; a slow one occupies one worker only.

Resource handling: the socket is opened inside ``serve()`` and closed when it exits, including
by cancellation; every task lives in its nursery.

Error handling: an exception escaping a handler is logged and answered 5.00;
:class:`~edgerm.coap.errors.RenderableError` is answered with its code; a handler overrunning
``handler_timeout`` is cancelled and answered 5.03.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import trio

from edgerm.coap.codes import Code, code_str, is_success
from edgerm.coap.config import CoapConfig
from edgerm.coap.errors import RenderableError
from edgerm.coap.events import Addr, ObserverGone, RequestReceived
from edgerm.coap.linkformat import WELL_KNOWN_CORE, Link, format_links
from edgerm.coap.message import Option
from edgerm.coap.options import CF_LINK_FORMAT
from edgerm.transport.coap_shell import UdpShell, open_udp_socket, resolve
from edgerm.transport.fair_queue import FairQueue, Queued

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- handler API


class Request:
    """What a handler sees of one request (Block1 already reassembled)."""

    __slots__ = ("method", "path", "query", "payload", "content_format", "accept", "remote",
                 "confirmable", "options", "observation", "context", "protect")

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
        #: Free for the route's handlers: an inline handler that declined may leave what it
        #: found here for the queued handler.
        self.context: Any = None
        #: Set on the inner request of an OSCORE-protected one (``Site.oscore``): turns the
        #: handler's (inner) Response into the protected outer one.
        self.protect: Callable[[Response], Response] | None = None

    def inner(self, method: int, path: tuple[str, ...], payload: bytes,
              content_format: int | None, options: list[Option]) -> Request:
        """The request inside this (OSCORE-protected) one: same peer, type and Observe."""
        req = Request.__new__(Request)
        req.method = method
        req.path = path
        req.query = ()
        req.payload = payload
        req.content_format = content_format
        req.accept = None
        req.remote = self.remote
        req.confirmable = self.confirmable
        req.options = options
        req.observation = self.observation
        req.context = None
        req.protect = None
        return req

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
#: Runs in the receive loop before the request is queued for a worker: returns the Response
#: (sent at once, no worker involved) or None (the route's handler runs as usual). It must be
#: quick and must not block: datagrams wait meanwhile.
InlineHandler = Callable[[Request], "Response | None"]
#: Called for a request carrying an OSCORE option (RFC 8613), in the receive loop before any
#: routing: returns the verified inner Request (with ``protect`` set, routed by its inner
#: Uri-Path) or a Response sent as is (a refusal: plain 4.01/4.02).
OscoreHandler = Callable[[Request], "Request | Response"]


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
                     confirmable: bool | None = None, options: Sequence[Option] = ()
                     ) -> None:
        """Send one notification (large payloads go block-wise). Raises ObservationGone.

        Returns once the datagram is handed to the socket, not when it is acknowledged; a
        lost observer shows up later through :meth:`wait_gone`.
        """
        await trio.lowlevel.checkpoint()
        if self.id is None or self.reason is not None:
            raise ObservationGone(self.reason or "not registered")
        server = self._server
        if not server.endpoint.notify(self.id, code, payload, content_format,
                                      confirmable=confirmable, options=options,
                                      now=trio.current_time()):
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


class _Work(Queued):
    """One request waiting for (or served by) a handler worker."""

    __slots__ = ("route", "request", "request_id")

    def __init__(self, route: _Route, request: Request, request_id: int) -> None:
        super().__init__(request.remote)
        self.route = route
        self.request = request
        self.request_id = request_id



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
    inline: InlineHandler | None = None


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
        #: Unprotects requests with an OSCORE option (see OscoreHandler); None: such a
        #: request is routed like any other (by its outer Uri-Path, usually none: 4.04).
        self.oscore: OscoreHandler | None = None

    def add(self, path: str, handler: Handler, *,
            methods: Sequence[int] = (Code.GET, Code.POST, Code.PUT, Code.DELETE, Code.FETCH),
            prefix: bool = False, observable: bool = False, rt: str | None = None,
            if_: str | None = None, ct: int | None = None, title: str | None = None,
            inline: InlineHandler | None = None) -> None:
        """Route `path` to `handler`; `inline`, if given, may answer first (see InlineHandler;
        never for an Observe registration)."""
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
        route = _Route(handler, frozenset(methods), prefix, Link("/" + "/".join(key), attrs),
                       inline)
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



# --------------------------------------------------------------------------- server


class CoapServer(UdpShell):
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
        self._work: FairQueue[_Work] = FairQueue(cfg.max_pending_requests, cfg.max_pending_per_peer,
                                cfg.max_pending_per_ip)
        self._slots: list[_WorkerSlot] = []

    async def serve(self, host: str, port: int, *,
                    task_status: trio.TaskStatus[Addr] = trio.TASK_STATUS_IGNORED) -> NoReturn:
        """Bind ``host``:``port`` (``"::"`` is dual-stack) and serve until cancelled.

        Reports the bound address through ``task_status.started(address)``.
        """
        family, sockaddr = await resolve(host, port)
        sock = open_udp_socket(family, sockaddr)
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
        site = self.site
        endpoint = self.endpoint
        if site.oscore is not None:
            for num, _ in event.options:  # (sorted by number)
                if num >= 9:
                    if num == 9:
                        self._dispatch_protected(event)
                        return
                    break
        route = site.resolve(event.path)
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
        request = Request(event, observation)
        self._handle(route, request, event.request_id)

    def _dispatch_protected(self, event: RequestReceived) -> None:
        """An OSCORE request: unprotected by ``site.oscore``, then routed by its inner path;
        every answer to it goes through the inner request's ``protect``."""
        endpoint = self.endpoint
        observation = None
        if event.observe == 0:
            observation = Observation(self, event.remote, event.path)
        assert self.site.oscore is not None
        try:
            outcome = self.site.oscore(Request(event, observation))
        except Exception:
            self.shell_stats.handler_errors += 1
            log.exception("CoAP OSCORE handler failed")
            outcome = Response(Code.INTERNAL_SERVER_ERROR)
        if isinstance(outcome, Response):
            endpoint.respond(event.request_id, outcome.code, outcome.payload,
                             outcome.content_format, options=outcome.options,
                             now=self._now(), remember=outcome.remember)
            if observation is not None:
                observation._set_gone("not accepted")
            return
        request = outcome
        route = self.site.resolve(request.path)
        if route is None or request.method not in route.methods:
            code = Code.NOT_FOUND if route is None else Code.METHOD_NOT_ALLOWED
            self._respond(event.request_id, request, Response(code), process=False)
            return
        self._handle(route, request, event.request_id)

    def _handle(self, route: _Route, request: Request, request_id: int) -> None:
        """Answer `request` inline if its route can, else queue it for a worker."""
        endpoint = self.endpoint
        observation = request.observation
        if route.inline is not None and observation is None:
            # Answered without the queue and a worker's task switch (a steady heartbeat: most
            # of the master's traffic). Inside _process_events: the caller transmits.
            try:
                response = route.inline(request)
            except Exception:
                self.shell_stats.handler_errors += 1
                log.exception("CoAP inline handler for %r failed", request)
                response = Response(Code.INTERNAL_SERVER_ERROR)
            if response is not None:
                if request.protect is not None:
                    response = request.protect(response)
                endpoint.respond(request_id, response.code, response.payload,
                                 response.content_format, options=response.options,
                                 now=self._now(), remember=response.remember)
                return
        admitted, displaced = self._work.put(_Work(route, request, request_id))
        if displaced is not None:
            # Answered here, not through _respond: we are inside _process_events already.
            self.shell_stats.displaced += 1
            endpoint.respond(displaced.request_id, Code.SERVICE_UNAVAILABLE, b"overloaded")
            if displaced.request.observation is not None:
                displaced.request.observation._set_gone("not accepted")
        if not admitted:
            self.shell_stats.overloaded += 1
            endpoint.respond(request_id, Code.SERVICE_UNAVAILABLE, b"overloaded")

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

    def _respond(self, request_id: int, request: Request, response: Response,
                 process: bool = True) -> None:
        """Send `response` (protected first for an OSCORE request); `process` False inside
        _process_events (the caller transmits)."""
        if request.protect is not None:
            try:
                response = request.protect(response)
            except Exception:
                self.shell_stats.handler_errors += 1
                log.exception("CoAP OSCORE protect for %r failed", request)
                response = Response(Code.INTERNAL_SERVER_ERROR)
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
        if process:
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


__all__ = ["CoapServer", "Handler", "Observation", "ObservationGone", "OscoreHandler",
           "Request", "Response", "Site", "serve_coap"]
