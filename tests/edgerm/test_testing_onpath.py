"""The on-path relay (edgerm.testing_onpath) on real loopback UDP: between a client socket
and a small CoAP echo server it records both ways with times, and drops, delays, reorders,
duplicates, flips, injects and replays on command; `regions` names the bytes of a datagram."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

from edgerm.coap.codes import ACK, CON, Code
from edgerm.coap.errors import CoapWireError
from edgerm.coap.message import decode_message_untrusted, encode_message
from edgerm.coap.options import OSCORE, URI_PATH
from edgerm.testing_onpath import (
    HOLD,
    OnPathRelay,
    delay,
    drop,
    duplicate,
    flip,
    flip_bit,
    forward,
    regions,
    replace,
    with_mid,
    with_token,
)


def request(mid: int, payload: bytes = b"hello", token: bytes = b"\x42") -> bytes:
    return encode_message(CON, Code.POST, mid, token, [(URI_PATH, b"a")], payload)


class Echo:
    """A CoAP server that answers each request with a piggybacked 2.04 echoing its payload,
    and remembers every datagram and the address it came from."""

    def __init__(self) -> None:
        self.sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        self.got: list[tuple[bytes, tuple[str, int]]] = []
        self.garbage_answer = b""   # what to answer a datagram that is not CoAP (else nothing)

    async def run(self, *, task_status: trio.TaskStatus[tuple[str, int]]
                  = trio.TASK_STATUS_IGNORED) -> None:
        await self.sock.bind(("127.0.0.1", 0))
        task_status.started(self.sock.getsockname())
        with self.sock:
            while True:
                data, addr = await self.sock.recvfrom(65536)
                self.got.append((data, addr))
                try:
                    m = decode_message_untrusted(data)
                except CoapWireError:
                    if self.garbage_answer:
                        await self.sock.sendto(self.garbage_answer, addr)
                    continue
                await self.sock.sendto(encode_message(ACK, Code.CHANGED, m.mid, m.token, [],
                                                      b"echo:" + m.payload), addr)


class Client:
    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)

    async def send(self, data: bytes) -> None:
        await self.sock.sendto(data, ("127.0.0.1", self.port))

    async def receive(self, timeout: float = 2.0) -> bytes | None:
        with trio.move_on_after(timeout):
            data, _ = await self.sock.recvfrom(65536)
            return data
        return None


@pytest.fixture
async def net() -> AsyncIterator[tuple[Echo, OnPathRelay, Client]]:
    async with trio.open_nursery() as nursery:
        echo = Echo()
        server = await nursery.start(echo.run)
        relay = OnPathRelay(server)
        port = await nursery.start(relay.run)
        client = Client(port)
        await client.sock.bind(("127.0.0.1", 0))
        yield echo, relay, client
        client.sock.close()
        nursery.cancel_scope.cancel()


async def test_forwards_and_records_both_ways_with_times(net) -> None:  # type: ignore[no-untyped-def]
    echo, relay, client = net
    t0 = trio.current_time()
    await client.send(request(1))
    answer = await client.receive()
    assert answer is not None and decode_message_untrusted(answer).payload == b"echo:hello"
    assert [(d.direction, d.source) for d in relay.recorded] == [("up", "agent"),
                                                                 ("down", "master")]
    assert relay.recorded[0].data == request(1) and relay.recorded[1].data == answer
    assert t0 <= relay.recorded[0].at <= relay.recorded[1].at <= trio.current_time()
    assert relay.requests() == [relay.recorded[0]]
    assert relay.answer_to(relay.recorded[0]) == relay.recorded[1]
    # The server saw the relay's upstream address, not the client's.
    assert echo.got[0][1] != client.sock.getsockname()


async def test_drop_and_standing_rule(net) -> None:  # type: ignore[no-untyped-def]
    echo, relay, client = net
    relay.plan("up", drop)
    await client.send(request(1))
    assert await client.receive(0.3) is None and echo.got == []
    await client.send(request(2))           # the plan was one-shot
    assert await client.receive() is not None
    relay.rule["down"] = drop                # cut the answers for good
    for mid in (3, 4):
        await client.send(request(mid))
        assert await client.receive(0.3) is None
    assert len(echo.got) == 3                # the requests still arrived
    relay.rule["down"] = None
    await client.send(request(5))
    assert await client.receive() is not None


async def test_plan_applies_to_matching_datagrams_only(net) -> None:  # type: ignore[no-untyped-def]
    echo, relay, client = net
    relay.plan("up", drop, match=lambda m: m is not None and m.payload == b"second")
    await client.send(request(1, b"first"))
    assert await client.receive() is not None
    await client.send(request(2, b"second"))
    assert await client.receive(0.3) is None
    assert [decode_message_untrusted(d).payload for d, _ in echo.got] == [b"first"]
    assert relay.planned("up") == 0


async def test_delay(net) -> None:  # type: ignore[no-untyped-def]
    echo, relay, client = net
    relay.plan("down", delay(0.4))
    sent = trio.current_time()
    await client.send(request(1))
    assert await client.receive(0.2) is None   # not yet
    assert await client.receive(2.0) is not None
    assert trio.current_time() - sent >= 0.4


async def test_hold_and_release_reversed_reorders(net) -> None:  # type: ignore[no-untyped-def]
    echo, relay, client = net
    relay.plan("up", HOLD, HOLD, HOLD)
    for mid in (1, 2, 3):
        await client.send(request(mid))
    await relay.wait_for(lambda: len(relay.held["up"]) == 3)
    assert echo.got == []
    released = await relay.release("up", reverse=True)
    assert [decode_message_untrusted(d.data).mid for d in released] == [1, 2, 3]
    mids = [decode_message_untrusted((await client.receive()) or b"").mid for _ in range(3)]
    assert mids == [3, 2, 1]
    # Only some: the rest stay held.
    relay.plan("up", HOLD, HOLD)
    for mid in (4, 5):
        await client.send(request(mid))
    await relay.wait_for(lambda: len(relay.held["up"]) == 2)
    first = await relay.release("up", which=lambda d: decode_message_untrusted(d.data).mid == 5)
    assert len(first) == 1 and len(relay.held["up"]) == 1
    assert decode_message_untrusted((await client.receive()) or b"").mid == 5
    await relay.release("up")
    assert decode_message_untrusted((await client.receive()) or b"").mid == 4


async def test_duplicate_flip_and_replace(net) -> None:  # type: ignore[no-untyped-def]
    echo, relay, client = net
    relay.plan("up", duplicate(3))
    await client.send(request(1))
    for _ in range(3):
        assert await client.receive() is not None
    assert len(echo.got) == 3
    relay.plan("up", flip(-1, 7))
    await client.send(request(2, b"abc"))
    got = await client.receive()
    assert got is not None and decode_message_untrusted(got).payload == b"echo:ab\xe3"
    relay.plan("up", replace(request(9, b"other")))
    await client.send(request(3))
    got = await client.receive()
    assert got is not None and decode_message_untrusted(got).payload == b"echo:other"
    relay.plan("down", forward)
    await client.send(request(4))
    assert await client.receive() is not None


async def test_inject_from_the_agents_address_keeps_the_answer(net) -> None:  # type: ignore[no-untyped-def]
    echo, relay, client = net
    await client.send(request(1, b"genuine"))
    assert await client.receive() is not None
    genuine = relay.requests()[0]
    answer = await relay.replay(genuine, via="agent", mid=77)
    assert answer is not None and answer.source == "answer"
    assert decode_message_untrusted(answer.data).mid == 77
    assert echo.got[1][1] == echo.got[0][1]      # from the address the agent has
    assert await client.receive(0.3) is None      # the agent never sees it
    injected = relay.select(source="inject")
    assert [d.data for d in injected] == [with_mid(genuine.data, 77)]


async def test_inject_from_another_address(net) -> None:  # type: ignore[no-untyped-def]
    echo, relay, client = net
    await client.send(request(1))
    assert await client.receive() is not None
    answer = await relay.exchange(request(2, b"forged"), via="attacker")
    assert answer is not None and decode_message_untrusted(answer.data).payload == \
        b"echo:forged"
    assert echo.got[1][1] != echo.got[0][1]
    assert await client.receive(0.3) is None
    # Nobody answers: None after the timeout.
    relay.target = ("127.0.0.1", 9)   # discard port: nothing listens on loopback
    assert await relay.exchange(request(3), timeout=0.3) is None


async def test_inject_down_reaches_the_agent(net) -> None:  # type: ignore[no-untyped-def]
    echo, relay, client = net
    with pytest.raises(RuntimeError, match="address is unknown"):
        await relay.inject_down(b"x")
    await client.send(request(1))
    assert await client.receive() is not None
    forged = encode_message(ACK, Code.CHANGED, 1, b"\x42", [], b"forged")
    await relay.inject_down(forged)
    assert await client.receive() == forged
    assert relay.recorded[-1].source == "inject" and relay.recorded[-1].direction == "down"


def test_regions_name_every_byte() -> None:
    ciphertext = bytes(range(20))
    data = encode_message(CON, Code.POST, 0x1234, b"\x42",
                          [(6, b"\x09"), (OSCORE, b"\x09\x01\x05")], ciphertext)
    r = regions(data)
    assert r["header"] == range(0, 4) and r["token"] == range(4, 5)
    assert data[r["oscore"].start:r["oscore"].stop] == b"\x09\x01\x05"
    assert data[r["ciphertext"].start:r["ciphertext"].stop] == ciphertext[:-8]
    assert data[r["tag"].start:r["tag"].stop] == ciphertext[-8:]
    covered = sorted(i for name, rg in r.items() if name != "oscore" for i in rg)
    marker = r["options"].stop
    assert covered == [i for i in range(len(data)) if i != marker]   # all but the 0xFF
    plain = encode_message(ACK, Code.CHANGED, 1)
    assert set(regions(plain)) == {"header"}


def test_byte_helpers() -> None:
    data = request(5)
    assert decode_message_untrusted(with_mid(data, 0xABCD)).mid == 0xABCD
    assert decode_message_untrusted(with_token(data, b"\x07")).token == b"\x07"
    with pytest.raises(ValueError, match="1 bytes"):
        with_token(data, b"\x01\x02")
    assert flip_bit(b"\x00\x00", 1, 3) == b"\x00\x08"
    assert flip_bit(flip_bit(data, 2), 2) == data


async def test_the_agents_own_exchange_after_an_injection_reaches_it(net) -> None:  # type: ignore[no-untyped-def]
    """An injection with the MID of a request the agent sends later does not swallow the
    answer to the agent's own request."""
    echo, relay, client = net
    assert await relay.exchange(request(7, b"forged"), via="agent") is not None
    await client.send(request(7, b"genuine"))
    answer = await client.receive()
    assert answer is not None and decode_message_untrusted(answer).payload == b"echo:genuine"


async def test_an_injection_with_the_agents_mid_and_token_keeps_only_its_own_answer(net) -> None:  # type: ignore[no-untyped-def]
    """The attacker sends a copy of a request the relay holds back, from the agent's address:
    its answer stays with the attacker; the held request, released, is answered to the
    agent (same MID and token: matched by MID for piggybacked answers)."""
    echo, relay, client = net
    relay.plan("up", HOLD)
    await client.send(request(9, b"genuine"))
    await relay.wait_for(lambda: relay.held["up"])
    answer = await relay.exchange(request(9, b"copy"), via="agent")
    assert answer is not None and decode_message_untrusted(answer.data).payload == b"echo:copy"
    await relay.release("up")
    got = await client.receive()
    assert got is not None and decode_message_untrusted(got).payload == b"echo:genuine"
    assert relay.answer_to(relay.requests()[0]) is not None


async def test_an_attackers_exchange_may_send_anything(net) -> None:  # type: ignore[no-untyped-def]
    echo, relay, client = net
    echo.garbage_answer = b"\xff\xfe"
    answer = await relay.exchange(b"\x00 not coap", via="attacker")
    assert answer is not None and answer.data == b"\xff\xfe"
    with pytest.raises(ValueError, match="decodes"):
        await relay.exchange(b"\x00 not coap", via="agent")
