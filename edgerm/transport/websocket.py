"""WebSocket transport (trio-websocket): one binary frame carries one CBOR message.

Linux agents and frameworks may use this instead of CoAP. The master serves several paths
(``/agent``, ``/framework``) on one port with :func:`serve_websocket`; each accepted
connection is wrapped in a :class:`WsConnection` and handed to that path's async handler.
Clients use :func:`connect_websocket` for one connection, or :func:`run_with_reconnect` to
keep a session alive across failures with exponential back-off and jitter.

Design:

* Bytes only: the message layer above owns CBOR. A text frame is a protocol violation for
  us and closes the connection with 1003 (unsupported data).
* Keepalive: each side pings every ``ping_interval`` (a client may turn it off when its
  protocol has a heartbeat of its own); no pong within ``ping_timeout`` means
  the peer (or the path to it) is dead, and the connection is closed so that a pending
  ``receive()`` raises :class:`ConnectionClosed` instead of hanging on a half-open TCP
  connection. The closing handshake is bounded by ``disconnect_timeout``.
* TLS (wss://): the server takes an `ssl.SSLContext`; a client connecting to a wss:// URL
  verifies the server against its `ca_file` (else `EDGERM_CA_FILE`, else the system's trust
  store) and turns a TLS failure into :class:`edgerm.tls.TlsError`, one line saying what was
  wrong (wrong CA, expired, wrong host, plain ws:// to a TLS server and the reverse), and
  sends the server its TLS alert; the server does the handshake before trio-websocket sees
  the connection and logs why one failed (`_TlsServer`).
* A handler failing is logged and closes its connection (1011); it never stops the server.
* Bounded by the server, not by the peers: a connection must send its first message within
  ``first_message_timeout`` (else 1008 "no message within N s"); beyond
  ``max_connections`` in all or ``max_connections_per_source`` from one address a new
  connection is accepted only to be closed at once with 1013 (try again later) and the limit
  as the reason, so a client sees why instead of a bare reset.

Resource handling: connections live exactly as long as their handler call or ``async
with`` block; every task runs in a nursery owned by that scope.
"""

from __future__ import annotations

import logging
import math
import random
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit

import trio
import trio_websocket
from trio_websocket import ConnectionClosed, HandshakeError, WebSocketConnection

from edgerm.service_nursery import open_service_nursery
from edgerm.tls import TlsError, client_context, explain_failure, explain_server_failure, speaks_tls

log = logging.getLogger(__name__)

T = TypeVar("T")



def only_disconnects(exc: BaseException) -> bool:
    """True for ConnectionClosed, or an ExceptionGroup holding nothing else.

    A handler that runs a nursery (a reader and a writer task) gets the peer's leaving back as a
    group of ConnectionClosed under Trio's strict exception groups; that is still a normal close,
    not a failure to log.
    """
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(ConnectionClosed)[1] is None
    return isinstance(exc, ConnectionClosed)

@dataclass(frozen=True)
class WebSocketConfig:
    # Keepalive: one ping per interval, the peer is dead if no pong within the timeout. None:
    # no pings (a client whose protocol has its own heartbeat, like the framework SDK's).
    ping_interval: float | None = 20.0
    ping_timeout: float = 10.0
    # Largest message accepted; a bigger one closes the connection (1009).
    max_message_size: int = 1024 * 1024
    # Messages buffered per connection before the reader stops reading (TCP back-pressure).
    message_queue_size: int = 16
    # Opening and closing handshakes with a silent peer give up after these.
    connect_timeout: float = 10.0
    disconnect_timeout: float = 5.0
    # Server side: a connection that sends nothing this long after it opened is closed (None:
    # no deadline). serve_websocket can set it per path.
    first_message_timeout: float | None = None
    # Server side: open connections in all and from one source address (None: unlimited).
    max_connections: int | None = None
    max_connections_per_source: int | None = None


# A plain ws:// client that has no answer to its handshake this long asks (on a second
# connection) whether the server speaks TLS, to say "use wss://" instead of timing out.
TLS_PROBE_AFTER_S = 1.0

# Close codes (RFC 6455 7.4.1 and the IANA registry).
CLOSE_POLICY = 1008        # the peer broke a rule (no first message in time, refused first call)
CLOSE_TRY_LATER = 1013     # a connection limit is reached


@dataclass(frozen=True)
class Backoff:
    """Exponential back-off with jitter for reconnecting.

    Attempt ``n`` (0-based) waits ``min(maximum, initial * multiplier**n)``, of which the
    fraction ``jitter`` is randomised ("equal jitter": at least ``1 - jitter`` of the delay is
    kept so a flapping master is not hammered, the rest spreads agents apart).
    """

    initial: float = 0.5
    maximum: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.5

    def delay(self, attempt: int, rng: random.Random) -> float:
        base = min(self.maximum, self.initial * self.multiplier ** attempt)
        return base * (1.0 - self.jitter) + rng.uniform(0.0, base * self.jitter)


class WsConnection:
    """One WebSocket connection exchanging whole binary messages."""

    def __init__(self, ws: WebSocketConnection, path: str, remote: Any) -> None:
        self._ws = ws
        #: The request path (without query), e.g. ``"/agent"``.
        self.path = path
        #: The peer's address as trio-websocket reports it.
        self.remote = remote
        #: Set when the keepalive declared the peer dead.
        self.keepalive_failed = False
        #: Seconds (from now) within which the first message must arrive; None: no deadline.
        self._first_deadline: float | None = None
        self._first_timeout: float | None = None

    @property
    def closed(self) -> bool:
        return self._ws.closed is not None

    async def send(self, data: bytes) -> None:
        """Send one binary message. Raises :class:`ConnectionClosed`."""
        await self._ws.send_message(bytes(data))

    async def receive(self) -> bytes:
        """The next binary message. Raises :class:`ConnectionClosed` when the connection ends
        (closed by the peer, by keepalive, after a text frame, which we refuse, or when the
        first message is later than the server's deadline)."""
        if self._first_deadline is None:
            message = await self._ws.get_message()
        else:
            with trio.move_on_at(self._first_deadline) as scope:
                message = await self._ws.get_message()
            if scope.cancelled_caught:
                await self._ws.aclose(code=CLOSE_POLICY, reason="no message within "
                                      f"{self._first_timeout:g} s of connecting")
                raise ConnectionClosed(self._ws.closed)
            self._first_deadline = None
        if isinstance(message, str):
            await self._ws.aclose(code=1003, reason="binary frames only")
            raise ConnectionClosed(self._ws.closed)
        return message

    def set_first_message_timeout(self, timeout: float | None) -> None:
        """The first message must arrive within `timeout` seconds from now (None: no limit)."""
        self._first_timeout = timeout
        self._first_deadline = None if timeout is None else trio.current_time() + timeout

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None:
        await self._ws.aclose(code=code, reason=reason)

    async def _keepalive(self, config: WebSocketConfig) -> None:
        if config.ping_interval is None:
            return
        while not self.closed:
            await trio.sleep(config.ping_interval)
            try:
                with trio.move_on_after(config.ping_timeout) as scope:
                    await self._ws.ping()
            except ConnectionClosed:
                return
            if scope.cancelled_caught:
                log.info("websocket %s: no pong within %.1fs, closing", self.remote,
                         config.ping_timeout)
                self.keepalive_failed = True
                await self._ws.aclose(code=1011, reason="keepalive timeout")
                return


def _remote_of(ws: WebSocketConnection | trio_websocket.WebSocketRequest) -> Any:
    try:
        return ws.remote
    except Exception:  # noqa: BLE001 - the peer address is informational only
        return None


ConnectionHandler = Callable[[WsConnection], Awaitable[None]]


def _source_of(remote: Any) -> Any:
    """The address connections are counted by (the IP without the port)."""
    return getattr(remote, "address", remote)


class _Limits:
    """Open connections in all and per source; refusals, for a rate-limited warning."""

    def __init__(self, cfg: WebSocketConfig) -> None:
        self.cfg = cfg
        self.total = 0
        self.by_source: dict[Any, int] = {}
        self.refused = 0
        self._warned_at = -math.inf

    def refusal(self, source: Any) -> str | None:
        """Why a new connection from `source` is refused, or None (then it is counted)."""
        cfg = self.cfg
        if cfg.max_connections is not None and self.total >= cfg.max_connections:
            return f"too many connections (the server's limit is {cfg.max_connections})"
        if (cfg.max_connections_per_source is not None
                and self.by_source.get(source, 0) >= cfg.max_connections_per_source):
            return (f"too many connections from {source} (limit "
                    f"{cfg.max_connections_per_source} per address)")
        self.total += 1
        self.by_source[source] = self.by_source.get(source, 0) + 1
        return None

    def release(self, source: Any) -> None:
        self.total -= 1
        left = self.by_source[source] - 1
        if left:
            self.by_source[source] = left
        else:
            del self.by_source[source]

    def note_refused(self, why: str) -> None:
        # One line per minute at most: a flood must not turn into a log flood.
        self.refused += 1
        now = trio.current_time()
        if now - self._warned_at >= 60.0:
            self._warned_at = now
            log.warning("websocket: refusing connections: %s (%d refused so far)", why,
                        self.refused)


async def serve_websocket(
    handlers: Mapping[str, ConnectionHandler],
    host: str,
    port: int,
    *,
    config: WebSocketConfig | None = None,
    first_message_timeouts: Mapping[str, float] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve WebSocket connections on ``host``:``port`` until cancelled.

    Args:
      handlers: request path -> async handler called with each :class:`WsConnection`; other
        paths are rejected with HTTP 404 during the handshake.
      config: keepalive, size and connection limits.
      first_message_timeouts: per path, instead of ``config.first_message_timeout``.
      ssl_context: serve wss:// (TLS) with it; None: plain ws://.

    Reports ``(host, bound_port)`` through ``task_status.started``.
    """
    cfg = config or WebSocketConfig()
    limits = _Limits(cfg)
    first_timeouts = first_message_timeouts or {}

    async def on_request(request: trio_websocket.WebSocketRequest) -> None:
        path = request.path.split("?", 1)[0]
        handler = handlers.get(path)
        if handler is None:
            await request.reject(404, body=f"use {' or '.join(handlers)}\n".encode())
            return
        source = _source_of(_remote_of(request))
        why = limits.refusal(source)
        if why is not None:
            limits.note_refused(why)
            try:
                ws = await request.accept()
                await ws.aclose(code=CLOSE_TRY_LATER, reason=why)
            except ConnectionClosed:
                pass  # gone already: nothing to tell
            return
        try:
            await serve_one(request, path, handler)
        finally:
            limits.release(source)

    async def serve_one(request: trio_websocket.WebSocketRequest, path: str,
                        handler: ConnectionHandler) -> None:
        try:
            ws = await request.accept()
        except ConnectionClosed:
            return  # the peer left during the handshake
        conn = WsConnection(ws, path, _remote_of(ws))
        conn.set_first_message_timeout(first_timeouts.get(path, cfg.first_message_timeout))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(conn._keepalive, cfg)
            try:
                await handler(conn)
            except Exception as exc:
                if not only_disconnects(exc):
                    log.exception("websocket handler for %s failed", path)
                with trio.move_on_after(cfg.disconnect_timeout) as cleanup:
                    cleanup.shield = True
                    await ws.aclose(code=1011, reason="internal error")
            finally:
                nursery.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        if ssl_context is None:
            server = await nursery.start(
                lambda task_status: trio_websocket.serve_websocket(
                    on_request, host, port, ssl_context=None,
                    max_message_size=cfg.max_message_size,
                    message_queue_size=cfg.message_queue_size,
                    connect_timeout=cfg.connect_timeout,
                    disconnect_timeout=cfg.disconnect_timeout, task_status=task_status))
        else:
            listeners = await trio.open_ssl_over_tcp_listeners(
                port, ssl_context, host=host, https_compatible=True)
            server = _TlsServer(on_request, listeners, cfg)
            await nursery.start(server.run)
        task_status.started((host, server.port))
    raise AssertionError("unreachable")  # pragma: no cover


class _TlsServer(trio_websocket.WebSocketServer):
    """trio-websocket's server with the TLS handshake done first, on its own: trio-websocket
    lets a failed handshake end the connection without a word, and the operator then cannot
    tell why agents or frameworks stay away. Each kind of failure is logged as a warning
    saying what to fix, at most once a minute (a scan must not flood the log)."""

    def __init__(self, on_request: Callable[[trio_websocket.WebSocketRequest], Awaitable[None]],
                 listeners: list[trio.SSLListener[trio.SocketStream]],
                 cfg: WebSocketConfig) -> None:
        super().__init__(on_request, listeners, max_message_size=cfg.max_message_size,
                         message_queue_size=cfg.message_queue_size,
                         connect_timeout=cfg.connect_timeout,
                         disconnect_timeout=cfg.disconnect_timeout)
        self._handshake_timeout = cfg.connect_timeout
        self.tls_failures = 0
        self._warned_at: dict[str, float] = {}

    async def _handle_connection(self, stream: trio.abc.Stream) -> None:
        if isinstance(stream, trio.SSLStream):
            failure: BaseException | None = None
            with trio.move_on_after(self._handshake_timeout) as scope:
                try:
                    await stream.do_handshake()
                except (trio.BrokenResourceError, OSError) as e:
                    failure = e
            if failure is not None or scope.cancelled_caught:
                if failure is not None:
                    self._tell(stream, failure)
                await trio.aclose_forcefully(stream)
                return
        await super()._handle_connection(stream)

    def _tell(self, stream: trio.SSLStream[Any], failure: BaseException) -> None:
        why = explain_server_failure(failure)
        if why is None:
            return
        self.tls_failures += 1
        now = trio.current_time()
        if now - self._warned_at.get(why, -math.inf) < 60.0:
            return
        self._warned_at[why] = now
        try:
            peer = stream.transport_stream.socket.getpeername()  # type: ignore[attr-defined]
            source = f"{peer[0]}:{peer[1]}"
        except (AttributeError, OSError):
            source = "a client"
        log.warning("websocket: TLS handshake from %s failed: %s (%d failed handshakes so "
                    "far; at most one line a minute for each reason)", source, why,
                    self.tls_failures)


class _WatchedStream(trio.abc.Stream):
    """The client's TCP or TLS stream, telling `on_eof` when the peer closes it.

    trio-websocket's client waits for the opening handshake until its timeout even when the
    server has already closed the connection (a TLS master refusing a plain ws:// client does
    that); the first end of stream cancels that wait instead."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.on_eof: Callable[[], None] | None = None

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        data = await self.stream.receive_some(max_bytes)
        if not data and self.on_eof is not None:
            self.on_eof()
        return data

    async def send_eof(self) -> None:  # pragma: no cover - trio-websocket never half-closes
        raise NotImplementedError

    async def aclose(self) -> None:
        await self.stream.aclose()


async def _close_now(stream: trio.abc.AsyncResource) -> None:
    """Close `stream` (a TLS one sends its close_notify) within a second, whatever is being
    cancelled around us. Shielded rather than `trio.aclose_forcefully`: its Cancelled would
    reach the enclosing cancelled nursery and replace the exception being raised."""
    with trio.CancelScope(shield=True) as scope:
        scope.deadline = trio.current_time() + 1.0
        await stream.aclose()


async def _send_alert(tls: trio.SSLStream[trio.SocketStream], tcp: trio.SocketStream) -> None:
    """Send the TLS alert OpenSSL wrote when our side refused the handshake (unknown CA,
    expired certificate, ...): trio drops it, and without it the server sees a bare close and
    cannot tell its operator why this client left. Best effort, within a second."""
    outgoing = getattr(tls, "_outgoing", None)  # trio's pending bytes (private: may go away)
    alert = outgoing.read() if isinstance(outgoing, ssl.MemoryBIO) else b""
    if alert:
        with trio.move_on_after(1.0):
            try:
                await tcp.send_all(alert)
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the server is gone: nobody to tell


async def _open_stream(url: str, context: ssl.SSLContext | None, ca_file: str | None,
                       timeout: float) -> trio.abc.Stream:
    """TCP to the URL's host and port, then the TLS handshake when `context` is given: done
    here, not inside trio-websocket, which hides a failed handshake behind its timeout."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if context is not None else 80)
    try:
        with trio.fail_after(timeout):
            tcp = await trio.open_tcp_stream(host, port)
            if context is None:
                return tcp
            tls = trio.SSLStream(tcp, context, server_hostname=host, https_compatible=True)
            try:
                await tls.do_handshake()
            except trio.BrokenResourceError as e:
                await _send_alert(tls, tcp)
                await _close_now(tcp)
                raise TlsError(explain_failure(e, url, ca_file)
                               or f"TLS: the handshake with {url} failed ({e!r})") from None
            except BaseException:
                await _close_now(tcp)
                raise
            return tls
    except trio.TooSlowError:
        raise trio_websocket.ConnectionTimeout from None


@asynccontextmanager
async def connect_websocket(url: str, *, config: WebSocketConfig | None = None,
                            ca_file: str | None = None) -> AsyncIterator[WsConnection]:
    """One client connection with keepalive, for the ``async with`` block.

    A wss:// `url` is verified against `ca_file` (PEM CA certificates), else the file named by
    ``EDGERM_CA_FILE``, else the system's trust store.

    Raises :class:`HandshakeError` (incl. ``ConnectionRejected``, ``ConnectionTimeout``),
    :class:`TlsError` (an ``OSError``: the TLS handshake failed, or a ws:// URL names a TLS
    server) or ``OSError`` if it cannot connect.
    """
    cfg = config or WebSocketConfig()
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"{url!r} is not a ws:// or wss:// URL")
    context = client_context(ca_file) if parts.scheme == "wss" else None
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    stream = _WatchedStream(await _open_stream(url, context, ca_file, cfg.connect_timeout))
    # An exception from the caller's block (e.g. ConnectionClosed) must reach
    # run_with_reconnect as itself, not wrapped in an ExceptionGroup.
    async with open_service_nursery() as nursery:
        serves_tls = False
        probe_scope = trio.CancelScope()
        try:
            with trio.move_on_after(cfg.connect_timeout) as opening:
                stream.on_eof = opening.cancel

                async def probe() -> None:
                    # A TLS master never answers a plain handshake (it waits for its own
                    # timeout); a plain client that heard nothing soon asks whether it does.
                    nonlocal serves_tls
                    with probe_scope:
                        await trio.sleep(TLS_PROBE_AFTER_S)
                        if await speaks_tls(parts.hostname or "", parts.port or 80):
                            serves_tls = True
                            opening.cancel()

                if context is None:
                    nursery.start_soon(probe)
                ws = await trio_websocket.wrap_client_stream(
                    nursery, stream, parts.netloc, resource,  # type: ignore[arg-type]
                    max_message_size=cfg.max_message_size,
                    message_queue_size=cfg.message_queue_size)
            stream.on_eof = None
            probe_scope.cancel()
        except BaseException:
            nursery.cancel_scope.cancel()
            await _close_now(stream)
            raise
        if opening.cancelled_caught:
            await _close_now(stream)
            closed_early = trio.current_time() < opening.deadline
            if not serves_tls and closed_early and context is None:
                # (Before the nursery is cancelled: in its cancelled scope the probe could
                # not connect, and this block would end without a word.)
                serves_tls = await speaks_tls(parts.hostname or "", parts.port or 80)
            nursery.cancel_scope.cancel()
            if serves_tls:
                raise TlsError(f"TLS: the master at ws://{parts.netloc} serves TLS: use "
                               f"wss://{parts.netloc} (and ca_file / --ca-file for its CA)")
            if closed_early:
                raise HandshakeError(f"{url}: the server closed the connection before the "
                                     "WebSocket handshake completed")
            raise trio_websocket.ConnectionTimeout
        conn = WsConnection(ws, ws.path or "/", _remote_of(ws))
        nursery.start_soon(conn._keepalive, cfg)
        try:
            yield conn
        finally:
            # As trio-websocket's own client does: a closing handshake bounded by
            # disconnect_timeout, cut short (not shielded) when the caller is cancelled.
            try:
                with trio.move_on_after(cfg.disconnect_timeout) as closing:
                    await ws.aclose()
                if closing.cancelled_caught:
                    # Closing towards a dead peer: the connection is gone either way.
                    log.info("websocket %s: closing handshake timed out", url)
            finally:
                nursery.cancel_scope.cancel()
                await _close_now(stream)


# Failures after which reconnecting makes sense (network, handshake, peer went away).
RECONNECTABLE = (OSError, HandshakeError, ConnectionClosed, trio.BrokenResourceError)


async def run_with_reconnect(
    url: str,
    session: Callable[[WsConnection], Awaitable[T]],
    *,
    config: WebSocketConfig | None = None,
    backoff: Backoff | None = None,
    rng: random.Random | None = None,
    max_attempts: int | None = None,
    on_retry: Callable[[int, float, BaseException], None] | None = None,
    ca_file: str | None = None,
) -> T:
    """Run ``session(conn)`` on a connection to ``url``, reconnecting when it breaks.

    The back-off restarts from ``initial`` after every successful connection. Returns what
    ``session`` returns once it returns normally.

    Error handling: the exceptions in :data:`RECONNECTABLE` trigger a reconnect; after
    ``max_attempts`` consecutive failures (if given) the last one is raised. Everything else
    (including exceptions of ``session`` that are not connection failures) propagates.
    ``on_retry(attempt, delay, exc)`` is called before each wait, e.g. for logging.
    """
    backoff = backoff or Backoff()
    rng = rng or random.Random()
    attempt = 0
    while True:
        try:
            async with connect_websocket(url, config=config, ca_file=ca_file) as conn:
                attempt = 0
                return await session(conn)
        except RECONNECTABLE as exc:
            if max_attempts is not None and attempt + 1 >= max_attempts:
                raise
            delay = backoff.delay(attempt, rng)
            if on_retry is not None:
                on_retry(attempt, delay, exc)
            if isinstance(exc, TlsError):
                # The operator has to act: say it louder, in words.
                log.warning("%s; reconnecting in %.2fs", exc, delay)
            else:
                log.info("websocket %s: %r; reconnecting in %.2fs", url, exc, delay)
            attempt += 1
            await trio.sleep(delay)


__all__ = ["WebSocketConfig", "Backoff", "WsConnection", "ConnectionClosed", "HandshakeError",
           "CLOSE_POLICY", "CLOSE_TRY_LATER",
           "serve_websocket", "connect_websocket", "run_with_reconnect", "RECONNECTABLE",
           "only_disconnects", "TlsError"]
