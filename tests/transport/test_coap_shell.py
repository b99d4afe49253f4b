"""The shell shared by CoAP server and client: sockets, receive loop, transmit, the one timer."""

from __future__ import annotations

import random
import socket

import trio

from edgerm.coap.codes import CON, RST, Code
from edgerm.coap.events import Event, RequestFailed
from edgerm.coap.message import decode_message_untrusted, encode_empty
from edgerm.transport.coap_shell import UdpShell, open_udp_socket, resolve


class Recorder(UdpShell):
    """The smallest shell: keeps the core's events instead of acting on them."""

    def __init__(self) -> None:
        super().__init__(None, random.Random(4))
        self.events: list[Event] = []

    def _process_events(self) -> None:
        while (event := self.endpoint.next_event()) is not None:
            self.events.append(event)

    async def run(self, nursery: trio.Nursery) -> socket.socket:
        sock = open_udp_socket(socket.AF_INET, ("127.0.0.1", 0))
        self._sockets[socket.AF_INET] = sock
        nursery.start_soon(self._receive_loop, sock)
        nursery.start_soon(self._timer_loop)
        return sock


def raw_socket() -> socket.socket:
    raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    raw.bind(("127.0.0.1", 0))
    raw.setblocking(False)
    return raw


def drain(raw: socket.socket) -> list[bytes]:
    got = []
    while True:
        try:
            got.append(raw.recv(2048))
        except BlockingIOError:
            return got


async def test_resolve_literals_without_the_resolver_and_names_with_it() -> None:
    assert await resolve("127.0.0.1", 5683) == (socket.AF_INET, ("127.0.0.1", 5683))
    assert await resolve("::1", 5683) == (socket.AF_INET6, ("::1", 5683, 0, 0))
    family, sockaddr = await resolve("localhost", 5683)
    assert family in (socket.AF_INET, socket.AF_INET6) and sockaddr[1] == 5683


def test_sockets_are_non_blocking_and_the_wildcard_v6_one_is_dual_stack() -> None:
    with open_udp_socket(socket.AF_INET, ("127.0.0.1", 0)) as sock:
        assert not sock.getblocking() and sock.getsockname()[1] != 0
    with open_udp_socket(socket.AF_INET6, ("::", 0, 0, 0)) as sock:
        assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 0


async def test_receive_loop_feeds_the_core_and_sends_its_answer(nursery: trio.Nursery) -> None:
    shell = Recorder()
    sock = await shell.run(nursery)
    with raw_socket() as raw:
        raw.sendto(encode_empty(CON, 4321), sock.getsockname())  # CoAP ping
        with trio.fail_after(5):
            await trio.lowlevel.wait_readable(raw)
        pong = decode_message_untrusted(raw.recv(2048))
        assert (pong.mtype, pong.mid) == (RST, 4321)
    assert shell.endpoint.stats.received == 1


async def test_timer_loop_retransmits_and_reports_the_give_up(
        autojump_clock: trio.abc.Clock, nursery: trio.Nursery) -> None:
    shell = Recorder()
    await shell.run(nursery)
    with raw_socket() as silent:
        rid = shell.endpoint.request(silent.getsockname(), Code.GET, ["x"])
        start = trio.current_time()
        shell._transmit()  # arms the one timer from get_timer()
        with trio.fail_after(200):
            while not shell.events:
                await trio.sleep(1)
        assert 62 <= trio.current_time() - start <= 94  # 31 x ACK_TIMEOUT x U(1, 1.5)
        copies = drain(silent)
    assert len(copies) == 5 and len(set(copies)) == 1  # 1 + MAX_RETRANSMIT, same bytes
    (failed,) = shell.events
    assert isinstance(failed, RequestFailed) and (failed.request_id, failed.reason) == (
        rid, "timeout")
    assert shell.endpoint.get_timer() is None


async def test_datagram_without_a_socket_of_its_family_is_counted_not_raised() -> None:
    shell = Recorder()
    shell.endpoint.request(("::1", 9, 0, 0), Code.GET, ["x"], confirmable=False)
    shell._transmit()  # no socket at all yet
    assert shell.shell_stats.send_errors == 1
    with raw_socket() as raw:
        shell._sockets[socket.AF_INET] = open_udp_socket(socket.AF_INET, ("127.0.0.1", 0))
        shell._sockets[socket.AF_INET6] = open_udp_socket(socket.AF_INET6, ("::1", 0, 0, 0))
        try:
            shell.endpoint.request(raw.getsockname(), Code.GET, ["y"], confirmable=False)
            shell._transmit()  # two sockets: the one of the peer's family is used
        finally:
            shell._close_sockets()
        assert shell.shell_stats.send_errors == 1 and len(drain(raw)) == 1
