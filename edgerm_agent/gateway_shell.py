"""The gateway's Trio shell: a CoAP server for the devices, a CoAP client up to the master.

`Gateway.run` serves, on `[gateway] host:port`, what a constrained agent needs of a master:
- POST `a`: its AgentCall, relayed through `GatewayCore` (gateway.py) in a `GatewayBatch` on the
  master's CoAP `g`, answered with the master's own signed reply and CoAP code;
- GET `m/<sha256 hex>`: a module, from the cache (gateway_cache.py), fetched across the uplink once
  (concurrent requests for one module share the fetch) and checked against its hash.
`c` (Observe) is not served: a device then heartbeats on `a` (it answers 4.04, and the MicroPython
and C agents fall back), so the master pushes nothing the gateway would have to hold.

It runs next to the gateway's own agent (`edgerm-agent` with a `[gateway]` table runs both, see
`run_agent`), which keeps its own link to the master and its own tasks.

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
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import trio

from edgerm.coap.codes import Code
from edgerm.coap.config import CoapConfig
from edgerm.masters import MasterList
from edgerm.tasks import parse_sha256_hex
from edgerm.transport.coap import CoapServer, Request, Response, Site
from edgerm.transport.coap_client import CoapClient, CoapRequestError, open_coap_client
from edgerm.wire import CONTENT_FORMAT_CBOR, DecodeError, decode, encode, pb
from edgerm_agent.config import AgentConfig, GatewayConfig
from edgerm_agent.gateway import (
    Answer,
    DeviceName,
    Effect,
    Forget,
    GatewayCore,
    GatewaySettings,
    Persist,
    Reading,
    unavailable,
)
from edgerm_agent.gateway_cache import ModuleCache
from edgerm_agent.gateway_queue import GatewayQueue

__all__ = ["Gateway", "GatewayListenError", "run_agent"]

log = logging.getLogger("edgerm.gateway")

_OCTET_STREAM = 42
# A module a device asks for: the uplink's whole CoAP budget, blocks retransmitted inside it.
_MODULE_TIMEOUT_S = 120.0


class GatewayListenError(Exception):
    """The devices' CoAP port cannot be bound; the message says what to do."""


@dataclass(slots=True)
class _Slot:
    done: trio.Event = field(default_factory=trio.Event)
    response: Response | None = None


class Gateway:
    """One gateway; `await nursery.start(gateway.run)` gives the bound device-side address."""

    def __init__(self, config: AgentConfig) -> None:
        assert config.gateway is not None
        self.config: GatewayConfig = config.gateway
        gw = self.config
        base = config.work_dir / "gateway"
        self.queue_path = gw.queue_path or base / "queue.sqlite"
        self.readings_dir = base / "readings"
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
        queue = await trio.to_thread.run_sync(GatewayQueue, self.queue_path, self.readings_dir)
        self.queue = queue
        try:
            rows, names = await trio.to_thread.run_sync(queue.load)
            self.core = GatewayCore(GatewaySettings(
                window_s=gw.window_ms / 1000.0, batch_max=gw.batch_max,
                queue_max=gw.queue_max), rows=rows, names=names)
            if rows:
                log.info("gateway: %d kept device updates to deliver", len(rows))
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

    async def _device_call(self, request: Request) -> Response:
        if request.content_format not in (None, CONTENT_FORMAT_CBOR):
            return Response(Code.UNSUPPORTED_CONTENT_FORMAT, encode(pb.AgentReply(
                error=pb.Error(code=pb.UNSUPPORTED, message="Content-Format must be 60 (CBOR)"))),
                CONTENT_FORMAT_CBOR)
        assert self.core is not None
        call_id = next(self._ids)
        slot = _Slot()
        self._slots[call_id] = slot
        try:
            await self._apply(self.core.device_call(call_id, request.payload,
                                                    trio.current_time(), request.remote))
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
                    slot.response = Response(e.code, e.payload, CONTENT_FORMAT_CBOR,
                                             remember=e.code != Code.BAD_REQUEST)
                    slot.done.set()
            elif isinstance(e, Persist):
                async with self._disk:
                    await trio.to_thread.run_sync(queue.add, e.row)
                self.core.row_durable(e.row.row_id)
                self._wake.set()
            elif isinstance(e, Forget):
                async with self._disk:
                    await trio.to_thread.run_sync(queue.forget, e.row_ids)
            elif isinstance(e, Reading):
                async with self._disk:
                    await trio.to_thread.run_sync(queue.reading, e.device, e.topic, e.data)
            elif isinstance(e, DeviceName):
                async with self._disk:
                    await trio.to_thread.run_sync(queue.name, e.agent_id, e.name)

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
        try:
            resp = await self.client.post(self.uplink, "g", payload,
                                          content_format=CONTENT_FORMAT_CBOR,
                                          timeout=self.config.uplink_timeout_s)
        except CoapRequestError as e:
            log.warning("gateway uplink %s:%d: %s", *self.uplink, e)
            self._rotate("")
            return None
        self.stats["uplink_bytes_in"] += len(resp.payload)
        if resp.code == Code.CHANGED:
            try:
                return list(decode(pb.GatewayReplies, resp.payload).replies)
            except DecodeError as e:
                log.warning("gateway uplink: a reply that is not GatewayReplies: %s", e)
                return None
        leader = ""
        try:
            err = decode(pb.Error, resp.payload)
            leader = err.leader if err.code == pb.NOT_LEADER else ""
            log.warning("gateway uplink %s:%d refused the batch: %s %s", *self.uplink,
                        pb.ErrorCode.Name(err.code), err.message)
        except (DecodeError, ValueError):
            log.warning("gateway uplink %s:%d answered %s", *self.uplink, resp.code)
        self._rotate(leader)
        return None

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
    """`edgerm-agent` with a `[gateway]` table: the agent and the gateway side by side."""
    from edgerm_agent.shell import Agent

    async with trio.open_nursery() as nursery:
        await nursery.start(Gateway(config).run)
        await nursery.start(Agent(config).run)
