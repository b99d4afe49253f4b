"""How the agent's calls reach the master: a WebSocket link or a CoAP link.

Both are agent-initiated (they work behind a NAT) and move bytes only: the core builds, signs
and checks every message; the CoAP link OSCORE-protects (RFC 8613, edgerm.oscore) the calls
the core hands it bare (`oscore`: the context and the call's seq, its Partial IV) and verifies
their responses. The shell uses:

- `await link.call(data, oscore) -> Reply(data, protected)` for the one call in flight
  (raises `LinkError`; a protected response that does not verify is dropped: `LinkError`);
- `await link.run(on_push, task_status=...)` in the agent's nursery: keeps the connection (or
  the CoAP client) alive and hands each pushed reply to `on_push(data, seq, protected)`;
- `link.observe_wanted` / `link.observation_alive`: CoAP wants a push channel, an Observe FETCH
  on `c` whose payload the core builds, so it goes through the call pipeline as kind "observe"
  and `await link.observe(data, on_push, oscore)` returns its first response (notifications
  carry the master's own Partial IV; one not past the last is dropped as a replay);
- `await link.fetch_module(sha256, size) -> bytes` when the transport fetches modules outside
  the call channel; both links return None and the shell fetches through
  `AgentCore.request_module` (ModuleRequest calls: on CoAP protected like every call, one at a
  time with the rest, so their Partial IVs stay in order).

The WebSocket link uses the shared transport (`edgerm.transport.websocket`: connect, keepalive
pings that close a half-open connection, reconnect with exponential back-off and jitter). The
CoAP stack is imported only by `CoapLink`, so a WebSocket agent does not carry it in memory.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import urlsplit

import trio

from edgerm.wire import CONTENT_FORMAT_CBOR, DecodeError, Limits, decode, pb

if TYPE_CHECKING:
    from edgerm.oscore import SecurityContext
    from edgerm.transport.coap import ClientResponse, CoapClient
    from edgerm.transport.websocket import WsConnection

log = logging.getLogger("edgerm_agent")

__all__ = ["Link", "LinkError", "Reply", "WebSocketLink", "CoapLink", "open_link",
           "run_replaceable"]

_REPLY_LIMITS = Limits(max_bytes=1024 * 1024)
# WebSocket frames from the master: one reply with module chunks at most.
_MAX_WS_MESSAGE = 2 * 1024 * 1024


class LinkError(Exception):
    """The call did not get a reply (not connected, connection lost, timeout)."""


class Reply(NamedTuple):
    """A reply to a call: its bytes, and whether OSCORE verified them (they are then the
    inner payload: an AgentReply without seq or mac)."""
    data: bytes
    protected: bool = False


PushHandler = Callable[[bytes, int, bool], None]


class Link:
    """The interface the shell drives (see the module docstring)."""

    observe_wanted = False
    observation_alive = False
    #: calls after the first registration go out OSCORE-protected (the core sends them bare).
    protects = False

    async def call(self, data: bytes,
                   oscore: tuple[SecurityContext, int] | None = None) -> Reply:
        raise NotImplementedError

    async def observe(self, data: bytes, on_push: PushHandler,
                      oscore: tuple[SecurityContext, int] | None = None) -> Reply:
        raise NotImplementedError

    async def fetch_module(self, sha256: bytes, size: int) -> bytes | None:
        return None

    async def run(self, on_push: PushHandler, *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        raise NotImplementedError


async def run_replaceable(link: Link, on_push: PushHandler, scope: trio.CancelScope, *,
                          task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                          ) -> None:
    """Run `link` in `scope`, which the agent cancels to move to another master. What the
    link raises once that cancel was called is the move's own noise and ends here: a standby
    closes the connection as it tells the agent to move, so the link's session can fail with
    the closed connection in the same step as its reader task is cancelled (a group of both,
    which the scope alone would strip to the connection error and raise)."""
    with scope:
        try:
            await link.run(on_push, task_status=task_status)
        except BaseException as e:
            if not scope.cancel_called or isinstance(e, trio.Cancelled):
                raise
            log.debug("the replaced link ended with %r", e)


class WebSocketLink(Link):
    """Binary frames on `/agent`: calls up, replies (seq = call's) and pushes (seq 0) down.

    Resource handling: `run` owns the connection (`run_with_reconnect`); it reconnects with
    back-off (from `backoff_initial_s`, capped at `backoff_max_s`, jittered) after the master
    goes away, forever. A call in flight when the connection drops fails with `LinkError`.
    A wss:// master whose certificate does not verify is retried the same way, each time with
    a warning saying what is wrong (edgerm.tls.TlsError): the operator may fix it.
    """

    def __init__(self, url: str, *, backoff_initial_s: float = 0.2,
                 backoff_max_s: float = 10.0, ping_interval_s: float = 20.0,
                 ping_timeout_s: float = 10.0, rng: random.Random | None = None,
                 ca_file: str | None = None) -> None:
        self.url = url
        self.ca_file = ca_file
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.ping_interval_s = ping_interval_s
        self.ping_timeout_s = ping_timeout_s
        self.rng = rng or random.Random()
        self._conn: WsConnection | None = None
        self._connected = trio.Event()
        self._waiting: tuple[int, trio.MemorySendChannel[bytes]] | None = None
        #: connections made so far (logs and tests).
        self.connects = 0

    async def call(self, data: bytes,
                   oscore: tuple[SecurityContext, int] | None = None) -> Reply:
        # (TLS protects the WebSocket; its calls stay signed: `oscore` is always None.)
        from edgerm.transport.websocket import ConnectionClosed

        await self._connected.wait()
        conn = self._conn
        if conn is None:
            raise LinkError("websocket: not connected")
        seq = _call_seq(data)
        send, receive = trio.open_memory_channel[bytes](1)
        self._waiting = (seq, send)
        try:
            try:
                await conn.send(data)
            except (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError) as e:
                raise LinkError(f"websocket: {e!r}") from None
            async with receive:
                try:
                    return Reply(await receive.receive())
                except trio.EndOfChannel:
                    raise LinkError("websocket closed before the reply") from None
        finally:
            self._waiting = None

    async def run(self, on_push: PushHandler, *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        from edgerm.transport.websocket import Backoff, WebSocketConfig, run_with_reconnect

        config = WebSocketConfig(ping_interval=self.ping_interval_s,
                                 ping_timeout=self.ping_timeout_s,
                                 max_message_size=_MAX_WS_MESSAGE)
        backoff = Backoff(initial=self.backoff_initial_s, maximum=self.backoff_max_s)

        async def session(conn: WsConnection) -> None:
            self._conn = conn
            self.connects += 1
            self._connected.set()
            try:
                while True:
                    self._dispatch(await conn.receive(), on_push)
            finally:
                self._conn = None
                self._connected = trio.Event()
                if self._waiting is not None:
                    self._waiting[1].close()

        task_status.started()
        while True:  # the session only ends by an error, which reconnects
            await run_with_reconnect(self.url, session, config=config, backoff=backoff,
                                     rng=self.rng, ca_file=self.ca_file)

    def _dispatch(self, msg: bytes, on_push: PushHandler) -> None:
        try:
            reply = decode(pb.AgentReply, msg, _REPLY_LIMITS)
        except DecodeError:
            return  # the core would refuse it anyway; nothing waits on garbage
        seq = reply.seq
        if seq == 0 and reply.HasField("error") and self._waiting is not None:
            seq = self._waiting[0]  # an unauthenticated call's error cannot echo its seq
        if seq == 0:
            on_push(msg, 0, False)
        elif self._waiting is not None and self._waiting[0] == seq:
            try:
                self._waiting[1].send_nowait(msg)
            except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
                pass  # the caller has just given up on this reply


class CoapLink(Link):
    """CoAP over UDP: POST `a` per call, FETCH `c` + Observe for pushed commands. After the
    first registration every request is OSCORE-protected (outer POST, or FETCH + Observe for
    `c`; the inner Uri-Path and Observe are encrypted, with no inner Content-Format) and
    every response verified; a plain response (no OSCORE option) is passed on unprotected,
    for the core to take as an unauthenticated error at most."""

    observe_wanted = True
    protects = True

    def __init__(self, host: str, port: int, *, block_size: int = 1024,
                 ack_timeout_s: float = 2.0, max_retransmit: int = 4) -> None:
        self.remote = (host, port)
        self.block_size = block_size
        self.ack_timeout_s = ack_timeout_s
        self.max_retransmit = max_retransmit
        self._client: CoapClient | None = None
        self._ready = trio.Event()
        self._nursery: trio.Nursery | None = None

    async def _client_ready(self) -> CoapClient:
        await self._ready.wait()
        assert self._client is not None
        return self._client

    async def call(self, data: bytes,
                   oscore: tuple[SecurityContext, int] | None = None) -> Reply:
        from edgerm.coap.codes import Code
        from edgerm.transport.coap import CoapRequestError

        client = await self._client_ready()
        try:
            if oscore is None:
                resp = await client.post(self.remote, "a", data,
                                         content_format=CONTENT_FORMAT_CBOR, token_length=2)
            else:
                option, ciphertext = _protect(oscore, Code.POST, [(11, b"a")], data)
                resp = await client.post(self.remote, (), ciphertext, options=[(9, option)],
                                         token_length=2)
        except CoapRequestError as e:
            raise LinkError(f"coap: {e}") from None
        return _reply(resp, oscore)

    async def observe(self, data: bytes, on_push: PushHandler,
                      oscore: tuple[SecurityContext, int] | None = None) -> Reply:
        """Register the Observe on `c` with the heartbeat `data`; return the first response
        (the reply to that heartbeat); later notifications go to `on_push`."""
        await self._client_ready()
        assert self._nursery is not None
        first, first_rx = trio.open_memory_channel[Reply](1)
        self.observation_alive = True
        self._nursery.start_soon(self._observe, data, on_push, first, oscore)
        async with first_rx:
            try:
                return await first_rx.receive()
            except trio.EndOfChannel:
                raise LinkError("coap: observe registration failed") from None

    async def _observe(self, data: bytes, on_push: PushHandler,
                       first: trio.MemorySendChannel[Reply],
                       oscore: tuple[SecurityContext, int] | None) -> None:
        from edgerm.coap.codes import Code
        from edgerm.transport.coap import CoapRequestError

        assert self._client is not None
        if oscore is None:
            seq = _call_seq(data)
            path: tuple[str, ...] = ("c",)
            payload, options, cf = data, [], CONTENT_FORMAT_CBOR
        else:
            seq = 0
            option, payload = _protect(oscore, Code.FETCH, [(6, b""), (11, b"c")], data)
            path, options, cf = (), [(9, option)], None
        delivered = False
        last_piv = -1   # the master's Partial IV of the newest notification taken
        try:
            async with first:
                # (Under OSCORE a deregistration would be a new request with a new Partial
                # IV, which only the core hands out: leaving answers the next notification
                # with RST instead.)
                async with self._client.observe(self.remote, path, payload, method=Code.FETCH,
                                                content_format=cf, options=options,
                                                token_length=2,
                                                deregister=oscore is None) as obs:
                    async for resp in obs:
                        if (not delivered and resp.code == Code.NOT_FOUND
                                and not any(n == 9 for n, _ in resp.options)):
                            # No `c` here (a gateway, docs/gateway.md): heartbeat instead.
                            self.observe_wanted = False
                            return
                        try:
                            reply, piv = _verify(resp, oscore)
                        except LinkError:
                            continue   # forged or damaged: dropped
                        if reply.protected:
                            if piv <= last_piv:
                                continue   # a replayed (or reordered, older) notification
                            last_piv = piv
                        if not delivered:
                            delivered = True
                            try:
                                first.send_nowait(reply)
                            except trio.BrokenResourceError:
                                # The caller gave up waiting (its call timed out on a lossy
                                # link) before the first response came: drop this
                                # observation; the agent registers a new one.
                                return
                            continue
                        on_push(reply.data, seq, reply.protected)
        except CoapRequestError:
            pass
        finally:
            self.observation_alive = False

    async def run(self, on_push: PushHandler, *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        from edgerm.coap.config import CoapConfig
        from edgerm.transport.coap import open_coap_client

        config = CoapConfig(ack_timeout=self.ack_timeout_s, max_retransmit=self.max_retransmit,
                            block_size=self.block_size)
        async with open_coap_client(config=config) as client, trio.open_nursery() as nursery:
            self._client = client
            self._nursery = nursery
            self._ready.set()
            task_status.started()
            await trio.sleep(math.inf)


def _protect(oscore: tuple[SecurityContext, int], code: int, options: list[tuple[int, bytes]],
             data: bytes) -> tuple[bytes, bytes]:
    """(OSCORE option value, ciphertext) of a request: inner `code`, `options` and the
    AgentCall `data`, with no inner Content-Format: the resource (`a`, `c`) implies a CBOR
    AgentCall, and the 2 bytes count in every datagram (docs/protocol.md)."""
    from edgerm.oscore import protect_request

    ctx, seq = oscore
    return protect_request(ctx, seq, code, options, data)


def _reply(resp: ClientResponse, oscore: tuple[SecurityContext, int] | None) -> Reply:
    """The reply in a CoAP response to our (protected, if `oscore`) request. Raises LinkError
    for an empty one and a protected one that does not verify."""
    return _verify(resp, oscore)[0]


def _verify(resp: ClientResponse, oscore: tuple[SecurityContext, int] | None
            ) -> tuple[Reply, int]:
    """`_reply`, and the responder's own Partial IV (-1: it reused our request's nonce)."""
    from edgerm.oscore import OscoreError, unprotect_response

    option = None
    for num, value in resp.options:
        if num == 9:
            option = value
            break
    if oscore is None or option is None:
        # Plain: to a protected call only a refusal can be (the core checks).
        if not resp.payload:
            raise LinkError(f"coap: empty response {resp.code >> 5}.{resp.code & 31:02d}")
        return Reply(resp.payload), -1
    ctx, seq = oscore
    try:
        piv, _code, _options, payload = unprotect_response(ctx, seq, option, resp.payload)
    except OscoreError as e:
        raise LinkError(f"coap: protected response dropped: {e}") from None
    if not payload:
        raise LinkError("coap: empty protected response")
    return Reply(payload, True), -1 if piv is None else piv


def _call_seq(data: bytes) -> int:
    try:
        return decode(pb.AgentCall, data).seq
    except DecodeError:
        return -1


def open_link(url: str, *, backoff_initial_s: float = 0.2, backoff_max_s: float = 10.0,
              block_size: int = 1024, ack_timeout_s: float = 2.0,
              max_retransmit: int = 4, ca_file: str | None = None) -> Link:
    """A link for `ws://host:port/agent`, `wss://...` (verified against `ca_file`, else
    EDGERM_CA_FILE, else the system's trust store) or `coap://host:port`."""
    parts = urlsplit(url)
    if parts.scheme == "coap":
        return CoapLink(parts.hostname or "127.0.0.1", parts.port or 5683,
                        block_size=block_size, ack_timeout_s=ack_timeout_s,
                        max_retransmit=max_retransmit)
    if parts.scheme in ("ws", "wss"):
        return WebSocketLink(url, backoff_initial_s=backoff_initial_s,
                             backoff_max_s=backoff_max_s, ca_file=ca_file)
    raise ValueError(f"unsupported master url scheme {parts.scheme!r}")
