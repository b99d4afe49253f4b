"""Trio CoAP server and client over real loopback sockets (IPv4 and IPv6)."""

from __future__ import annotations

import os
import random
import socket

import pytest
import trio
import trio.testing

from edgerm.coap import CoapConfig, Code, NotFound, Unauthorized, parse_links
from edgerm.coap.codes import ACK, CON
from edgerm.coap.message import decode_message_untrusted, encode_message
from edgerm.coap.options import URI_PATH
from edgerm.transport.coap import (
    CoapRequestError,
    CoapServer,
    CoapTimeout,
    Observation,
    ObservationGone,
    Request,
    Response,
    Site,
    open_coap_client,
    serve_coap,
)

BIG = bytes(range(256)) * 24  # 6 KiB


def make_site(holder: list[Observation] | None = None) -> Site:
    site = Site()

    async def echo(req: Request) -> Response:
        return Response(Code.CHANGED, req.payload, req.content_format)

    async def info(req: Request) -> Response:
        return Response(Code.CONTENT, repr((req.method, req.path, req.query,
                                            req.content_format)).encode())

    async def manifest(req: Request) -> Response:
        if len(req.path) != 2 or len(req.path[1]) != 64:
            raise NotFound("no such manifest")
        return Response(Code.CONTENT, BIG)

    async def commands(req: Request) -> Response:
        if req.payload != b"secret":
            raise Unauthorized("bad credentials")
        if req.observation is not None and holder is not None:
            holder.append(req.observation)
        return Response(Code.CONTENT, b"registered", 60, observe=True)

    async def slow(req: Request) -> Response:
        await trio.sleep(float(req.payload or b"0.5"))
        return Response(Code.CONTENT, b"slow done")

    async def crash(req: Request) -> Response:
        raise RuntimeError("handler bug")

    site.add("a", echo, methods=[Code.POST], rt="edgerm.heartbeat", ct=60)
    site.add("info", info)
    site.add("m", manifest, methods=[Code.GET], prefix=True)
    site.add("c", commands, methods=[Code.FETCH], observable=True)
    site.add("slow", slow)
    site.add("crash", crash)
    return site


async def test_requests_over_ipv4_and_ipv6(nursery: trio.Nursery) -> None:
    server = CoapServer(make_site())
    addr = await nursery.start(server.serve, "::", 0)
    port = addr[1]
    async with open_coap_client() as client:
        for host in ("127.0.0.1", "::1"):
            r = await client.post((host, port), "a", b"\xa1\x01\x02", content_format=60,
                                  token_length=1)
            assert (r.code, r.payload, r.content_format) == (Code.CHANGED, b"\xa1\x01\x02", 60)
        r = await client.get(("127.0.0.1", port), "info", query=["x=1", "y"])
        assert r.payload == repr((1, ("info",), ("x=1", "y"), None)).encode()
        r = await client.get(("127.0.0.1", port), "nope")
        assert r.code == Code.NOT_FOUND
        r = await client.request(("127.0.0.1", port), Code.DELETE, "a")
        assert r.code == Code.METHOD_NOT_ALLOWED
        r = await client.fetch(("127.0.0.1", port), "c", b"wrong")
        assert (r.code, r.payload) == (Code.UNAUTHORIZED, b"bad credentials")
        r = await client.get(("127.0.0.1", port), "crash")
        assert r.code == Code.INTERNAL_SERVER_ERROR
        r = await client.get(("localhost", port), ".well-known/core")
        links = {link.target: link.attrs for link in parse_links(r.payload.decode())}
        assert links["/a"] == {"rt": "edgerm.heartbeat", "ct": 60}
        assert links["/c"] == {"obs": True}
    assert server.shell_stats.handler_errors == 1


async def test_serve_coap_reports_bound_address(nursery: trio.Nursery) -> None:
    addr = await nursery.start(serve_coap, make_site(), "127.0.0.1", 0)
    assert addr[0] == "127.0.0.1" and addr[1] > 0
    async with open_coap_client() as client:
        assert (await client.post(addr, "a", b"x")).payload == b"x"


async def test_block2_download_with_64_byte_blocks(nursery: trio.Nursery) -> None:
    server = CoapServer(make_site())
    addr = await nursery.start(server.serve, "127.0.0.1", 0)
    async with open_coap_client() as client:
        r = await client.get(addr, "m/" + "ab" * 32, block_size=64)
        assert r.payload == BIG
        assert server.endpoint.stats.received == len(BIG) // 64
        r = await client.get(addr, "m/short")
        assert r.code == Code.NOT_FOUND


async def test_block1_upload(nursery: trio.Nursery) -> None:
    addr = await nursery.start(serve_coap, make_site(), "127.0.0.1", 0)
    async with open_coap_client() as client:
        r = await client.post(addr, "a", BIG, block_size=256)
        assert r.payload == BIG  # uploaded in 24 blocks, echoed back block-wise


async def test_slow_handler_does_not_block_others(nursery: trio.Nursery) -> None:
    addr = await nursery.start(serve_coap, make_site(), "127.0.0.1", 0)
    async with open_coap_client() as client:
        done: list[str] = []

        async def slow() -> None:
            r = await client.request(addr, Code.GET, "slow")
            done.append(r.payload.decode())

        async with trio.open_nursery() as inner:
            inner.start_soon(slow)
            await trio.sleep(0.05)
            with trio.fail_after(0.3):
                for _ in range(20):
                    assert (await client.post(addr, "a", b"quick")).payload == b"quick"
            assert done == []
        assert done == ["slow done"]


async def test_observe_push_later_and_gone_detection(nursery: trio.Nursery) -> None:
    holder: list[Observation] = []
    server = CoapServer(make_site(holder))
    addr = await nursery.start(server.serve, "::", 0)
    async with open_coap_client() as client:
        async with client.observe(("::1", addr[1]), "c", b"secret", method=Code.FETCH,
                                  token_length=2) as obs:
            first = await obs.__anext__()
            assert (first.payload, first.content_format) == (b"registered", 60)
            (observation,) = holder
            for i in range(3):
                await observation.notify(b"cmd%d" % i, content_format=60)
            await observation.notify(BIG)  # large: completed block-wise by the client
            got = [(await obs.__anext__()).payload for _ in range(4)]
            assert got == [b"cmd0", b"cmd1", b"cmd2", BIG]
        # Leaving the block deregistered explicitly.
        with trio.fail_after(2):
            assert await observation.wait_gone() == "deregistered"
        with pytest.raises(ObservationGone):
            await observation.notify(b"late")
    assert server.observer_count == 0


async def test_vanished_observer_detected_by_con_timeout(autojump_clock: trio.abc.Clock,
                                                         nursery: trio.Nursery) -> None:
    holder: list[Observation] = []
    server = CoapServer(make_site(holder))
    addr = await nursery.start(server.serve, "127.0.0.1", 0)
    # A raw socket registers and then goes silent (no ACKs, no RST).
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
        raw.bind(("127.0.0.1", 0))
        raw.setblocking(False)
        raw.sendto(encode_message(CON, Code.FETCH, 1, b"t", [(6, b""), (URI_PATH, b"c")],
                                  b"secret"), addr)
        await trio.lowlevel.wait_readable(raw)
        first = decode_message_untrusted(raw.recv(2048))
        assert first.mtype == ACK and first.code == Code.CONTENT and first.opt(6) is not None
        (observation,) = holder
        await observation.notify(b"are you there?")
        start = trio.current_time()
        assert await observation.wait_gone() == "timeout"
        elapsed = trio.current_time() - start
        assert 62 <= elapsed <= 93  # 31 x ACK_TIMEOUT x U(1, 1.5): MAX_TRANSMIT_WAIT at most
        copies = 0
        while True:
            try:
                raw.recv(2048)
                copies += 1
            except BlockingIOError:
                break
        assert copies == 5  # the notification and its 4 retransmissions


async def test_client_timeout_on_silent_server(autojump_clock: trio.abc.Clock) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        async with open_coap_client(rng=random.Random(3)) as client:
            start = trio.current_time()
            with pytest.raises(CoapTimeout):
                await client.post(silent.getsockname(), "a", b"x")
            assert 62 <= trio.current_time() - start <= 93
            with pytest.raises(CoapTimeout):
                await client.post(silent.getsockname(), "a", b"x", timeout=1.0)
            assert client.endpoint.outstanding_requests == 0


async def test_rst_fails_request() -> None:
    # A server that answers everything with RST.
    with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        await sock.bind(("127.0.0.1", 0))

        async def resetter() -> None:
            while True:
                data, addr = await sock.recvfrom(2048)
                await sock.sendto(bytes((0x70, 0, data[2], data[3])), addr)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(resetter)
            async with open_coap_client() as client:
                with pytest.raises(CoapRequestError, match="reset"):
                    await client.get(sock.getsockname(), "x")
            nursery.cancel_scope.cancel()


async def test_handler_timeout_and_overload(nursery: trio.Nursery) -> None:
    cfg = CoapConfig(handler_timeout=0.2, handler_workers=2, max_pending_requests=2)
    server = CoapServer(make_site(), config=cfg)
    addr = await nursery.start(server.serve, "127.0.0.1", 0)
    async with open_coap_client() as client:
        results: list[int] = []

        async def one() -> None:
            results.append((await client.request(addr, Code.GET, "slow", b"5")).code)

        async with trio.open_nursery() as inner:
            for _ in range(6):
                inner.start_soon(one)
        # 2 running + 2 queued time out (5.03 from the watchdog); 2 refused at once (5.03).
        assert results == [Code.SERVICE_UNAVAILABLE] * 6
        assert server.shell_stats.overloaded == 2
        assert server.shell_stats.handler_timeouts == 4
        # And the server still serves.
        assert (await client.post(addr, "a", b"ok")).payload == b"ok"


async def test_hostile_datagrams_over_a_real_socket(nursery: trio.Nursery) -> None:
    server = CoapServer(make_site())
    addr = await nursery.start(server.serve, "127.0.0.1", 0)
    rng = random.Random(7)
    seeds = [encode_message(CON, Code.POST, 1, b"\x01", [(URI_PATH, b"a")], b"hello"),
             encode_message(CON, Code.GET, 2, b"ab", [(URI_PATH, b"m"), (23, b"\x12")])]
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        for _burst in range(50):
            # 100 small datagrams fit the server's socket buffer, so loopback drops none and
            # every one of them must reach the endpoint, whatever the machine's load.
            for _ in range(100):
                data = bytearray(rng.choice(seeds))
                for _ in range(rng.randint(1, 3)):
                    data[rng.randrange(len(data))] = rng.randrange(256)
                if rng.random() < 0.2:
                    data = bytearray(rng.randbytes(rng.randrange(60)))
                raw.sendto(bytes(data), addr)
                sent += 1
            with trio.fail_after(10):
                while server.endpoint.stats.received < sent:
                    await trio.sleep(0.005)
            raw.setblocking(False)
            try:
                while raw.recv(4096):  # RSTs and error responses to the garbage
                    pass
            except BlockingIOError:
                pass
            raw.setblocking(True)
    assert server.endpoint.stats.received == sent == 5000
    async with open_coap_client() as client:
        with trio.fail_after(5):
            assert (await client.post(addr, "a", b"still here")).payload == b"still here"


async def test_clean_shutdown_leaks_nothing() -> None:
    def fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    before = fds()
    tasks_before = trio.lowlevel.current_statistics().tasks_living
    async with trio.open_nursery() as nursery:
        addr = await nursery.start(serve_coap, make_site(), "::", 0)
        async with open_coap_client() as client:
            await client.post(("127.0.0.1", addr[1]), "a", b"x")
            await client.post(("::1", addr[1]), "a", b"x")
        nursery.cancel_scope.cancel()
    assert fds() == before
    assert trio.lowlevel.current_statistics().tasks_living == tasks_before


async def _answers(sock: trio.socket.SocketType, n: int) -> dict[int, int]:
    """mid -> response code of the next ``n`` non-empty answers on ``sock``."""
    out: dict[int, int] = {}
    with trio.fail_after(10):
        while len(out) < n:
            msg = decode_message_untrusted(await sock.recv(2048))
            if msg.code:
                out[msg.mid] = msg.code
    return out


async def test_one_peer_cannot_fill_the_handler_queue(nursery: trio.Nursery) -> None:
    """Per-peer quota on waiting+running requests, and a full queue makes the biggest holder
    give way to a peer holding fewer: the flooder is refused, the others are served."""
    gate = trio.Event()
    site = Site()

    async def held(req: Request) -> Response:
        await gate.wait()
        return Response(Code.CHANGED, req.payload)

    site.add("h", held, methods=[Code.POST])
    cfg = CoapConfig(handler_workers=1, max_pending_requests=3, max_pending_per_peer=3,
                     empty_ack_delay=30.0)
    server = CoapServer(site, config=cfg)
    addr = await nursery.start(server.serve, "127.0.0.1", 0)
    socks = [trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) for _ in range(3)]
    flooder, other, third = socks
    for s in socks:
        await s.bind(("127.0.0.1", 0))

    def post(mid: int) -> bytes:
        return encode_message(CON, Code.POST, mid, b"\x01", [(URI_PATH, b"h")], b"p")

    try:
        # 6 from one peer: 1 runs, 2 wait, and its quota of 3 is reached: 3 refused (5.03).
        for mid in range(6):
            await flooder.sendto(post(mid), addr)
        refused = await _answers(flooder, 3)
        assert set(refused.values()) == {Code.SERVICE_UNAVAILABLE}
        assert server.shell_stats.overloaded == 3
        assert server._work.held == {flooder.getsockname(): 3}
        # Another peer takes the last free place in the queue.
        await other.sendto(post(100), addr)
        with trio.fail_after(5):
            while len(server._work) < 3:
                await trio.sleep(0.01)
        # A third peer finds the queue full: the flooder's newest waiting request gives way.
        await third.sendto(post(200), addr)
        (displaced,) = (await _answers(flooder, 1)).items()
        assert displaced[1] == Code.SERVICE_UNAVAILABLE and displaced[0] not in refused
        assert server.shell_stats.displaced == 1 and server.shell_stats.overloaded == 3
        gate.set()
        assert await _answers(other, 1) == {100: Code.CHANGED}
        assert await _answers(third, 1) == {200: Code.CHANGED}
        served = await _answers(flooder, 2)
        assert set(served.values()) == {Code.CHANGED}
        assert set(refused) | {displaced[0]} | set(served) == set(range(6))
        # Everything answered: no quota is held any more, and the 5.03s were not remembered.
        assert server._work.held == {} and len(server._work) == 0
        assert server.endpoint.dedup_size == 4
    finally:
        for s in socks:
            s.close()


async def test_many_ports_of_one_address_share_one_quota(nursery: trio.Nursery) -> None:
    gate = trio.Event()
    site = Site()

    async def held(req: Request) -> Response:
        await gate.wait()
        return Response(Code.CHANGED)

    site.add("h", held, methods=[Code.POST])
    cfg = CoapConfig(handler_workers=1, max_pending_requests=100, max_pending_per_peer=3,
                     max_pending_per_ip=4, empty_ack_delay=30.0)
    server = CoapServer(site, config=cfg)
    addr = await nursery.start(server.serve, "127.0.0.1", 0)
    socks = [trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) for _ in range(3)]
    try:
        for s, host in zip(socks, ("127.0.0.1", "127.0.0.1", "127.0.0.2"), strict=True):
            await s.bind((host, 0))
        first, second, elsewhere = socks
        for s in socks:
            for mid in range(3):
                await s.sendto(encode_message(CON, Code.POST, mid, b"\x01", [(URI_PATH, b"h")]),
                               addr)
        # The first port fills its own quota (3); the second gets what is left of the
        # address's (1) and is refused twice; another address is not affected.
        assert list((await _answers(second, 2)).values()) == [Code.SERVICE_UNAVAILABLE] * 2
        with trio.fail_after(5):
            while server._work.held.get(elsewhere.getsockname()) != 3:
                await trio.sleep(0.01)
        assert server._work.held_ip == {"127.0.0.1": 4, "127.0.0.2": 3}
        assert server.shell_stats.overloaded == 2
        gate.set()
        for s, n in ((first, 3), (second, 1), (elsewhere, 3)):
            assert set((await _answers(s, n)).values()) == {Code.CHANGED}
        assert server._work.held == {} and server._work.held_ip == {}
    finally:
        for s in socks:
            s.close()


async def test_inline_handler_answers_or_hands_over_with_context(nursery: trio.Nursery) -> None:
    """`Site.add(inline=...)`: answered in the receive loop (the queued handler never runs), or
    declined with what it found in `request.context` for the queued handler; a failing inline
    handler is answered 5.00 and the server keeps serving."""
    queued: list[object] = []

    def inline(req: Request) -> Response | None:
        if req.payload == b"fast":
            return Response(Code.CHANGED, b"inline")
        if req.payload == b"boom":
            raise RuntimeError("inline handler bug")
        req.context = ("seen", req.payload)
        return None

    async def handler(req: Request) -> Response:
        queued.append(req.context)
        return Response(Code.CHANGED, b"queued")

    site = Site()
    site.add("a", handler, methods=[Code.POST, Code.FETCH], inline=inline)
    server = CoapServer(site)
    addr = await nursery.start(server.serve, "127.0.0.1", 0)
    async with open_coap_client() as client:
        assert (await client.post(addr, "a", b"fast")).payload == b"inline"
        assert queued == []
        assert (await client.post(addr, "a", b"slow")).payload == b"queued"
        assert queued == [("seen", b"slow")]
        assert (await client.post(addr, "a", b"boom")).code == Code.INTERNAL_SERVER_ERROR
        assert server.shell_stats.handler_errors == 1
        assert (await client.post(addr, "a", b"fast")).payload == b"inline"
        # An Observe registration never goes inline (the worker path accepts observations).
        async with client.observe(addr, "a", b"fast", method=Code.FETCH) as obs:
            assert (await obs.__anext__()).payload == b"queued"
