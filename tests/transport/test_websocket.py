"""WebSocket transport: CBOR messages in binary frames, path routing, keepalive, reconnect."""

from __future__ import annotations

import random

import cbor2
import pytest
import trio
from trio_websocket import ConnectionRejected

from edgerm.transport.websocket import (
    Backoff,
    ConnectionClosed,
    HandshakeError,
    WebSocketConfig,
    WsConnection,
    connect_websocket,
    run_with_reconnect,
    serve_websocket,
)


async def agent_handler(conn: WsConnection) -> None:
    while True:
        msg = cbor2.loads(await conn.receive())
        await conn.send(cbor2.dumps({"ack": msg["seq"], "path": conn.path}))


async def framework_handler(conn: WsConnection) -> None:
    await conn.send(cbor2.dumps({"hello": "framework"}))
    await conn.receive()


async def test_paths_on_one_port_carry_cbor(nursery: trio.Nursery) -> None:
    host, port = await nursery.start(serve_websocket, {"/agent": agent_handler,
                                                       "/framework": framework_handler},
                                     "127.0.0.1", 0)
    async with connect_websocket(f"ws://127.0.0.1:{port}/agent") as conn:
        for seq in range(5):
            await conn.send(cbor2.dumps({"seq": seq, "blob": bytes(1000)}))
            assert cbor2.loads(await conn.receive()) == {"ack": seq, "path": "/agent"}
    async with connect_websocket(f"ws://127.0.0.1:{port}/framework") as conn:
        assert cbor2.loads(await conn.receive()) == {"hello": "framework"}
    with pytest.raises(ConnectionRejected) as info:
        async with connect_websocket(f"ws://127.0.0.1:{port}/nope"):
            pass
    assert info.value.status_code == 404


async def test_text_frames_and_handler_errors_close_the_connection(
        nursery: trio.Nursery) -> None:
    async def text_sender(conn: WsConnection) -> None:
        await conn._ws.send_message("not binary")  # noqa: SLF001 - simulate a bad peer
        await conn.receive()

    async def crasher(conn: WsConnection) -> None:
        await conn.receive()
        raise RuntimeError("bug")

    _, port = await nursery.start(serve_websocket, {"/text": text_sender, "/crash": crasher,
                                                    "/agent": agent_handler}, "127.0.0.1", 0)
    async with connect_websocket(f"ws://127.0.0.1:{port}/text") as conn:
        with pytest.raises(ConnectionClosed):
            await conn.receive()
        reason = conn._ws.closed  # noqa: SLF001
        assert reason is not None and reason.code == 1003
    async with connect_websocket(f"ws://127.0.0.1:{port}/crash") as conn:
        await conn.send(b"x")
        with pytest.raises(ConnectionClosed):
            await conn.receive()
        reason = conn._ws.closed  # noqa: SLF001
        assert reason is not None and reason.code == 1011
    # The server survived both.
    async with connect_websocket(f"ws://127.0.0.1:{port}/agent") as conn:
        await conn.send(cbor2.dumps({"seq": 1}))
        assert cbor2.loads(await conn.receive())["ack"] == 1


class BlackHoleProxy:
    """TCP proxy that stops forwarding (but keeps sockets open) once ``cut`` is set: a peer
    that vanished without closing, as after a power loss or NAT timeout."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.cut = False

    async def _pipe(self, src: trio.SocketStream, dst: trio.SocketStream) -> None:
        while True:
            data = await src.receive_some(65536)
            if not data:
                return
            if not self.cut:
                await dst.send_all(data)

    async def _serve_one(self, client: trio.SocketStream) -> None:
        upstream = await trio.open_tcp_stream("127.0.0.1", self.upstream_port)
        async with client, upstream, trio.open_nursery() as nursery:
            nursery.start_soon(self._pipe, client, upstream)
            nursery.start_soon(self._pipe, upstream, client)

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        task_status.started(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(self._serve_one, listeners)


async def test_keepalive_closes_a_dead_peer(autojump_clock: trio.abc.Clock,
                                            nursery: trio.Nursery) -> None:
    cfg = WebSocketConfig(ping_interval=5, ping_timeout=2, disconnect_timeout=1)
    ended: list[tuple[float, bool]] = []

    async def watched(conn: WsConnection) -> None:
        try:
            while True:
                await conn.receive()
        finally:
            ended.append((trio.current_time(), conn.keepalive_failed))

    _, port = await nursery.start(lambda task_status: serve_websocket(
        {"/agent": watched}, "127.0.0.1", 0, config=cfg, task_status=task_status))
    proxy = BlackHoleProxy(port)
    proxy_port = await nursery.start(proxy.run)
    client_cfg = WebSocketConfig(ping_interval=1000, ping_timeout=1000)
    async with connect_websocket(f"ws://127.0.0.1:{proxy_port}/agent",
                                 config=client_cfg) as conn:
        await trio.sleep(12)  # pings every 5 s are answered: the connection stays up
        assert ended == [] and not conn.closed
        cut_at = trio.current_time()
        proxy.cut = True
        with trio.fail_after(30):
            while not ended:
                await trio.sleep(0.5)
        (when, by_keepalive), = ended
        assert by_keepalive
        assert when - cut_at <= cfg.ping_interval + cfg.ping_timeout + cfg.disconnect_timeout + 1


async def test_reconnect_with_backoff_and_jitter(autojump_clock: trio.abc.Clock,
                                                 nursery: trio.Nursery) -> None:
    # Find a free port, start nothing on it yet: the first attempts fail (connection refused).
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    await listeners[0].aclose()
    delays: list[float] = []
    connections = 0

    async def flaky(conn: WsConnection) -> None:
        nonlocal connections
        connections += 1
        msg = await conn.receive()
        if connections < 3:
            await conn.aclose()  # drop the first two sessions
        else:
            await conn.send(b"done:" + msg)

    async def session(conn: WsConnection) -> bytes:
        await conn.send(b"hi")
        return await conn.receive()

    async def start_server_later() -> None:
        await trio.sleep(3)
        await nursery.start(serve_websocket, {"/agent": flaky}, "127.0.0.1", port)

    nursery.start_soon(start_server_later)
    backoff = Backoff(initial=0.5, maximum=4, multiplier=2, jitter=0.5)
    result = await run_with_reconnect(
        f"ws://127.0.0.1:{port}/agent", session, backoff=backoff, rng=random.Random(5),
        on_retry=lambda attempt, delay, exc: delays.append(delay))
    assert result == b"done:hi"
    assert connections == 3
    # Refused attempts back off exponentially (each delay within [base/2, base]) ...
    refused = delays[:-2]
    assert len(refused) >= 3
    for attempt, delay in enumerate(refused):
        base = min(4, 0.5 * 2 ** attempt)
        assert base / 2 <= delay <= base
    # ... and after a successful connection the back-off starts again from the beginning.
    assert all(0.25 <= d <= 0.5 for d in delays[-2:])


async def test_reconnect_gives_up_after_max_attempts(autojump_clock: trio.abc.Clock) -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    await listeners[0].aclose()

    async def session(conn: WsConnection) -> None:
        raise AssertionError("never connects")

    with pytest.raises((OSError, HandshakeError)):
        await run_with_reconnect(f"ws://127.0.0.1:{port}/agent", session, max_attempts=3,
                                 rng=random.Random(1))


def test_backoff_caps_at_maximum() -> None:
    b = Backoff(initial=1, maximum=10, multiplier=3, jitter=0.0)
    rng = random.Random(0)
    assert [b.delay(n, rng) for n in range(5)] == [1, 3, 9, 10, 10]


async def test_a_client_without_keepalive_never_pings(autojump_clock: trio.abc.Clock,
                                                      nursery: trio.Nursery) -> None:
    # ping_interval=None: a client with a heartbeat of its own (the framework SDK) sends no
    # pings, so a silent path does not close its connection; its own deadline decides.
    server_cfg = WebSocketConfig(ping_interval=None)
    _, port = await nursery.start(lambda task_status: serve_websocket(
        {"/agent": agent_handler}, "127.0.0.1", 0, config=server_cfg, task_status=task_status))
    proxy = BlackHoleProxy(port)
    proxy_port = await nursery.start(proxy.run)
    client_cfg = WebSocketConfig(ping_interval=None, ping_timeout=1)
    async with connect_websocket(f"ws://127.0.0.1:{proxy_port}/agent",
                                 config=client_cfg) as conn:
        await conn.send(cbor2.dumps({"seq": 1}))
        assert cbor2.loads(await conn.receive())["ack"] == 1
        proxy.cut = True
        await trio.sleep(60)  # with pings, ping_timeout=1 would have closed it long ago
        assert not conn.closed and not conn.keepalive_failed
