"""How the agent's calls reach the master: a WebSocket link or a CoAP link.

Both are agent-initiated (they work behind a NAT) and move bytes only: the core builds, signs
and checks every message. The shell uses:

- `await link.call(data) -> reply bytes` for the one call in flight (raises `LinkError`);
- `await link.run(on_push, task_status=...)` in the agent's nursery: keeps the connection (or
  the CoAP client) alive and hands each pushed reply to `on_push(data, seq)`;
- `link.observe_wanted` / `link.observation_alive`: CoAP wants a push channel, an Observe FETCH
  on `c` whose payload the core signs, so it goes through the call pipeline as kind "observe"
  and `await link.observe(data, on_push)` returns its first response;
- `await link.fetch_module(sha256, size) -> bytes` when the transport fetches modules outside
  the call channel (CoAP GET `m/<hex>`, Block2); WebSocket returns None and the shell fetches
  through `AgentCore.request_module` instead.

The WebSocket link uses the shared transport (`edgerm.transport.websocket`: connect, keepalive
pings that close a half-open connection, reconnect with exponential back-off and jitter). The
CoAP stack is imported only by `CoapLink`, so a WebSocket agent does not carry it in memory.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import trio

from edgerm.wire import CONTENT_FORMAT_CBOR, DecodeError, Limits, decode, pb

if TYPE_CHECKING:
    from edgerm.transport.coap import CoapClient
    from edgerm.transport.websocket import WsConnection

__all__ = ["Link", "LinkError", "WebSocketLink", "CoapLink", "open_link"]

_REPLY_LIMITS = Limits(max_bytes=1024 * 1024)
# WebSocket frames from the master: one reply with module chunks at most.
_MAX_WS_MESSAGE = 2 * 1024 * 1024


class LinkError(Exception):
    """The call did not get a reply (not connected, connection lost, timeout)."""


PushHandler = Callable[[bytes, int], None]


class Link:
    """The interface the shell drives (see the module docstring)."""

    observe_wanted = False
    observation_alive = False

    async def call(self, data: bytes) -> bytes:
        raise NotImplementedError

    async def observe(self, data: bytes, on_push: PushHandler) -> bytes:
        raise NotImplementedError

    async def fetch_module(self, sha256: bytes, size: int) -> bytes | None:
        return None

    async def run(self, on_push: PushHandler, *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        raise NotImplementedError


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

    async def call(self, data: bytes) -> bytes:
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
                    return await receive.receive()
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
            on_push(msg, 0)
        elif self._waiting is not None and self._waiting[0] == seq:
            try:
                self._waiting[1].send_nowait(msg)
            except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
                pass  # the caller has just given up on this reply


class CoapLink(Link):
    """CoAP over UDP: POST `a` per call, FETCH `c` + Observe for pushed commands, GET `m/<hex>`
    for modules (Block2 at `block_size`)."""

    observe_wanted = True

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

    async def call(self, data: bytes) -> bytes:
        from edgerm.transport.coap import CoapRequestError

        client = await self._client_ready()
        try:
            resp = await client.post(self.remote, "a", data, content_format=CONTENT_FORMAT_CBOR,
                                     token_length=2)
        except CoapRequestError as e:
            raise LinkError(f"coap: {e}") from None
        if not resp.payload:
            raise LinkError(f"coap: empty response {resp.code >> 5}.{resp.code & 31:02d}")
        return resp.payload

    async def observe(self, data: bytes, on_push: PushHandler) -> bytes:
        """Register the Observe on `c` with the signed heartbeat `data`; return the first
        response (the reply to that heartbeat); later notifications go to `on_push`."""
        await self._client_ready()
        assert self._nursery is not None
        first, first_rx = trio.open_memory_channel[bytes](1)
        self.observation_alive = True
        self._nursery.start_soon(self._observe, data, on_push, first)
        async with first_rx:
            try:
                return await first_rx.receive()
            except trio.EndOfChannel:
                raise LinkError("coap: observe registration failed") from None

    async def _observe(self, data: bytes, on_push: PushHandler,
                       first: trio.MemorySendChannel[bytes]) -> None:
        from edgerm.coap.codes import Code
        from edgerm.transport.coap import CoapRequestError

        assert self._client is not None
        seq = _call_seq(data)
        delivered = False
        try:
            async with first:
                async with self._client.observe(self.remote, "c", data, method=Code.FETCH,
                                                content_format=CONTENT_FORMAT_CBOR,
                                                token_length=2) as obs:
                    async for resp in obs:
                        if not delivered:
                            delivered = True
                            try:
                                first.send_nowait(resp.payload)
                            except trio.BrokenResourceError:
                                # The caller gave up waiting (its call timed out on a lossy
                                # link) before the first response came: drop this
                                # observation; the agent registers a new one.
                                return
                            continue
                        on_push(resp.payload, seq)
        except CoapRequestError:
            pass
        finally:
            self.observation_alive = False

    async def fetch_module(self, sha256: bytes, size: int) -> bytes | None:
        from edgerm.transport.coap import CoapRequestError
        from edgerm_agent.modules import ModuleUnavailable

        client = await self._client_ready()
        try:
            resp = await client.get(self.remote, ("m", sha256.hex()),
                                    block_size=self.block_size, timeout=120)
        except CoapRequestError as e:
            raise LinkError(f"coap: module fetch: {e}") from None
        if not resp.success:
            raise ModuleUnavailable(f"master answered {resp.code >> 5}.{resp.code & 31:02d}"
                                    " for the module")
        return resp.payload

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
