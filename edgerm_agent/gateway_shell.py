"""The gateway's Trio shell: a CoAP server for the devices, a CoAP client up to the master.

`Gateway.run` serves, on `[gateway] host:port`, what a constrained agent needs of a master:
- its OSCORE-protected requests (no outer Uri-Path: the route at the root), relayed blind
  through `GatewayCore` (gateway.py) in a `GatewayBatch` on the master's CoAP `g`, answered with
  the master's protected response (outer code, OSCORE option, ciphertext) as it came;
- POST `a`: its plain first registration, relayed the same way, answered with the master's
  signed reply and CoAP code;
- GET `m/<sha256 hex>`: a module in the clear, from the cache (gateway_cache.py), for devices
  that still fetch that way (an OSCORE device's module requests are protected: relayed, never
  cached).
An Observe registration (FETCH with Observe, `c` inside) is answered 4.04, unprotected: the
devices then heartbeat (the MicroPython and C agents fall back), so the master pushes nothing
the gateway would have to hold.

The POST `g` itself is OSCORE-protected with the gateway's own agent's context and sequence
numbers (`UplinkIdentity`: the agent it runs next to, see `run_agent` and
`edgerm_agent.shell.Agent.uplink_call`), one exchange at a time with the agent's own calls, so
its Partial IVs reach the master in order.

Resource handling: the sockets, the SQLite queue and every task live in `run`'s nursery and are
closed when it ends. Error handling: an uplink failure is a `None` batch result to the core (the
devices get UNAVAILABLE and retry; kept updates wait on disk); a disk failure escapes and stops
the gateway (it must not answer for what it could not keep).
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import trio

from edgerm.coap.codes import Code
from edgerm.coap.config import CoapConfig
from edgerm.masters import MasterList
from edgerm.oscore import (
    OscoreError,
    SecurityContext,
    decode_plaintext,
    open_response,
    pack_forwarded,
    seal_request,
)
from edgerm.oscore.plaintext import encode_plaintext
from edgerm.tasks import parse_sha256_hex
from edgerm.transport.coap import CoapServer, Request, Response, Site
from edgerm.transport.coap_client import (
    ClientResponse,
    CoapClient,
    CoapRequestError,
    open_coap_client,
)
from edgerm.wire import CONTENT_FORMAT_CBOR, DecodeError, decode, encode, pb
from edgerm_agent.config import AgentConfig, GatewayConfig
from edgerm_agent.gateway import (
    Answer,
    Effect,
    Forget,
    GatewayCore,
    GatewaySettings,
    Persist,
    unavailable,
)
from edgerm_agent.gateway_cache import ModuleCache
from edgerm_agent.gateway_queue import GatewayQueue

__all__ = ["Gateway", "GatewayListenError", "NotRegistered", "UplinkIdentity", "run_agent"]

log = logging.getLogger("edgerm.gateway")

_OCTET_STREAM = 42
_OSCORE = 9
_URI_PATH = 11
# A module a device asks for: the uplink's whole CoAP budget, blocks retransmitted inside it.
_MODULE_TIMEOUT_S = 120.0

T = TypeVar("T")


class GatewayListenError(Exception):
    """The devices' CoAP port cannot be bound; the message says what to do."""


class NotRegistered(Exception):
    """The gateway's own agent has no identity yet (not registered): nothing can go up."""


class UplinkIdentity(Protocol):
    """Whose OSCORE context protects the POST `g`: the gateway's own agent."""

    async def uplink_call(self, exchange: Callable[[SecurityContext, int], Awaitable[T]]
                          ) -> T:
        """Run `exchange(context, seq)` with the agent's context and a fresh sequence number,
        no other call of the agent in flight meanwhile; `NotRegistered` when it has none."""
        ...


@dataclass(slots=True)
class _Slot:
    done: trio.Event = field(default_factory=trio.Event)
    response: Response | None = None


class Gateway:
    """One gateway; `await nursery.start(gateway.run)` gives the bound device-side address."""

    def __init__(self, config: AgentConfig, identity: UplinkIdentity) -> None:
        assert config.gateway is not None
        self.config: GatewayConfig = config.gateway
        self.identity = identity
        gw = self.config
        base = config.work_dir / "gateway"
        self.queue_path = gw.queue_path or base / "queue.sqlite"
        self.cache_dir = base / "modules"
        self.uplinks = [(urlsplit(u).hostname or "", urlsplit(u).port or 5683)
                        for u in gw.uplink]
        # Which uplink is in use: the clients' rule (a named leader only if it is ours).
        self._masters = MasterList(gw.uplink)
        self.ack_timeout_s = config.coap_ack_timeout_s
        self.max_retransmit = config.coap_max_retransmit
        self.core: GatewayCore | None = None
        self.queue: GatewayQueue | None = None
        self.cache: ModuleCache | None = None
        self.client: CoapClient | None = None
        self.address: Any = None
        self._slots: dict[int, _Slot] = {}
        self._ids = itertools.count(1)
        self._wake = trio.Event()
        self._disk = trio.Lock()          # one SQLite call at a time
        # Modules being fetched: done, and the bytes once there (for the requests waiting).
        self._fetching: dict[bytes, tuple[trio.Event, list[bytes]]] = {}
        #: counters for logs, tests and the bench.
        self.stats = {"modules_fetched": 0, "modules_from_cache": 0, "uplink_bytes_out": 0,
                      "uplink_bytes_in": 0}

    @property
    def uplink(self) -> tuple[str, int]:
        return self.uplinks[self._masters.index]

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        gw = self.config
        queue = await trio.to_thread.run_sync(GatewayQueue, self.queue_path)
        self.queue = queue
        try:
            rows = await trio.to_thread.run_sync(queue.load)
            self.core = GatewayCore(GatewaySettings(
                window_s=gw.window_ms / 1000.0, batch_max=gw.batch_max,
                queue_max=gw.queue_max), rows=rows)
            if rows:
                log.info("gateway: %d kept device requests to deliver", len(rows))
            self.cache = await trio.to_thread.run_sync(
                ModuleCache, self.cache_dir, int(gw.cache_mb * 1024 * 1024))
            # The uplink's CoAP retransmission is the agent's own ([coap] ack_timeout_s and
            # max_retransmit), cut at uplink_timeout_s.
            coap = CoapConfig(ack_timeout=self.ack_timeout_s, max_retransmit=self.max_retransmit,
                              request_timeout=gw.uplink_timeout_s)
            async with open_coap_client(config=coap) as client:
                self.client = client
                async with trio.open_nursery() as nursery:
                    site = Site()
                    # OSCORE requests carry no outer Uri-Path: they all come to the root.
                    site.add("", self._device_protected, methods=(Code.POST, Code.FETCH))
                    site.add("a", self._device_call, methods=(Code.POST,), rt="edgerm.agent")
                    site.add("m", self._module, methods=(Code.GET,), prefix=True,
                             rt="edgerm.module")
                    server = CoapServer(site, config=CoapConfig(
                        handler_timeout=gw.reply_timeout_s + 5.0))
                    try:
                        self.address = await nursery.start(server.serve, gw.host, gw.port)
                    except OSError as e:
                        raise GatewayListenError(
                            f"cannot serve the devices on {gw.host}:{gw.port} "
                            f"({e.strerror or e}): stop what uses that port or set "
                            "[gateway] host/port") from None
                    nursery.start_soon(self._uplink_loop)
                    log.info("gateway serving devices on %s, uplink %s:%d", self.address,
                             *self.uplink)
                    task_status.started(self.address)
        finally:
            queue.close()

    # -- devices ------------------------------------------------------------------------------

    async def _device_protected(self, request: Request) -> Response:
        """A device's OSCORE-protected request: relayed as an entry it cannot read."""
        option = next((v for n, v in request.options if n == _OSCORE), None)
        if option is None:
            return Response(Code.NOT_FOUND, b"use POST a, or OSCORE")
        if request.observation is not None:
            # An Observe registration (`c` inside): not relayed (its notifications would need
            # a path down that a batch does not have); the device heartbeats instead.
            return Response(Code.NOT_FOUND, b"no Observe behind a gateway")
        try:
            entry = pack_forwarded(request.method, option, request.payload)
        except ValueError:
            return Response(Code.BAD_OPTION, b"")
        return await self._relay(entry, request.remote)

    async def _device_call(self, request: Request) -> Response:
        """A device's plain POST `a`: its first registration (anything else the master
        refuses: no downgrade)."""
        if request.content_format not in (None, CONTENT_FORMAT_CBOR):
            return Response(Code.UNSUPPORTED_CONTENT_FORMAT, encode(pb.AgentReply(
                error=pb.Error(code=pb.UNSUPPORTED, message="Content-Format must be 60 (CBOR)"))),
                CONTENT_FORMAT_CBOR)
        return await self._relay(request.payload, request.remote)

    async def _relay(self, entry: bytes, remote: object) -> Response:
        assert self.core is not None
        call_id = next(self._ids)
        slot = _Slot()
        self._slots[call_id] = slot
        try:
            await self._apply(self.core.device_call(call_id, entry, trio.current_time(),
                                                    remote))
            self._wake.set()
            with trio.move_on_after(self.config.reply_timeout_s):
                await slot.done.wait()
            if slot.response is None:
                self.core.call_gone(call_id)
                return Response(Code.SERVICE_UNAVAILABLE, unavailable(
                    "the master did not answer in time; try again"), CONTENT_FORMAT_CBOR,
                    remember=True)
            return slot.response
        finally:
            del self._slots[call_id]

    async def _apply(self, effects: list[Effect]) -> None:
        assert self.core is not None and self.queue is not None
        queue = self.queue
        for e in effects:
            if isinstance(e, Answer):
                slot = self._slots.get(e.call_id)
                if slot is not None and slot.response is None:
                    # Remembered for the device's retransmissions, "try again" included: a
                    # retransmission relayed anew could reach the master after the original
                    # did (a batch that timed out here but was applied there) and be refused
                    # as a replay. Garbage is not remembered (it would hold state for nothing).
                    remember = e.code not in (Code.BAD_REQUEST, Code.BAD_OPTION)
                    if e.oscore is None:
                        slot.response = Response(e.code, e.payload, CONTENT_FORMAT_CBOR,
                                                 remember=remember)
                    else:  # protected: as the master sent it (no outer Content-Format)
                        slot.response = Response(e.code, e.payload, None,
                                                 [(_OSCORE, e.oscore)], remember=remember)
                    slot.done.set()
            elif isinstance(e, Persist):
                async with self._disk:
                    await trio.to_thread.run_sync(queue.add, e.row)
                self.core.row_durable(e.row.row_id)
                self._wake.set()
            elif isinstance(e, Forget):
                async with self._disk:
                    await trio.to_thread.run_sync(queue.forget, e.row_ids)

    # -- the uplink ---------------------------------------------------------------------------

    async def _uplink_loop(self) -> None:
        core = self.core
        assert core is not None
        while True:
            batch = core.poll(trio.current_time())
            if batch is None:
                due = core.next_timer()
                with trio.move_on_at(math.inf if due is None else due):
                    await self._wake.wait()
                self._wake = trio.Event()
                continue
            replies = await self._send(batch.calls)
            await self._apply(core.batch_result(batch.batch_id, replies, trio.current_time()))

    async def _send(self, calls: tuple[bytes, ...]) -> list[bytes] | None:
        """One batch across the uplink: the replies, or None (timeout, refusal, garbage)."""
        assert self.client is not None
        payload = encode(pb.GatewayBatch(calls=list(calls)))
        self.stats["uplink_bytes_out"] += len(payload)
        uplink = self.uplink
        try:
            got = await self.identity.uplink_call(
                lambda ctx, seq: self._post_g(uplink, ctx, seq, payload))
        except NotRegistered:
            log.info("gateway: its own agent is not registered yet; the devices wait")
            return None
        except CoapRequestError as e:
            log.warning("gateway uplink %s:%d: %s", *uplink, e)
            self._rotate("")
            return None
        resp, ctx, seq = got
        self.stats["uplink_bytes_in"] += len(resp.payload)
        option = next((v for n, v in resp.options if n == _OSCORE), None)
        if option is None:
            self._refused(uplink, resp)
            return None
        try:
            _, plaintext = open_response(ctx, seq, option, resp.payload)
            code, _, inner = decode_plaintext(plaintext)
        except (OscoreError, ValueError) as e:
            log.warning("gateway uplink %s:%d: a reply that does not verify: %s", *uplink, e)
            return None
        if code != Code.CHANGED:
            log.warning("gateway uplink %s:%d refused the batch: %s %r", *uplink, code,
                        inner[:80])
            return None
        try:
            return list(decode(pb.GatewayReplies, inner).replies)
        except DecodeError as e:
            log.warning("gateway uplink: a reply that is not GatewayReplies: %s", e)
            return None

    async def _post_g(self, uplink: tuple[str, int], ctx: SecurityContext, seq: int,
                      payload: bytes) -> tuple[ClientResponse, SecurityContext, int]:
        """The protected POST `g` (inner: POST, Uri-Path g, the batch; no Content-Format: the
        resource implies CBOR, as on every protected request)."""
        assert self.client is not None
        option, ciphertext = seal_request(ctx, seq, encode_plaintext(
            Code.POST, [(_URI_PATH, b"g")], payload))
        resp = await self.client.post(uplink, (), ciphertext, options=[(_OSCORE, option)],
                                      timeout=self.config.uplink_timeout_s)
        return resp, ctx, seq

    def _refused(self, uplink: tuple[str, int], resp: ClientResponse) -> None:
        """A plain answer to the protected batch: a refusal. A standby's NOT_LEADER moves to
        the leader; a 4.01 (the master does not know the gateway's agent, e.g. after it was
        LOST) is the agent's business: its own next call meets it too and it re-registers."""
        error: pb.Error | None = None
        try:
            reply = decode(pb.AgentReply, resp.payload)
            if reply.HasField("error"):
                error = reply.error
        except DecodeError:
            pass
        if error is None:
            try:
                error = decode(pb.Error, resp.payload)
            except DecodeError:
                error = None
        if error is None:
            log.warning("gateway uplink %s:%d answered %s", *uplink, resp.code)
            self._rotate("")
            return
        log.warning("gateway uplink %s:%d refused the batch: %s %s", *uplink,
                    pb.ErrorCode.Name(error.code), error.message)
        if error.code == pb.NOT_LEADER:
            self._rotate(error.leader)

    def _rotate(self, leader: str) -> None:
        """Move to the named leader if it is one of ours, else to the next uplink (docs/ha.md:
        a refusal can only make a client try its own masters)."""
        self._masters.refused(leader)

    # -- modules ------------------------------------------------------------------------------

    async def _module(self, request: Request) -> Response:
        sha = parse_sha256_hex(request.path[1]) if len(request.path) == 2 else None
        if sha is None:
            return Response(Code.NOT_FOUND, b"use m/<sha256 hex>")
        assert self.cache is not None
        data = await trio.to_thread.run_sync(self.cache.get, sha)
        if data is not None:
            self.stats["modules_from_cache"] += 1
            return Response(Code.CONTENT, data, _OCTET_STREAM)
        data = await self._fetch(sha)
        if data is None:
            return Response(Code.NOT_FOUND, b"no such module at the master")
        return Response(Code.CONTENT, data, _OCTET_STREAM)

    async def _fetch(self, sha: bytes) -> bytes | None:
        """The module from the master, once for every device asking meanwhile."""
        assert self.cache is not None and self.client is not None
        running = self._fetching.get(sha)
        if running is not None:
            await running[0].wait()
            return running[1][0] if running[1] else None
        done, result = self._fetching[sha] = (trio.Event(), [])
        try:
            try:
                resp = await self.client.get(self.uplink, f"m/{sha.hex()}",
                                             timeout=_MODULE_TIMEOUT_S)
            except CoapRequestError as e:
                log.warning("gateway: module %s from the master: %s", sha.hex()[:12], e)
                return None
            self.stats["uplink_bytes_in"] += len(resp.payload)
            if resp.code != Code.CONTENT:
                log.warning("gateway: module %s: the master answered %s %r", sha.hex()[:12],
                            resp.code, resp.payload[:80])
                return None
            data = resp.payload
            if hashlib.sha256(data).digest() != sha:
                log.warning("gateway: module %s from the master does not match its hash; "
                            "not served", sha.hex()[:12])
                return None
            self.stats["modules_fetched"] += 1
            await trio.to_thread.run_sync(self.cache.put, sha, data)
            result.append(data)  # for the requests that waited (even if too big to keep)
            return data
        finally:
            del self._fetching[sha]
            done.set()


async def run_agent(config: AgentConfig) -> None:
    """`edgerm-agent` with a `[gateway]` table: the agent and the gateway side by side; the
    gateway's uplink speaks as the agent (its OSCORE context)."""
    from edgerm_agent.shell import Agent

    agent = Agent(config)
    async with trio.open_nursery() as nursery:
        await nursery.start(Gateway(config, agent).run)
        await nursery.start(agent.run)
