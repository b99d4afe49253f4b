"""The Trio CoAP client against a hand-written UDP server: responses, cancellation, Observe."""

from __future__ import annotations

import random
import socket

import pytest
import trio

from edgerm.coap import CoapConfig, Code
from edgerm.coap.codes import ACK, CON, NON
from edgerm.coap.events import RequestFailed, ResponseReceived
from edgerm.coap.message import Message, decode_message_untrusted, encode_message
from edgerm.coap.options import CONTENT_FORMAT, OBSERVE, URI_PATH
from edgerm.transport.coap_client import (
    ClientResponse,
    CoapRequestError,
    _split_path,
    _Waiter,
    open_coap_client,
)


def test_paths_split_into_segments() -> None:
    assert _split_path("/m/abc/") == ("m", "abc")
    assert _split_path("") == ()
    assert _split_path(["a", "b/c"]) == ("a", "b/c")  # a sequence is taken as it is


async def test_waiter_keeps_the_newest_items_when_the_consumer_lags() -> None:
    waiter = _Waiter(2)
    items = [ResponseReceived(1, ("h", 1), Code.CONTENT, b"%d" % i, None, i, True, [])
             for i in range(3)]
    for item in items:
        waiter.put(item)
    assert waiter.dropped == 1
    assert [await waiter.get(), await waiter.get()] == items[1:]
    waiter.put(RequestFailed(1, ("h", 1), "reset"))
    assert isinstance(await waiter.get(), RequestFailed)


class FakeServer:
    """A UDP socket answering by hand, so the test sees exactly what the client sent."""

    def __init__(self) -> None:
        self.sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    async def bind(self) -> tuple[str, int]:
        await self.sock.bind(("127.0.0.1", 0))
        return self.sock.getsockname()  # type: ignore[no-any-return]

    async def recv(self) -> tuple[Message, tuple[str, int]]:
        with trio.fail_after(10):
            data, addr = await self.sock.recvfrom(4096)
        return decode_message_untrusted(data), addr

    async def send(self, msg: Message, addr: tuple[str, int]) -> None:
        await self.sock.sendto(encode_message(msg.mtype, msg.code, msg.mid, msg.token,
                                              msg.options, msg.payload), addr)


async def test_request_returns_the_piggybacked_response() -> None:
    server = FakeServer()
    with server.sock:
        addr = await server.bind()
        async with open_coap_client(rng=random.Random(1)) as client, trio.open_nursery() as n:
            got: list[ClientResponse] = []

            async def call() -> None:
                got.append(await client.post(addr, "/a/b", b"in", token_length=1))

            n.start_soon(call)
            req, peer = await server.recv()
            assert (req.mtype, req.code, len(req.token), req.payload) == (
                CON, Code.POST, 1, b"in")
            assert [v for k, v in req.options if k == URI_PATH] == [b"a", b"b"]
            await server.send(Message(ACK, Code.CHANGED, req.mid, req.token,
                                      [(CONTENT_FORMAT, b"\x3c")], b"out"), peer)
        (resp,) = got
        assert (resp.code, resp.payload, resp.content_format, resp.success) == (
            Code.CHANGED, b"out", 60, True)
        assert client.endpoint.outstanding_requests == 0


async def test_cancelled_caller_cancels_the_request_on_the_core(
        autojump_clock: trio.abc.Clock) -> None:
    server = FakeServer()
    with server.sock:
        addr = await server.bind()
        async with open_coap_client() as client:
            with trio.move_on_after(1.0):
                await client.get(addr, "x")
            assert client.endpoint.outstanding_requests == 0
            await trio.sleep(100)  # far past every retransmission deadline
            assert client.endpoint.stats.retransmissions == 0
            (req, _) = await server.recv()
            assert req.code == Code.GET
            with pytest.raises(trio.TooSlowError):
                await server.recv()  # nothing more was sent


async def test_observe_yields_notifications_and_deregisters_on_exit() -> None:
    server = FakeServer()
    with server.sock:
        addr = await server.bind()
        async with open_coap_client(config=CoapConfig(max_queued_notifications=4)) as client:
            async with trio.open_nursery() as nursery:
                payloads: list[bytes] = []

                async def observe() -> None:
                    async with client.observe(addr, "obs") as observation:
                        async for resp in observation:
                            payloads.append(resp.payload)
                            if len(payloads) == 3:
                                break

                nursery.start_soon(observe)
                reg, peer = await server.recv()
                assert (reg.code, reg.opt(OBSERVE)) == (Code.GET, b"")
                await server.send(Message(ACK, Code.CONTENT, reg.mid, reg.token,
                                          [(OBSERVE, b"\x01")], b"v1"), peer)
                for seq in (2, 3):
                    await server.send(Message(NON, Code.CONTENT, 100 + seq, reg.token,
                                              [(OBSERVE, bytes([seq]))], b"v%d" % seq), peer)
                dereg, _ = await server.recv()
            assert payloads == [b"v1", b"v2", b"v3"]
            assert (dereg.token, dereg.opt(OBSERVE)) == (reg.token, b"\x01")


async def test_reset_registration_raises_from_the_iterator() -> None:
    server = FakeServer()
    with server.sock:
        addr = await server.bind()
        async with open_coap_client() as client, trio.open_nursery() as nursery:
            errors: list[str] = []

            async def observe() -> None:
                async with client.observe(addr, "obs") as observation:
                    with pytest.raises(CoapRequestError) as info:
                        await observation.__anext__()
                    errors.append(info.value.args[0])

            nursery.start_soon(observe)
            reg, peer = await server.recv()
            await server.sock.sendto(bytes((0x70, 0, reg.mid >> 8, reg.mid & 0xFF)), peer)
        assert errors == ["reset"]
