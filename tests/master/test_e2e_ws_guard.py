"""End to end against `python -m edgerm_master`: what an unauthenticated or hostile WebSocket
peer can hold (issue 10 items 7 and 8).

* A connection must send its first message within `ws_first_message_s` (1008 otherwise), and one
  whose first message is refused gets its answer and is closed (1008).
* At most `ws_max_connections_per_source` connections from one address and
  `ws_max_connections` in all: the next one is closed at once with 1013 and the limit as reason.
  Sources other than 127.0.0.1 are reached by binding the client to 127.0.0.2/3 (loopback).
* A framework id is taken over only with the secret the master gave its creator: another token
  (or the same one without the secret) is refused, the owner's connection and tasks untouched.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import trio
import trio_websocket
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from edgerm.transport.coap import open_coap_client
from edgerm.wire import decode, encode, pb
from edgerm_master.testing import ScriptedAgent, ScriptedFramework, task_info
from edgerm_master.testing_io import CoapAgentClient, MasterProcess, WsFrameworkClient

TS = pb.TaskState


def start_master(tmp_path: Any, *flags: str) -> MasterProcess:
    return MasterProcess(str(tmp_path / "data"), heartbeat_ms=1000,
                         extra=["--allocation-interval-s", "0.2", *flags]).start()


@pytest.fixture
def quick_deadline(tmp_path: Any) -> Iterator[MasterProcess]:
    m = start_master(tmp_path, "--ws-first-message-s", "0.5")
    yield m
    m.stop()


def url(m: MasterProcess, path: str) -> str:
    return f"ws://{m.ws[0]}:{m.ws[1]}{path}"


@asynccontextmanager
async def connect_from(m: MasterProcess, source: str, path: str = "/framework"
                       ) -> AsyncIterator[WebSocketConnection]:
    """A WebSocket to the master whose TCP connection comes from `source` (a loopback IP)."""
    stream = await trio.open_tcp_stream(m.ws[0], m.ws[1], local_address=source)
    async with trio.open_nursery() as nursery:
        ws = await trio_websocket.wrap_client_stream(nursery, stream, m.ws[0], path)
        try:
            yield ws
        finally:
            await ws.aclose()


@dataclass
class Closed:
    code: int
    reason: str | None
    messages: list[bytes]     # what came before the close


async def closed_with(ws: WebSocketConnection, timeout: float = 10.0) -> Closed:
    """Read until the master closes the connection."""
    messages: list[bytes] = []
    with trio.fail_after(timeout):
        try:
            while True:
                msg = await ws.get_message()
                messages.append(msg if isinstance(msg, bytes) else msg.encode())
        except ConnectionClosed as e:
            assert e.reason is not None
            return Closed(e.reason.code, e.reason.reason, messages)


async def subscribed(ws: WebSocketConnection, fw: ScriptedFramework | None = None
                     ) -> WsFrameworkClient:
    client = WsFrameworkClient(ws, fw or ScriptedFramework())
    await client.send(client.fw.subscribe())
    await client.until_kind("subscribed")
    return client


async def launch_one(agent: CoapAgentClient, owner: WsFrameworkClient, task_id: str) -> None:
    """`owner` takes its first offer for task `task_id` and sees it RUNNING (acknowledged)."""
    [offer, *_] = await owner.offers()
    await owner.send(owner.fw.accept([offer.offer_id], [task_info(task_id)]))
    await owner.until_kind("accepted")
    await agent.settle()
    for want in (TS.STARTING, TS.RUNNING):
        update = await owner.until_kind("update")
        assert update.state == want
        await owner.send(owner.fw.acknowledge(update))


# --- item 7: idle and hostile connections


async def test_a_silent_connection_is_closed_after_the_deadline(
        quick_deadline: MasterProcess) -> None:
    m = quick_deadline
    for path in ("/framework", "/state", "/agent"):
        start = trio.current_time()   # before connecting: the master's clock starts later
        async with open_websocket_url(url(m, path)) as ws:
            # /agent waits one heartbeat (1 s, 10 % jitter) longer: an agent calls when due.
            closed = await closed_with(ws, timeout=10.0)
            waited = trio.current_time() - start
            assert closed.code == 1008, path
            assert closed.reason == "no message within " + (
                "1.6 s" if path == "/agent" else "0.5 s") + " of connecting", path
            assert waited >= (1.6 if path == "/agent" else 0.5), (path, waited)
    # A framework that subscribes at once stays connected past the deadline.
    async with open_websocket_url(url(m, "/framework")) as ws:
        fc = await subscribed(ws)
        await trio.sleep(1.0)
        await fc.send(fc.fw.kill("no-such-task"))
        assert (await fc.until_kind("error")).code == pb.NOT_FOUND   # answered: still open


async def test_a_refused_first_frame_is_answered_then_closed(
        quick_deadline: MasterProcess) -> None:
    m = quick_deadline
    async with open_websocket_url(url(m, "/framework")) as ws:
        await ws.send_message(b"\xff\x00garbage")
        closed = await closed_with(ws)
        [answer] = closed.messages
        assert decode(pb.FrameworkEvent, answer).error.code == pb.BAD_REQUEST
        assert (closed.code, closed.reason) == (1008, "the first call must be a valid Subscribe")
    async with open_websocket_url(url(m, "/framework")) as ws:   # a call before Subscribe
        await ws.send_message(encode(pb.FrameworkCall(framework_id="fw-1", call_id=3,
                                                      kill=pb.KillTask(task_id="t"))))
        closed = await closed_with(ws)
        [answer] = closed.messages
        assert decode(pb.FrameworkEvent, answer).error.code == pb.UNAUTHENTICATED
        assert closed.code == 1008
    async with open_websocket_url(url(m, "/agent")) as ws:
        await ws.send_message(b"\xff\x00garbage")
        closed = await closed_with(ws)
        [answer] = closed.messages
        assert decode(pb.AgentReply, answer).error.code == pb.BAD_REQUEST
        assert (closed.code, closed.reason) == (1008, "the first call must be a valid signed "
                                                      "AgentCall")
    # After authenticating, a bad frame is answered and the connection stays.
    async with open_websocket_url(url(m, "/framework")) as ws:
        fc = await subscribed(ws)
        await fc.send(b"\xff\x00garbage")
        assert (await fc.until_kind("error")).code == pb.BAD_REQUEST
        await fc.send(fc.fw.kill("no-such-task"))
        assert (await fc.until_kind("error")).code == pb.NOT_FOUND


async def test_connection_caps_per_source_and_in_total(tmp_path: Any) -> None:
    m = start_master(tmp_path, "--ws-max-connections-per-source", "2",
                     "--ws-max-connections", "3")
    try:
        async with connect_from(m, "127.0.0.1") as a1, connect_from(m, "127.0.0.1") as a2:
            async with connect_from(m, "127.0.0.1") as a3:
                closed = await closed_with(a3)
                assert (closed.code, closed.reason) == (
                    1013, "too many connections from 127.0.0.1 (limit 2 per address)")
            async with connect_from(m, "127.0.0.2") as b1:   # another address: room left
                async with connect_from(m, "127.0.0.3") as c1:
                    closed = await closed_with(c1)
                    assert (closed.code, closed.reason) == (
                        1013, "too many connections (the server's limit is 3)")
                for ws in (a1, a2, b1):                      # the ones let in work
                    await subscribed(ws)
            # b1 has gone: its slot is free again (released once its handler ended).
            with trio.fail_after(10):
                while True:
                    async with connect_from(m, "127.0.0.3") as c2:
                        try:
                            await c2.send_message(ScriptedFramework().subscribe())
                            msg = await c2.get_message()
                        except ConnectionClosed:
                            await trio.sleep(0.05)
                            continue
                        assert isinstance(msg, bytes)
                        ev = decode(pb.FrameworkEvent, msg)
                        assert ev.WhichOneof("event") == "subscribed"
                        break
    finally:
        m.stop()


# --- item 8: a framework id belongs to whoever holds its secret


async def test_another_token_cannot_take_a_framework_over(tmp_path: Any) -> None:
    m = start_master(tmp_path, "--framework-token", "other-token")
    try:
        async with open_coap_client() as coap, \
                open_websocket_url(url(m, "/framework")) as owner_ws:
            agent = CoapAgentClient(coap, m.coap, ScriptedAgent("pi-1"))
            await agent.settle()
            owner = await subscribed(owner_ws)
            assert len(owner.fw.framework_secret) == 16
            await launch_one(agent, owner, "t1")
            attempts = [("other-token", b""), ("other-token", b"\0" * 16),
                        ("framework-token", b""),
                        ("framework-token", owner.fw.framework_secret[::-1])]
            for token, secret in attempts:
                thief = ScriptedFramework(token=token)
                thief.framework_id, thief.framework_secret = owner.fw.framework_id, secret
                async with open_websocket_url(url(m, "/framework")) as ws:
                    # Right behind the Subscribe, before its answer: a kill and a reconcile.
                    try:
                        for frame in (thief.subscribe(), thief.kill("t1"), thief.reconcile()):
                            await ws.send_message(frame)
                    except ConnectionClosed:
                        pass    # already closed by the master: fine
                    closed = await closed_with(ws)
                    events = [decode(pb.FrameworkEvent, d) for d in closed.messages]
                    # One answer, a refusal; nothing of the framework is shown.
                    assert [e.WhichOneof("event") for e in events] == ["error"], (token, events)
                    assert events[0].error.code == pb.FORBIDDEN
                    assert closed.code == 1008
            # The owner was not disconnected and its task was not killed.
            await owner.send(owner.fw.reconcile(["t1"]))
            update = await owner.until_kind("update")
            assert (update.task_id, update.state) == ("t1", TS.RUNNING)
            await agent.settle()
            assert agent.agent.tasks[1] == TS.RUNNING
            assert "fw-" in owner.fw.framework_id and not owner.fw.closed
            # With the secret, the owner's successor takes over (and the owner is closed).
            heir = ScriptedFramework(token="other-token")
            heir.framework_id = owner.fw.framework_id
            heir.framework_secret = owner.fw.framework_secret
            async with open_websocket_url(url(m, "/framework")) as ws:
                await subscribed(ws, heir)
                closed = await closed_with(owner_ws)
                assert closed.reason == "another connection subscribed as this framework"
    finally:
        m.stop()


async def test_the_secret_still_takes_over_after_a_master_restart(tmp_path: Any) -> None:
    m = start_master(tmp_path)
    try:
        async with open_websocket_url(url(m, "/framework")) as ws:
            first = await subscribed(ws, ScriptedFramework(failover_timeout_s=60))
        m.kill()
        m.start()
        fw = ScriptedFramework(failover_timeout_s=60)
        fw.framework_id = first.fw.framework_id
        async with open_websocket_url(url(m, "/framework")) as ws:
            await ws.send_message(fw.subscribe())
            closed = await closed_with(ws)
            assert decode(pb.FrameworkEvent, closed.messages[0]).error.code == pb.FORBIDDEN
        fw.framework_secret = first.fw.framework_secret
        async with open_websocket_url(url(m, "/framework")) as ws:
            again = await subscribed(ws, fw)
            assert again.fw.framework_id == first.fw.framework_id
    finally:
        m.stop()
