"""The master's push channels: how the core's outbox reaches agents and frameworks.

`PushChannels` (held by `MasterService` as `push`) keeps
- each framework connection's bounded send queue (`fw_queues`, by connection id): a writer
  task (`ws_writer`) drains it into the WebSocket; a consumer that does not read overflows it
  and is closed (it can re-subscribe and reconcile);
- each agent's push channel (`agents`, by agent id): its CoAP Observe on `c` (notified in a
  task of the service's nursery) or its WebSocket send queue; the core is told when an agent
  gains or loses one (`Master.agent_channel`).

`dispatch` sends one outbox item; it never blocks (a full or closed queue drops or closes, as
each case says). `drop_all` ends every channel when the master becomes a standby. The service
(service.py) decides what to send and when (only after the records before it are durable).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

import trio
from trio_websocket import ConnectionClosed

from edgerm.transport.coap import Observation, ObservationGone
from edgerm.transport.websocket import CLOSE_POLICY, WsConnection
from edgerm.wire import encode, pb
from edgerm_master.core import CloseFramework, Master, ToAgent, ToFramework
from edgerm_master.refusals import framework_error

__all__ = ["Close", "CLOSE", "PushChannels", "ws_writer", "ws_writer_then_cancel"]

# The service's logger: these lines were the service's before this module was split out.
log = logging.getLogger("edgerm.master.service")

_QUEUE_GONE = (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError)


@dataclass(frozen=True, slots=True)
class Close:
    """In a connection's send queue: close it (after what was queued before) like this."""
    code: int = 1000
    reason: str = ""


CLOSE = Close()
NOT_LEADER_CLOSE = Close(1000, "not the leader")
AgentChannel = Observation | trio.MemorySendChannel[bytes]


async def ws_writer(ws: WsConnection, receive: trio.MemoryReceiveChannel[bytes | Close]
                    ) -> None:
    """Send what is queued to `ws`; close it on a `Close` or when the sender closes."""
    async with receive:
        while True:
            # What is already queued is taken without `receive()`'s extra trip through the
            # scheduler (a burst of events after a commit is common); `ws.send` still yields.
            try:
                data = receive.receive_nowait()
            except trio.WouldBlock:
                try:
                    data = await receive.receive()
                except trio.EndOfChannel:
                    break
            except trio.EndOfChannel:
                break
            if isinstance(data, Close):
                await ws.aclose(data.code, data.reason or None)
                return
            await ws.send(data)
        # The sender closed: flush done; close the connection (the reader notices).
        await ws.aclose()


async def ws_writer_then_cancel(ws: WsConnection,
                                receive: trio.MemoryReceiveChannel[bytes | Close],
                                scope: trio.CancelScope) -> None:
    """`ws_writer`, then cancel `scope` (the connection's reader) however it ended."""
    try:
        await ws_writer(ws, receive)
    except ConnectionClosed:
        pass
    scope.cancel()


class PushChannels:
    """The open push channels of one master; `nursery` must be set before `dispatch`."""

    def __init__(self, core: Master, after_core: Callable[[], None]) -> None:
        """`after_core`: called after the core was told of a new agent channel (the service
        wakes its flusher and timer)."""
        self.core = core
        self._after_core = after_core
        self.nursery: trio.Nursery | None = None
        self.fw_queues: dict[int, trio.MemorySendChannel[bytes | Close]] = {}
        self.agents: dict[int, AgentChannel] = {}
        # The Partial IV of each agent's Observe registration (its notifications are
        # protected with it and the master's own sequence number: oscore_calls.protect_push).
        self.observe_piv: dict[int, int] = {}

    def dispatch(self, item: ToFramework | ToAgent | CloseFramework) -> None:
        if isinstance(item, ToFramework):
            q = self.fw_queues.get(item.conn)
            if q is None:
                return
            try:
                q.send_nowait(encode(item.event))
            except trio.WouldBlock:
                log.warning("framework connection %d does not read; closing it", item.conn)
                self.close_fw(item.conn, Close(1008, "events not read"))
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                pass
        elif isinstance(item, CloseFramework):
            self.close_fw(item.conn, Close(CLOSE_POLICY if item.refused else 1000,
                                           item.reason))
        else:
            channel = self.agents.get(item.agent_id)
            if channel is None:
                return
            assert self.nursery is not None
            if isinstance(channel, Observation):
                self.nursery.start_soon(self._notify, item.agent_id, channel, item.data)
            else:
                with contextlib.suppress(*_QUEUE_GONE):
                    channel.send_nowait(item.data)

    def close_fw(self, conn: int, how: Close = CLOSE) -> None:
        """Close framework connection `conn` after what is queued for it (if it is open)."""
        q = self.fw_queues.pop(conn, None)
        if q is not None:
            with contextlib.suppress(*_QUEUE_GONE):
                q.send_nowait(how)
            q.close()

    def refuse_framework(self, conn: int, msg: bytes, error: pb.Error,
                         close: bool = False) -> None:
        """Queue `error` as the answer to `msg`; then close the connection if `close`."""
        q = self.fw_queues.get(conn)
        if q is None:
            return
        with contextlib.suppress(*_QUEUE_GONE):
            q.send_nowait(framework_error(msg, error))
        if close:
            self.close_fw(conn, NOT_LEADER_CLOSE)

    async def _notify(self, agent_id: int, obs: Observation, data: bytes) -> None:
        try:
            piv = self.observe_piv.get(agent_id)
            protected = (self.core.oscore_protect_push(agent_id, piv, data)
                         if piv is not None else None)
            if protected is None:
                # No protected registration to answer (cannot happen on the agent link):
                # nothing goes out in clear.
                self.drop_agent(agent_id, obs)
                return
            options, ciphertext = protected
            await obs.notify(ciphertext, options=options)
        except ObservationGone:
            self.drop_agent(agent_id, obs)
        except Exception:
            log.exception("notifying agent %d failed", agent_id)
            self.drop_agent(agent_id, obs)

    async def watch_observation(self, agent_id: int, obs: Observation) -> None:
        """Drop `obs` as `agent_id`'s channel once the agent cancels it or it times out."""
        await obs.wait_gone()
        self.drop_agent(agent_id, obs)

    def drop_agent(self, agent_id: int, channel: object) -> None:
        """Forget `channel` if it is still `agent_id`'s (a newer one stays)."""
        if self.agents.get(agent_id) is channel:
            del self.agents[agent_id]
            self.observe_piv.pop(agent_id, None)
            self.core.agent_channel(agent_id, False)

    def set_agent(self, agent_id: int, channel: AgentChannel, piv: int | None = None
                  ) -> None:
        """Make `channel` `agent_id`'s push channel (cancelling an older Observe); `piv`: the
        Partial IV of the OSCORE-protected Observe registration `channel` is."""
        old = self.agents.get(agent_id)
        if old is channel:
            return
        if isinstance(old, Observation):
            old.cancel()
        self.agents[agent_id] = channel
        if piv is not None:
            self.observe_piv[agent_id] = piv
        else:
            self.observe_piv.pop(agent_id, None)
        self.core.agent_channel(agent_id, True)
        self._after_core()

    async def ping_framework(self, conn: int, interval_s: float) -> None:
        """Queue a Ping for framework connection `conn` every `interval_s` until it is gone
        or does not read."""
        ping = encode(pb.FrameworkEvent(ping=pb.Ping()))
        while True:
            await trio.sleep(interval_s)
            q = self.fw_queues.get(conn)
            if q is None:
                return
            try:
                q.send_nowait(ping)
            except _QUEUE_GONE:
                return

    def drop_all(self, error: pb.Error) -> None:
        """End every channel, each WebSocket first getting `error` (a standby's NOT_LEADER);
        the core is not told (a standby leaves it alone)."""
        refusal = encode(pb.FrameworkEvent(error=error))
        for conn in list(self.fw_queues):
            with contextlib.suppress(*_QUEUE_GONE):
                self.fw_queues[conn].send_nowait(refusal)
            self.close_fw(conn, NOT_LEADER_CLOSE)
        agent_refusal = encode(pb.AgentReply(error=error))
        for channel in list(self.agents.values()):
            if isinstance(channel, Observation):
                channel.cancel()
            else:
                with contextlib.suppress(*_QUEUE_GONE):
                    channel.send_nowait(agent_refusal)
                channel.close()
        self.agents.clear()
        self.observe_piv.clear()
