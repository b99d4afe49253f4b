"""The Trio shell around the master core: CoAP and WebSocket in, SQLite and sockets out.

It does four things and decides nothing:
1. feeds every decoded-enough input to the core (`agent_call`, `framework_call`, ...);
2. a single *flusher* task takes the core's records and outbox together, commits the records in
   one SQLite transaction (`trio.to_thread.run_sync(store.apply, ...)`), and only then sends the
   outbox (persist, then act); request handlers that answer directly (CoAP POST `a`, agent
   WebSocket frames) wait until every record emitted before their answer is durable;
3. one timer task sleeps until the core's `get_timer()` and calls `handle_timer`;
4. keeps the push channels: an agent's CoAP Observe on `c` or its WebSocket, and each
   framework's WebSocket (with a writer task and a bounded queue).

Role (several masters, docs/ha.md): a service is the LEADER unless `set_role(Role.STANDBY,
leader)` made it a standby. A standby answers every agent call (CoAP `a`, `c`, `m`, WebSocket
`/agent`), every framework call and the operator state with the error NOT_LEADER naming the
leader's URL for that transport (`MemberInfo.urls`), unsigned (a standby need not hold the agent
secrets; clients only follow a leader URL from their own configured list, so a forged refusal
can at most make them try their next master). It never calls the core, so nothing reaches the
store's write path: the timer and the flusher wait until the service leads again.

Resource handling: everything runs in the nursery of `MasterService.run`; the store is closed
when it exits. A framework connection whose queue overflows (a consumer that does not read) is
closed; it can re-subscribe and reconcile.

Error handling: bad input never reaches here as an exception (the core answers it); a failing
commit escapes and stops the master (it must not act on what it could not persist).
"""

from __future__ import annotations

import gc
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio
from trio_websocket import ConnectionClosed

from edgerm.coap.codes import Code
from edgerm.transport.coap import CoapServer, Observation, ObservationGone, Request, Response, Site
from edgerm.transport.websocket import (
    CLOSE_POLICY,
    WebSocketConfig,
    WsConnection,
    serve_websocket,
)
from edgerm.wire import CONTENT_FORMAT_CBOR, DecodeError, decode, encode, pb
from edgerm_master.config import MasterConfig
from edgerm_master.core import AgentResult, CloseFramework, Master, ToAgent, ToFramework
from edgerm_master.fastpath import parse_steady_heartbeat_untrusted
from edgerm_master.gateways import gateway_batch, gateway_inline
from edgerm_master.members import MemberInfo, Role
from edgerm_master.modules import ModuleReader, parse_hex
from edgerm_master.store import Store

__all__ = ["MasterService", "ERROR_TO_COAP", "ListenError", "peer_address"]

log = logging.getLogger("edgerm.master.service")

E = pb.ErrorCode
ERROR_TO_COAP = {
    0: Code.CHANGED,
    E.BAD_REQUEST: Code.BAD_REQUEST,
    E.UNAUTHENTICATED: Code.UNAUTHORIZED,
    E.FORBIDDEN: Code.FORBIDDEN,
    E.NOT_FOUND: Code.NOT_FOUND,
    E.CONFLICT: Code.CONFLICT,
    E.TOO_LARGE: Code.REQUEST_ENTITY_TOO_LARGE,
    E.INVALID_OFFER: Code.BAD_REQUEST,
    E.UNSUPPORTED: Code.NOT_IMPLEMENTED,
    E.UNAVAILABLE: Code.SERVICE_UNAVAILABLE,
    E.INTERNAL: Code.INTERNAL_SERVER_ERROR,
    E.NOT_LEADER: Code.SERVICE_UNAVAILABLE,
}
_OCTET_STREAM = 42
# Events queued for one framework before it counts as not reading and is disconnected.
_FRAMEWORK_QUEUE = 10_000
# A full garbage collection scans every object the collector tracks: with a million agents one
# took ~1.5 s on the bench machine (154 ms per 100,000 agents), and heartbeats alone (dedup
# entries growing old) trigger one every few seconds. So each time this many agents were
# added, the objects alive then (the agents, mostly, which live as long as their agent) are
# moved out of the collector's sight with gc.freeze(), after collecting the young generations;
# a full collection then scans only what is newer (< 1 ms after freezing 100,000 agents).
# The price: a reference cycle that had already become garbage in the old generation at that
# moment is never collected (the master makes few cycles: trio's cancelled tasks, exceptions).
_GC_FREEZE_AGENTS = 10_000


@dataclass(frozen=True, slots=True)
class _Close:
    """In a connection's send queue: close it (after what was queued before) like this."""
    code: int = 1000
    reason: str = ""


_CLOSE = _Close()


class ListenError(Exception):
    """A port the master must serve on cannot be bound (in use, not allowed, no such address).
    The message says which and what to do."""


async def _listen(what: str, flag: str, host: str, port: int,
                  start: Callable[[], Awaitable[Any]]) -> Any:
    """`await start()` (a server's `nursery.start`), its bind failure as a `ListenError`."""
    try:
        return await start()
    except (OSError, ExceptionGroup) as e:
        # serve_websocket binds inside a nursery of its own: its OSError comes in a group.
        error = e
        while isinstance(error, ExceptionGroup):
            matched, rest = error.split(OSError)
            if matched is None or rest is not None or len(matched.exceptions) != 1:
                raise
            error = matched.exceptions[0]
        assert isinstance(error, OSError)
        raise ListenError(
            f"cannot serve {what} on {host}:{port}: {error.strerror or error}; stop what uses "
            f"that port or choose another with {flag} (0 picks a free one)") from None


class MasterService:
    """Run with `await nursery.start(service.run)`; `started` gives ((coap host, port),
    (ws host, port))."""

    def __init__(self, config: MasterConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.core = Master(config)
        self.store: Store | None = None
        self.modules: ModuleReader | None = None
        self._kick = trio.Event()
        self._durable_event = trio.Event()
        self._durable = 0
        self._timer_scope: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None
        self._conn_ids = itertools.count(1)
        self._fw_queues: dict[int, trio.MemorySendChannel[bytes | _Close]] = {}
        self._agent_push: dict[int, Observation | trio.MemorySendChannel[bytes]] = {}
        self.coap_server: CoapServer | None = None
        self.commits = 0
        self._gc_frozen_at = 0  # agents there were when the collector last froze the heap
        self.role = Role.LEADER
        self.leader: MemberInfo | None = None
        self._leading = trio.Event()   # set while LEADER; the timer and flusher wait on it
        self._leading.set()

    # ------------------------------------------------------------------------------ role

    def set_role(self, role: Role, leader: MemberInfo | None = None) -> None:
        """Lead (serve) or stand by (refuse with NOT_LEADER naming `leader`, None: unknown).
        Becoming a standby ends every push channel at once: each agent's Observe or WebSocket
        and each framework's WebSocket (which first gets a NOT_LEADER event), so nobody waits
        on a master that no longer acts."""
        was = self.role
        self.role = role
        self.leader = leader
        if role is Role.LEADER:
            self._leading.set()
            return
        if was is Role.LEADER:
            self._leading = trio.Event()
            self._drop_all_channels()

    def _drop_all_channels(self) -> None:
        refusal = encode(pb.FrameworkEvent(error=self._not_leader("ws")))
        for conn in list(self._fw_queues):
            q = self._fw_queues[conn]
            try:
                q.send_nowait(refusal)
            except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
                pass
            self._close_fw(conn, _Close(1000, "not the leader"))
        agent_refusal = encode(pb.AgentReply(error=self._not_leader("ws")))
        for channel in list(self._agent_push.values()):
            if isinstance(channel, Observation):
                channel.cancel()
            else:
                try:
                    channel.send_nowait(agent_refusal)
                except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
                    pass
                channel.close()
        self._agent_push.clear()   # the core is not told: a standby leaves it alone

    def _not_leader(self, transport: str) -> pb.Error:
        """The refusal of a standby, naming the leader's URL for `transport` ("coap", "ws")."""
        url = self.leader.url(transport) if self.leader is not None else ""
        text = (f"this master is a standby; the leader is {url}" if url else
                "this master is a standby and knows no leader yet; try another master")
        return pb.Error(code=E.NOT_LEADER, message=text, leader=url)

    def _coap_refusal(self, request: Request) -> Response:
        seq = 0
        try:
            seq = decode(pb.AgentCall, request.payload).seq
        except DecodeError:
            pass
        return Response(Code.SERVICE_UNAVAILABLE, encode(pb.AgentReply(
            seq=seq, error=self._not_leader("coap"))), CONTENT_FORMAT_CBOR)

    # ------------------------------------------------------------------------------ running

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        cfg = self.config
        store = await trio.to_thread.run_sync(Store, cfg.data_dir, cfg.sqlite_synchronous)
        self.store = store
        self.modules = ModuleReader(store.module_dir)
        try:
            snap = await trio.to_thread.run_sync(store.recover)
            self.core.recover(snap, self.clock())
            # Recovery may itself emit records (pruning); commit them before serving.
            await trio.to_thread.run_sync(store.apply, self.core.take_records())
            self._durable = self.core.records_emitted
            self.core.take_outbox()
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._flusher)
                nursery.start_soon(self._timer_loop)
                site = Site()
                site.add("a", self._coap_agent, methods=(Code.POST,), rt="edgerm.agent",
                         inline=self._coap_agent_inline)
                site.add("c", self._coap_commands, methods=(Code.FETCH,), observable=True,
                         rt="edgerm.commands")
                site.add("m", self._coap_module, methods=(Code.GET,), prefix=True,
                         rt="edgerm.module")
                site.add("s", self._coap_state, methods=(Code.POST,), rt="edgerm.state")
                site.add("g", self._coap_gateway, methods=(Code.POST,), rt="edgerm.gateway",
                         inline=self._coap_gateway_inline)
                self.coap_server = CoapServer(site)
                server = self.coap_server
                coap_addr = await _listen(
                    "CoAP", "--coap-port", cfg.host, cfg.coap_port,
                    lambda: nursery.start(server.serve, cfg.host, cfg.coap_port))
                ws_addr = await _listen("WebSocket", "--ws-port", cfg.host, cfg.ws_port,
                                        lambda: nursery.start(functools_partial(
                    serve_websocket,
                    {"/agent": self._ws_agent, "/framework": self._ws_framework,
                     "/state": self._ws_state},
                    cfg.host, cfg.ws_port,
                    config=WebSocketConfig(
                        max_message_size=cfg.framework_message_max,
                        first_message_timeout=cfg.ws_first_message_s,
                        max_connections=cfg.ws_max_connections or None,
                        max_connections_per_source=cfg.ws_max_connections_per_source or None),
                    # An agent that reconnected calls when its next heartbeat is due.
                    first_message_timeouts={"/agent": cfg.ws_first_message_s + cfg.heartbeat_s
                                            * (1.0 + cfg.jitter_fraction)})))
                ws_port = ws_addr[1]
                task_status.started(((coap_addr[0], coap_addr[1]), (cfg.host, ws_port)))
        finally:
            store.close()

    def _after_core(self) -> None:
        """Wake the flusher if the core has something, and pull the timer in if needed."""
        core = self.core
        if core.has_output():
            self._kick.set()
        scope = self._timer_scope
        if scope is not None:
            deadline = trio.current_time() + max(0.0, core.get_timer() - self.clock())
            if deadline < scope.deadline:
                scope.deadline = deadline

    async def _wait_durable(self) -> None:
        """Return once every record the core emitted so far is committed."""
        target = self.core.records_emitted
        while self._durable < target:
            self._kick.set()
            await self._durable_event.wait()

    async def _flusher(self) -> None:
        core = self.core
        assert self.store is not None
        store = self.store
        while True:
            await self._kick.wait()
            await self._leading.wait()
            self._kick = trio.Event()
            target = core.records_emitted
            records = core.take_records()
            outbox = core.take_outbox()
            if records:
                await trio.to_thread.run_sync(store.apply, records)
                self.commits += 1
                for r in records:
                    if type(r).__name__ == "RemoveModule" and self.modules is not None:
                        self.modules.forget(r.sha256)  # type: ignore[attr-defined]
            self._durable = target
            event, self._durable_event = self._durable_event, trio.Event()
            event.set()
            for item in outbox:
                self._dispatch(item)
            if len(core.agents) >= self._gc_frozen_at + _GC_FREEZE_AGENTS:
                self._gc_frozen_at = len(core.agents)
                gc.collect(1)
                gc.freeze()

    def _dispatch(self, item: ToFramework | ToAgent | CloseFramework) -> None:
        if isinstance(item, ToFramework):
            q = self._fw_queues.get(item.conn)
            if q is None:
                return
            try:
                q.send_nowait(encode(item.event))
            except trio.WouldBlock:
                log.warning("framework connection %d does not read; closing it", item.conn)
                self._close_fw(item.conn, _Close(1008, "events not read"))
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                pass
        elif isinstance(item, CloseFramework):
            self._close_fw(item.conn, _Close(CLOSE_POLICY if item.refused else 1000,
                                             item.reason))
        else:
            channel = self._agent_push.get(item.agent_id)
            if channel is None:
                return
            assert self._nursery is not None
            if isinstance(channel, Observation):
                self._nursery.start_soon(self._notify, item.agent_id, channel, item.data)
            else:
                try:
                    channel.send_nowait(item.data)
                except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
                    pass

    def _close_fw(self, conn: int, how: _Close = _CLOSE) -> None:
        q = self._fw_queues.pop(conn, None)
        if q is not None:
            try:
                q.send_nowait(how)
            except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
                pass
            q.close()

    async def _notify(self, agent_id: int, obs: Observation, data: bytes) -> None:
        try:
            await obs.notify(data, content_format=CONTENT_FORMAT_CBOR)
        except ObservationGone:
            self._drop_agent_channel(agent_id, obs)
        except Exception:
            log.exception("notifying agent %d failed", agent_id)
            self._drop_agent_channel(agent_id, obs)

    def _drop_agent_channel(self, agent_id: int, channel: object) -> None:
        if self._agent_push.get(agent_id) is channel:
            del self._agent_push[agent_id]
            self.core.agent_channel(agent_id, False)

    def _set_agent_channel(self, agent_id: int,
                           channel: Observation | trio.MemorySendChannel[bytes]) -> None:
        old = self._agent_push.get(agent_id)
        if old is channel:
            return
        if isinstance(old, Observation):
            old.cancel()
        self._agent_push[agent_id] = channel
        self.core.agent_channel(agent_id, True)
        self._after_core()

    async def _timer_loop(self) -> None:
        core = self.core
        while True:
            await self._leading.wait()
            delay = max(0.0, core.get_timer() - self.clock())
            with trio.CancelScope(deadline=trio.current_time() + delay) as scope:
                self._timer_scope = scope
                await trio.sleep_forever()
            self._timer_scope = None
            if self.role is not Role.LEADER:
                continue
            try:
                core.handle_timer(self.clock())
            except Exception:
                log.exception("handle_timer failed")
                await trio.sleep(0.1)
            if core.has_output():
                self._kick.set()

    # ------------------------------------------------------------------------------ agents

    async def _agent_result(self, result: AgentResult) -> bytes:
        """Wait for durability, read a module chunk if asked; the bytes to answer with."""
        self._after_core()
        await self._wait_durable()
        if result.module is not None and self.modules is not None:
            read = result.module
            try:
                data = await trio.to_thread.run_sync(self.modules.read, read.sha256)
            except OSError:
                return encode(pb.AgentReply(seq=read.seq, error=pb.Error(
                    code=E.UNAVAILABLE, message="module file unreadable; try again")))
            return self.core.module_chunk(result.agent_id, read,
                                          data[read.offset:read.offset + read.length])
        return result.data

    def _check_format(self, request: Request) -> Response | None:
        if request.content_format not in (None, CONTENT_FORMAT_CBOR):
            return Response(Code.UNSUPPORTED_CONTENT_FORMAT, encode(pb.AgentReply(
                error=pb.Error(code=E.UNSUPPORTED, message="Content-Format must be 60 (CBOR)"))),
                CONTENT_FORMAT_CBOR)
        return None

    def _coap_agent_inline(self, request: Request) -> Response | None:
        """A steady heartbeat without a command ack, when every record is durable, answered in
        the CoAP receive loop: nothing to wait for, so no worker (half the master's time per
        heartbeat was the queue, the task switch and the scheduler). Anything else, or a
        heartbeat whose call did emit records (the general path: a master restart asks the
        agent to re-register), goes to `_coap_agent`: the latter with its result in
        `request.context`, so it is not applied twice."""
        if self.role is not Role.LEADER:
            return self._coap_refusal(request)
        if request.content_format not in (None, CONTENT_FORMAT_CBOR):
            return None
        core = self.core
        if self._durable < core.records_emitted:
            return None  # the answer must wait for records of other calls
        steady = parse_steady_heartbeat_untrusted(request.payload)
        if steady is None or steady[4]:
            return None  # not a steady heartbeat, or one acking commands (a record)
        result = core.agent_call(request.payload, self.clock(), "coap",
                                 peer_address(request.remote))
        if core.records_emitted > self._durable or result.module is not None:
            request.context = result
            return None
        self._after_core()
        return self._agent_response(result, result.data)

    @staticmethod
    def _agent_response(result: AgentResult, data: bytes) -> Response:
        # An authenticated call may have changed state (its seq at least) even if it failed:
        # its answer is kept for retransmissions; an unauthenticated error keeps no CoAP state.
        return Response(ERROR_TO_COAP.get(result.error, Code.BAD_REQUEST), data,
                        CONTENT_FORMAT_CBOR, remember=True if result.agent_id else None)

    async def _coap_agent(self, request: Request) -> Response:
        result = request.context
        if self.role is not Role.LEADER and not isinstance(result, AgentResult):
            return self._coap_refusal(request)
        if not isinstance(result, AgentResult):  # not already applied by _coap_agent_inline
            bad = self._check_format(request)
            if bad is not None:
                return bad
            result = self.core.agent_call(request.payload, self.clock(), "coap",
                                          peer_address(request.remote))
        return self._agent_response(result, await self._agent_result(result))

    async def _coap_commands(self, request: Request) -> Response:
        if self.role is not Role.LEADER:
            return self._coap_refusal(request)
        bad = self._check_format(request)
        if bad is not None:
            return bad
        result = self.core.agent_call(request.payload, self.clock(), "coap",
                                      peer_address(request.remote))
        data = await self._agent_result(result)
        observe = False
        if result.error == 0 and result.agent_id and request.observation is not None:
            obs = request.observation
            self._set_agent_channel(result.agent_id, obs)
            observe = True
            assert self._nursery is not None
            self._nursery.start_soon(self._watch_observation, result.agent_id, obs)
        code = Code.CONTENT if result.error == 0 else ERROR_TO_COAP.get(result.error,
                                                                         Code.BAD_REQUEST)
        return Response(code, data, CONTENT_FORMAT_CBOR, observe=observe,
                        remember=True if result.agent_id else None)

    def _coap_gateway_inline(self, request: Request) -> Response | None:
        return gateway_inline(self, request)

    async def _coap_gateway(self, request: Request) -> Response:
        return await gateway_batch(self, request)

    async def _watch_observation(self, agent_id: int, obs: Observation) -> None:
        await obs.wait_gone()
        self._drop_agent_channel(agent_id, obs)

    async def _coap_module(self, request: Request) -> Response:
        if self.role is not Role.LEADER:
            return Response(Code.SERVICE_UNAVAILABLE, encode(self._not_leader("coap")),
                            CONTENT_FORMAT_CBOR)
        if len(request.path) != 2:
            return Response(Code.NOT_FOUND, b"use m/<sha256 hex>")
        sha = parse_hex(request.path[1])
        if sha is None or self.core.module_size(sha) is None or self.modules is None:
            return Response(Code.NOT_FOUND, b"no such module")
        data = self.modules.cached(sha)
        if data is None:
            try:
                data = await trio.to_thread.run_sync(self.modules.read, sha)
            except OSError:
                return Response(Code.SERVICE_UNAVAILABLE, b"module file unreadable")
        return Response(Code.CONTENT, data, _OCTET_STREAM)

    async def _coap_state(self, request: Request) -> Response:
        if self.role is not Role.LEADER:
            return Response(Code.SERVICE_UNAVAILABLE, encode(self._not_leader("coap")),
                            CONTENT_FORMAT_CBOR)
        code, data = self.core.cluster_state(request.payload, self.clock(),
                                             peer_address(request.remote))
        if code == 0:
            return Response(Code.CONTENT, data, CONTENT_FORMAT_CBOR)
        return Response(ERROR_TO_COAP.get(code, Code.BAD_REQUEST), data, CONTENT_FORMAT_CBOR)

    # ------------------------------------------------------------------------------ websocket

    # The shared transport (edgerm.transport.websocket) accepts binary frames only, pings each
    # peer so a half-open TCP connection behind a NAT ends, logs a handler that breaks and
    # closes its connection; a peer leaving (ConnectionClosed) is normal and logged as nothing.

    async def _ws_state(self, ws: WsConnection) -> None:
        msg = await ws.receive()
        if self.role is not Role.LEADER:
            await ws.send(encode(self._not_leader("ws")))
            return
        code, data = self.core.cluster_state(msg, self.clock(), peer_address(ws.remote))
        await ws.send(data)

    async def _ws_agent(self, ws: WsConnection) -> None:
        send, receive = trio.open_memory_channel[bytes | _Close](256)
        agent_id = 0
        peer = peer_address(ws.remote)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._ws_writer, ws, receive)
            try:
                while True:
                    msg = await ws.receive()
                    if self.role is not Role.LEADER:
                        await send.send(self._ws_agent_refusal(msg))
                        await send.send(_Close(1000, "not the leader"))
                        break
                    result = self.core.agent_call(msg, self.clock(), "websocket", peer)
                    data = await self._agent_result(result)
                    if not agent_id and not result.agent_id:
                        # No agent has proven itself on this connection and this call did
                        # not either (garbage, a bad signature, a refused registration):
                        # answer, then close, so an unauthenticated peer cannot stay.
                        await send.send(data)
                        await send.send(_Close(CLOSE_POLICY, "the first call must be a valid "
                                               "signed AgentCall"))
                        break
                    await send.send(data)
                    if result.error == E.UNAUTHENTICATED:
                        break
                    if result.error == 0 and result.agent_id and not agent_id:
                        agent_id = result.agent_id
                        self._set_agent_channel(agent_id, send)
            finally:
                if agent_id and self.role is Role.LEADER:
                    self._drop_agent_channel(agent_id, send)
                send.close()

    def _ws_agent_refusal(self, msg: bytes) -> bytes:
        seq = 0
        try:
            seq = decode(pb.AgentCall, msg).seq
        except DecodeError:
            pass
        return encode(pb.AgentReply(seq=seq, error=self._not_leader("ws")))

    async def _ws_writer(self, ws: WsConnection,
                         receive: trio.MemoryReceiveChannel[bytes | _Close]) -> None:
        async with receive:
            async for data in receive:
                if isinstance(data, _Close):
                    await ws.aclose(data.code, data.reason or None)
                    return
                await ws.send(data)
            # The sender closed: flush done; close the connection (the reader notices).
            await ws.aclose()

    async def _ws_framework(self, ws: WsConnection) -> None:
        conn = next(self._conn_ids)
        peer = peer_address(ws.remote)
        send, receive = trio.open_memory_channel[bytes | _Close](_FRAMEWORK_QUEUE)
        self._fw_queues[conn] = send
        served = False   # the core knows this connection (it was served as the leader)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._ws_writer_then_cancel, ws, receive, nursery.cancel_scope)
                nursery.start_soon(self._ws_pinger, conn)
                while True:
                    msg = await ws.receive()
                    if self.role is not Role.LEADER:
                        self._refuse_framework(conn, msg)
                        continue   # the writer closes the connection after the refusal
                    served = True
                    self.core.framework_call(conn, msg, self.clock(), peer)
                    self._after_core()
        finally:
            self._fw_queues.pop(conn, None)
            send.close()
            if served and self.role is Role.LEADER:
                self.core.framework_disconnected(conn, self.clock())
                self._after_core()

    def _refuse_framework(self, conn: int, msg: bytes) -> None:
        call_id = 0
        try:
            call_id = decode(pb.FrameworkCall, msg).call_id
        except DecodeError:
            pass
        q = self._fw_queues.get(conn)
        if q is None:
            return
        try:
            q.send_nowait(encode(pb.FrameworkEvent(call_id=call_id,
                                                   error=self._not_leader("ws"))))
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            pass
        self._close_fw(conn, _Close(1000, "not the leader"))

    async def _ws_writer_then_cancel(self, ws: WsConnection,
                                     receive: trio.MemoryReceiveChannel[bytes | _Close],
                                     scope: trio.CancelScope) -> None:
        try:
            await self._ws_writer(ws, receive)
        except ConnectionClosed:
            pass
        scope.cancel()

    async def _ws_pinger(self, conn: int) -> None:
        ping = encode(pb.FrameworkEvent(ping=pb.Ping()))
        while True:
            await trio.sleep(self.config.framework_heartbeat_s)
            q = self._fw_queues.get(conn)
            if q is None:
                return
            try:
                q.send_nowait(ping)
            except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
                return


def peer_address(remote: Any) -> str:
    """"host:port" of a CoAP address tuple or a trio-websocket Endpoint, for log lines."""
    if isinstance(remote, tuple) and len(remote) >= 2:
        host, port = str(remote[0]), remote[1]
    elif remote is not None and hasattr(remote, "address"):
        host, port = str(remote.address), remote.port
    else:
        return ""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def functools_partial(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[..., Any]:
    """`functools.partial` that keeps `task_status` passable by `nursery.start`."""

    async def run(task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> Any:
        return await fn(*args, task_status=task_status, **kwargs)

    return run
