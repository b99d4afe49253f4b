"""The Trio shell around the master core: CoAP and WebSocket in, the store and sockets out.

It does four things and decides nothing:
1. feeds every decoded-enough input to the core (`agent_call`, `framework_call`, ...);
2. a single *flusher* task takes the core's records and outbox together, commits the records in
   one store transaction (`await store.apply(...)`: SQLite in a worker thread, or etcd; see
   store_api.py), and only then sends the outbox (persist, then act); request handlers that
   answer directly (CoAP POST `a`, agent WebSocket frames) wait until every record emitted
   before their answer is durable;
3. one timer task sleeps until the core's `get_timer()` and calls `handle_timer`;
4. opens the push channels (kept by push.py's `PushChannels`, held as `push`): an agent's CoAP
   Observe on `c` or its WebSocket, and each framework's WebSocket (with a writer task and a
   bounded queue).

Role (several masters, docs/ha.md): a service is the LEADER unless `set_role(Role.STANDBY,
leader)` made it a standby. A standby answers every agent call (CoAP `a`, `c`, `m`, WebSocket
`/agent`), every framework call and the operator state with the error NOT_LEADER naming the
leader's URL for that transport (built by refusals.py, unsigned: a forged refusal can at most
make a client try its next master). It never calls the core, so nothing reaches the store's
write path: the timer and the flusher wait until the service leads again. While a commit is
retried (`store_down`), new work is refused with UNAVAILABLE (refusals.py too).

Resource handling: everything runs in the nursery of `MasterService.run`; the store is closed
when it exits. A framework connection whose queue overflows (a consumer that does not read) is
closed; it can re-subscribe and reconcile.

Error handling: bad input never reaches here as an exception (the core answers it); a failing
commit is logged (`log_store_error`) and escapes, which stops the master (it must not act on what
it could not persist). Malformed CoAP datagrams are logged rate-limited like refusals.

Operator side (service_ops.py, held as `ops`): the metrics (unless `config.metrics` is off; the
shell times agent calls, commits and allocation rounds into `ShellMetrics`, bound once here for
the hot paths), open WebSocket connection counts, `metrics_text()` for the HTTP server's
`/metrics`, and the HTTP app (/api/v1, /metrics, the dashboard).
"""

from __future__ import annotations

import functools
import gc
import itertools
import logging
import time
from collections.abc import Callable
from time import perf_counter
from typing import TYPE_CHECKING, Any

import trio

from edgerm.coap.blockwise import slice_block
from edgerm.coap.codes import Code
from edgerm.coap.options import BlockValue, decode_block
from edgerm.transport.coap import CoapServer, Request, Response, Site
from edgerm.transport.websocket import (
    CLOSE_POLICY,
    WebSocketConfig,
    WsConnection,
    serve_websocket,
)
from edgerm.wire import CONTENT_FORMAT_CBOR, encode, pb
from edgerm_master.config import MasterConfig, http_address
from edgerm_master.core import AgentResult, Master
from edgerm_master.gateways import gateway_batch, gateway_inline
from edgerm_master.http_api import Changes
from edgerm_master.http_server import serve_http
from edgerm_master.listen import ListenError, functools_partial, listen, peer_address
from edgerm_master.logs import log_store_error
from edgerm_master.members import MemberInfo, Role
from edgerm_master.metrics import ShellMetrics
from edgerm_master.modules import ModuleReader, parse_hex
from edgerm_master.oscore_calls import Inner
from edgerm_master.push import (
    NOT_LEADER_CLOSE,
    Close,
    PushChannels,
    ws_writer,
    ws_writer_then_cancel,
)
from edgerm_master.refusals import (
    agent_error,
    coap_agent_refusal,
    coap_refusal,
    not_leader,
    store_unavailable,
)
from edgerm_master.reload import Reloaded, apply, watch_sighup
from edgerm_master.service_ops import ServiceOps
from edgerm_master.service_oscore import inner_of, oscore_request
from edgerm_master.state import MasterState
from edgerm_master.store_api import MasterStore, NotLeader, StoreUnavailable, open_store
from edgerm_master.tls import server_context

if TYPE_CHECKING:
    from edgerm_master.roles import RoleLoop

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
# A steady protected heartbeat's AgentCall: {5: {}} (no agent_id, seq or mac: OSCORE's).
_STEADY_HEARTBEAT = b"\xa1\x05\xa0"
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


class MasterService:
    """Run with `await nursery.start(service.run)`; `started` gives ((coap host, port),
    (ws host, port)); `http_address` is then the HTTP server's (host, port), or None."""

    def __init__(self, config: MasterConfig, clock: Callable[[], float] = time.time,
                 store: MasterStore | None = None, roles: RoleLoop | None = None,
                 reload: Callable[[], MasterConfig] | None = None) -> None:
        """`store`: the store to use (an EtcdStore the caller fences); by default `run` opens
        the one `config` names (store_api.open_store) and closes it when it ends. `roles`: the
        role loop of a master among several (edgerm_master.roles); without it, it leads.
        `reload`: reads the config again; given, each SIGHUP reloads the tokens (reload.py)."""
        self.config = config
        self._reload = reload
        self.roles = roles
        self.clock = clock
        self.core = Master(config)
        self.store: MasterStore | None = store
        self.modules: ModuleReader | None = None
        self._kick = trio.Event()
        self._durable_event = trio.Event()
        self._durable = 0
        self._timer_scope: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None
        self._conn_ids = itertools.count(1)
        self.push = PushChannels(self.core, self._after_core)
        self.coap_server: CoapServer | None = None
        self.commits = 0
        # Bumped after each batch of state changes the flusher handles (http_api's streams).
        self.changes = Changes()
        self.http_address: tuple[str, int] | None = None
        # ((coap host, port), (ws host, port)) once bound (http_masters: this master's URLs).
        self.addresses: tuple[tuple[str, int], tuple[str, int]] | None = None
        self._gc_frozen_at = 0  # agents there were when the collector last froze the heap
        self.role = Role.LEADER
        self.leader: MemberInfo | None = None
        # Why the store cannot be written now (None: it can); set while a commit is retried.
        self.store_down: str | None = None
        self._leading = trio.Event()   # set while LEADER; the timer and flusher wait on it
        self._leading.set()
        self.ops = ServiceOps(self)
        # None when metrics are off: every hot-path hook is one `is not None` test then.
        self.metrics: ShellMetrics | None = self.ops.metrics
        # Bound once: the inline heartbeat path calls it for every steady heartbeat.
        self._observe_coap_call = (self.metrics.call_latency["coap"].observe
                                   if self.metrics is not None else None)

    def metrics_text(self) -> bytes | None:
        """The Prometheus text exposition now; None when metrics are off (ServiceOps)."""
        return self.ops.metrics_text()

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
            self.push.drop_all(not_leader(leader, "ws"))

    def _coap_refusal(self, request: Request) -> Response:
        return coap_agent_refusal(request.payload, not_leader(self.leader, "coap"))

    def _coap_unavailable(self, request: Request) -> Response:
        return coap_agent_refusal(request.payload, store_unavailable(self.store_down))

    # ------------------------------------------------------------------------------ running

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Serve until cancelled: as the leader (one master), or first as a standby whose role
        loop (`roles`: edgerm_master.roles) calls `lead()` on winning and raises `Deposed`."""
        cfg = self.config
        store = self.store if self.store is not None else await open_store(cfg)
        self.store = store
        self.modules = ModuleReader(store.read_module)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = self.push.nursery = nursery
                if self.roles is None:
                    await self.lead()
                else:
                    # Bound but not leading: refuse everything until the election is won.
                    self.set_role(Role.STANDBY, None)
                addrs = self.addresses = await self._serve(nursery)
                if self._reload is not None:
                    nursery.start_soon(watch_sighup, self, self._reload)
                task_status.started(addrs)
                if self.roles is not None:
                    await self.roles.run(self, addrs)
        finally:
            with trio.CancelScope(shield=True):
                await store.aclose()

    async def lead(self) -> None:
        """Become the acting master: rebuild the core from the store, commit what recovery
        emits (pruning) before anything is served, start the flusher and the timer."""
        assert self.store is not None and self._nursery is not None
        store = self.store
        snap = await store.recover()
        self.core.recover(snap, self.clock())
        await store.apply(self.core.take_records())
        self._durable = self.core.records_emitted
        self.core.take_outbox()
        self._nursery.start_soon(self._flusher)
        self._nursery.start_soon(self._timer_loop)

    async def _serve(self, nursery: trio.Nursery) -> tuple[tuple[str, int], tuple[str, int]]:
        """Bind CoAP, WebSocket and HTTP in `nursery`; ((coap host, port), (ws host, port))
        (`http_address` is then the HTTP server's, or None)."""
        cfg = self.config
        site = Site()
        site.add("a", self._coap_agent, methods=(Code.POST,), rt="edgerm.agent",
                 inline=self._coap_agent_inline)
        site.add("c", self._coap_commands, methods=(Code.FETCH,), observable=True,
                 rt="edgerm.commands")
        site.add("m", self._coap_module, methods=(Code.GET,), prefix=True,
                 rt="edgerm.module")
        site.add("g", self._coap_gateway, methods=(Code.POST,), rt="edgerm.gateway",
                 inline=self._coap_gateway_inline)
        # Every request with an OSCORE option is unprotected first and routed by its inner
        # Uri-Path (service_oscore.py); only a first registration comes in plain on `a`.
        site.oscore = functools.partial(oscore_request, self)
        self.coap_server = CoapServer(site)
        server = self.coap_server
        server.endpoint.on_malformed = self.ops.malformed_datagram
        coap_addr = await listen(
            "CoAP", "--coap-port", cfg.host, cfg.coap_port,
            lambda: nursery.start(server.serve, cfg.host, cfg.coap_port))
        counted = self.ops.counted
        # [tls] cert/key (checked at start by config.parse_args): wss:// and https://.
        tls = server_context(cfg.tls_cert, cfg.tls_key) if cfg.tls_cert else None
        ws_addr = await listen("WebSocket", "--ws-port", cfg.host, cfg.ws_port,
                               lambda: nursery.start(functools_partial(
            serve_websocket,
            {"/agent": counted("/agent", self._ws_agent),
             "/framework": counted("/framework", self._ws_framework),
             "/state": counted("/state", self._ws_state)},
            cfg.host, cfg.ws_port,
            config=WebSocketConfig(
                max_message_size=cfg.framework_message_max,
                first_message_timeout=cfg.ws_first_message_s,
                max_connections=cfg.ws_max_connections or None,
                max_connections_per_source=cfg.ws_max_connections_per_source or None),
            # An agent that reconnected calls when its next heartbeat is due.
            first_message_timeouts={"/agent": cfg.ws_first_message_s + cfg.heartbeat_s
                                    * (1.0 + cfg.jitter_fraction)},
            ssl_context=tls)))
        http = http_address(cfg)
        if http is not None:
            app = self.ops.http_app()
            self.http_address = await listen(
                "HTTP", "--http-listen HOST:PORT", http[0], http[1],
                lambda: nursery.start(functools_partial(
                    serve_http, app, *http, certfile=cfg.tls_cert, keyfile=cfg.tls_key)))
        return (coap_addr[0], coap_addr[1]), (cfg.host, ws_addr[1])

    @property
    def state(self) -> MasterState:
        return self.core.state

    def reload_config(self, new: MasterConfig) -> Reloaded:
        """Take `new`'s tokens (reload.apply); what it closes goes out with the next flush."""
        done = apply(self.core.state, new, self.clock())
        self._after_core()
        return done

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
        dispatch = self.push.dispatch
        while True:
            await self._kick.wait()
            await self._leading.wait()
            self._kick = trio.Event()
            target = core.records_emitted
            records = core.take_records()
            outbox = core.take_outbox()
            if records:
                started = perf_counter()
                try:
                    await self._commit(store, records)
                except NotLeader:
                    raise   # not a store error: a deposed master stops (edgerm_master.roles)
                except Exception as e:
                    n = len(records)
                    log_store_error(f"committing {n} record{'s' if n != 1 else ''}", e)
                    raise
                if self.metrics is not None:
                    self.metrics.commit_latency.observe(perf_counter() - started)
                self.commits += 1
                for r in records:
                    if type(r).__name__ == "RemoveModule" and self.modules is not None:
                        self.modules.forget(r.sha256)  # type: ignore[attr-defined]
            self._durable = target
            event, self._durable_event = self._durable_event, trio.Event()
            event.set()
            for item in outbox:
                dispatch(item)
            if records or outbox:
                self.changes.bump()
            if len(core.agents) >= self._gc_frozen_at + _GC_FREEZE_AGENTS:
                self._gc_frozen_at = len(core.agents)
                gc.collect(1)
                gc.freeze()

    async def _commit(self, store: MasterStore, records: list[Any]) -> None:
        """`store.apply(records)`, retried while the store cannot be reached (no etcd quorum):
        meanwhile new work is refused with UNAVAILABLE (`store_down`) and nothing of this
        batch is acted on. `NotLeader` escapes: a deposed master stops (edgerm_master.roles)."""
        delay = 0.1
        while True:
            try:
                await store.apply(records)
            except StoreUnavailable as e:
                if self.store_down is None:
                    log.error("%s", e, extra={"event": "store_unavailable"})
                self.store_down = str(e)
                await trio.sleep(delay)
                delay = min(1.0, delay * 2)
                continue
            if self.store_down is not None:
                log.warning("the store answers again; accepting work",
                            extra={"event": "store_available"})
                self.store_down = None
            return

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
                now = self.clock()
                core.run_timers(now)
                started = perf_counter()
                if core.allocate_if_due(now) and self.metrics is not None:
                    self.metrics.allocation.observe(perf_counter() - started)
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
                data = await self.modules.read(read.sha256)
            except (OSError, StoreUnavailable):
                return encode(pb.AgentReply(seq=read.seq, error=pb.Error(
                    code=E.UNAVAILABLE, message="module file unreadable; try again")))
            return self.core.module_chunk(result.agent_id, read,
                                          data[read.offset:read.offset + read.length])
        return result.data

    def _check_format(self, request: Request) -> Response | None:
        """4.15 for a call whose (inner, if protected) Content-Format is neither absent (the
        protected form: the resource implies a CBOR AgentCall) nor 60; it changes nothing
        (the core never sees it), and a protected one is answered protected."""
        if request.content_format not in (None, CONTENT_FORMAT_CBOR):
            return Response(Code.UNSUPPORTED_CONTENT_FORMAT, encode(pb.AgentReply(
                error=pb.Error(code=E.UNSUPPORTED, message="Content-Format must be 60 (CBOR) "
                               "or absent"))), CONTENT_FORMAT_CBOR)
        return None

    def _coap_agent_inline(self, request: Request) -> Response | None:
        """A steady protected heartbeat without a command ack (OSCORE already verified by
        `oscore_request`), when every record is durable, answered in the CoAP receive loop:
        nothing to wait for, so no worker (half the master's time per heartbeat was the queue,
        the task switch and the scheduler). Anything else, or a heartbeat whose call did emit
        records (the general path: a master restart asks the agent to re-register), goes to
        `_coap_agent`: the latter with its result in `request.context`, so it is not applied
        twice."""
        if self.role is not Role.LEADER:
            return self._coap_refusal(request)
        inner = request.context
        if (request.protect is None or not isinstance(inner, Inner)
                or inner.payload != _STEADY_HEARTBEAT
                or inner.content_format not in (None, CONTENT_FORMAT_CBOR)):
            return None  # a first registration (plain), or not a steady heartbeat
        core = self.core
        if self._durable < core.records_emitted:
            return None  # the answer must wait for records of other calls
        observe = self._observe_coap_call
        started = perf_counter() if observe is not None else 0.0
        result = core.agent_call_protected(inner, self.clock(), "coap",
                                           peer_address(request.remote))
        if core.records_emitted > self._durable or result.module is not None:
            request.context = (inner, result, started)
            return None
        self._after_core()
        if not result.agent_id:
            request.protect = None   # a stale seq racing its original: a plain 4.01
        response = self._agent_response(result, result.data)
        if observe is not None:
            observe(perf_counter() - started)
        return response

    @staticmethod
    def _agent_response(result: AgentResult, data: bytes) -> Response:
        # An authenticated call may have changed state (its seq at least) even if it failed:
        # its answer is kept for retransmissions; an unauthenticated error keeps no CoAP state.
        return Response(ERROR_TO_COAP.get(result.error, Code.BAD_REQUEST), data,
                        CONTENT_FORMAT_CBOR, remember=True if result.agent_id else None)

    async def _coap_agent(self, request: Request) -> Response:
        if isinstance(request.context, tuple):  # already applied by _coap_agent_inline
            _, result, started = request.context
        else:
            if self.role is not Role.LEADER:
                return self._coap_refusal(request)
            bad = self._check_format(request)
            if bad is not None:
                return bad
            if self.store_down is not None:
                return self._coap_unavailable(request)
            started = perf_counter()
            result = self._call(request)
        response = self._agent_response(result, await self._agent_result(result))
        if request.protect is not None and not result.agent_id:
            request.protect = None   # refused unauthenticated by the core: a plain 4.01
        if self.metrics is not None:
            self.metrics.call_latency["coap"].observe(perf_counter() - started)
        return response

    async def _coap_commands(self, request: Request) -> Response:
        if self.role is not Role.LEADER:
            return self._coap_refusal(request)
        if self.store_down is not None:
            return self._coap_unavailable(request)
        bad = self._check_format(request)
        if bad is not None:
            return bad
        started = perf_counter()
        result = self._call(request)
        data = await self._agent_result(result)
        if self.metrics is not None:
            self.metrics.call_latency["coap"].observe(perf_counter() - started)
        if request.protect is not None and not result.agent_id:
            request.protect = None   # refused unauthenticated by the core: a plain 4.01
        observe = False
        inner = inner_of(request)
        if (result.error == 0 and result.agent_id and request.observation is not None
                and inner is not None and inner.fresh):
            # (Only a protected registration: notifications are protected with its kid and
            # Partial IV, and the master's own sequence numbers. And only a fresh one: before
            # the agent re-registered after a master restart, its Partial IV could not be
            # checked, so a recorded FETCH replayed then must not become its push channel.)
            obs = request.observation
            self.push.set_agent(result.agent_id, obs, inner.seq)
            observe = True
            assert self._nursery is not None
            self._nursery.start_soon(self.push.watch_observation, result.agent_id, obs)
        code = Code.CONTENT if result.error == 0 else ERROR_TO_COAP.get(result.error,
                                                                         Code.BAD_REQUEST)
        return Response(code, data, CONTENT_FORMAT_CBOR, observe=observe,
                        remember=True if result.agent_id else None)

    def _coap_gateway_inline(self, request: Request) -> Response | None:
        return gateway_inline(self, request)

    async def _coap_gateway(self, request: Request) -> Response:
        return await gateway_batch(self, request)

    def _call(self, request: Request) -> AgentResult:
        """The core's answer to the AgentCall of `request` (protected or plain)."""
        inner = inner_of(request)
        if inner is not None:
            return self.core.agent_call_protected(inner, self.clock(), "coap",
                                                  peer_address(request.remote))
        return self.core.agent_call(request.payload, self.clock(), "coap",
                                    peer_address(request.remote), mac_calls=False)

    async def _coap_module(self, request: Request) -> Response:
        if self.role is not Role.LEADER:
            return coap_refusal(not_leader(self.leader, "coap"))
        inner = inner_of(request)
        if inner is not None:
            return await self._coap_module_protected(request, inner)
        data = await self._module_bytes(request.path)
        if isinstance(data, Response):
            return data
        return Response(Code.CONTENT, data, _OCTET_STREAM)

    async def _module_bytes(self, path: list[str] | tuple[str, ...]) -> bytes | Response:
        """The bytes of the module `m/<sha256 hex>` names, or the refusal to answer."""
        if len(path) != 2:
            return Response(Code.NOT_FOUND, b"use m/<sha256 hex>")
        sha = parse_hex(path[1])
        if sha is None or self.core.module_size(sha) is None or self.modules is None:
            return Response(Code.NOT_FOUND, b"no such module")
        data = self.modules.cached(sha)
        if data is None:
            try:
                data = await self.modules.read(sha)
            except (OSError, StoreUnavailable):
                return Response(Code.SERVICE_UNAVAILABLE, b"module file unreadable")
        return data

    async def _coap_module_protected(self, request: Request, inner: Inner) -> Response:
        """A module GET inside OSCORE: the block its inner Block2 asks for (512 bytes when it
        asks none), with an inner Block2. (Ask 512 or less: a protected 1,024-byte block with
        its options and tag passes the CoAP block size, and goes out block-wise outside.)"""
        self.core.oscore_accept_seq(inner)
        data = await self._module_bytes(request.path)
        if isinstance(data, Response):
            return data
        value = inner.option(23)
        # (No Block2 asked: 512-byte blocks, so that a protected block fits one datagram.)
        block = decode_block(value) if value is not None else BlockValue(0, False, 5)
        piece = slice_block(data, block.num, block.szx) if block is not None else None
        if block is None or piece is None:
            return Response(Code.BAD_OPTION, b"Block2 past the end of the module")
        chunk, more = piece
        return Response(Code.CONTENT, chunk, _OCTET_STREAM,
                        options=[(23, BlockValue(block.num, more, block.szx).encode())])

    # ------------------------------------------------------------------------------ websocket

    # The shared transport (edgerm.transport.websocket) accepts binary frames only, pings each
    # peer so a half-open TCP connection behind a NAT ends, logs a handler that breaks and
    # closes its connection; a peer leaving (ConnectionClosed) is normal and logged as nothing.

    async def _ws_state(self, ws: WsConnection) -> None:
        msg = await ws.receive()
        if self.role is not Role.LEADER:
            await ws.send(encode(not_leader(self.leader, "ws")))
            return
        code, data = self.core.cluster_state(msg, self.clock(), peer_address(ws.remote))
        await ws.send(data)

    async def _ws_agent(self, ws: WsConnection) -> None:
        send, receive = trio.open_memory_channel[bytes | Close](256)
        agent_id = 0
        peer = peer_address(ws.remote)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ws_writer, ws, receive)
            try:
                while True:
                    msg = await ws.receive()
                    if self.role is not Role.LEADER:
                        await send.send(agent_error(msg, not_leader(self.leader, "ws")))
                        await send.send(NOT_LEADER_CLOSE)
                        break
                    if self.store_down is not None:
                        await send.send(agent_error(msg, store_unavailable(self.store_down)))
                        continue
                    started = perf_counter()
                    result = self.core.agent_call(msg, self.clock(), "websocket", peer)
                    data = await self._agent_result(result)
                    if self.metrics is not None:
                        self.metrics.call_latency["websocket"].observe(perf_counter() - started)
                    if not agent_id and not result.agent_id:
                        # No agent has proven itself on this connection and this call did
                        # not either (garbage, a bad signature, a refused registration):
                        # answer, then close, so an unauthenticated peer cannot stay.
                        await send.send(data)
                        await send.send(Close(CLOSE_POLICY, "the first call must be a valid "
                                               "signed AgentCall"))
                        break
                    await send.send(data)
                    if result.error == E.UNAUTHENTICATED:
                        break
                    if result.error == 0 and result.agent_id and not agent_id:
                        agent_id = result.agent_id
                        self.push.set_agent(agent_id, send)
            finally:
                if agent_id and self.role is Role.LEADER:
                    self.push.drop_agent(agent_id, send)
                send.close()

    async def _ws_framework(self, ws: WsConnection) -> None:
        conn = next(self._conn_ids)
        peer = peer_address(ws.remote)
        send, receive = trio.open_memory_channel[bytes | Close](_FRAMEWORK_QUEUE)
        push = self.push
        push.fw_queues[conn] = send
        served = False   # the core knows this connection (it was served as the leader)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ws_writer_then_cancel, ws, receive, nursery.cancel_scope)
                nursery.start_soon(push.ping_framework, conn, self.config.framework_heartbeat_s)
                while True:
                    msg = await ws.receive()
                    if self.role is not Role.LEADER:
                        # The writer closes the connection after the refusal.
                        push.refuse_framework(conn, msg, not_leader(self.leader, "ws"), True)
                        continue
                    if self.store_down is not None:
                        # The connection stays: the call changed nothing (send it again later).
                        push.refuse_framework(conn, msg, store_unavailable(self.store_down))
                        continue
                    served = True
                    self.core.framework_call(conn, msg, self.clock(), peer)
                    self._after_core()
        finally:
            push.fw_queues.pop(conn, None)
            send.close()
            if served and self.role is Role.LEADER:
                self.core.framework_disconnected(conn, self.clock())
                self._after_core()
