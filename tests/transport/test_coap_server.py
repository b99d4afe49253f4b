"""The Trio CoAP server: Site routing, handler results rendered, workers, Observation handles."""

from __future__ import annotations

import socket
from collections.abc import Sequence

import pytest
import trio

from edgerm.coap import CoapConfig, Code, parse_links
from edgerm.coap.codes import ACK, CON
from edgerm.coap.message import decode_message_untrusted, encode_message
from edgerm.coap.options import OBSERVE, URI_PATH
from edgerm.transport.coap_server import (
    CoapServer,
    Observation,
    ObservationGone,
    Request,
    Response,
    Site,
)


async def answer(req: Request) -> Response:
    return Response(Code.CONTENT, "/".join(req.path).encode())


def test_site_prefers_exact_routes_then_longer_prefixes() -> None:
    site = Site()

    async def exact(req: Request) -> Response:
        return Response()

    async def short(req: Request) -> Response:
        return Response()

    async def long(req: Request) -> Response:
        return Response()

    site.add("m", short, prefix=True)
    site.add("m/x", long, prefix=True)
    site.add("m/x/e", exact)
    resolve = site.resolve
    assert [r.handler if r else None for r in (
        resolve(("m", "x", "e")), resolve(("m", "x", "e", "f")), resolve(("m", "y")),
        resolve(("m",)), resolve(("n",)))] == [exact, long, short, short, None]


def test_links_describe_the_routes_and_follow_additions() -> None:
    site = Site()
    site.add("a", answer, rt="edgerm.agent", ct=60, observable=True)
    links = {link.target: link.attrs for link in parse_links(site.links_payload().decode())}
    assert links == {"/a": {"rt": "edgerm.agent", "ct": 60, "obs": True}}
    site.add("b", answer, title="B")
    assert {link.target for link in parse_links(site.links_payload().decode())} == {"/a", "/b"}


class Raw:
    """A plain UDP socket speaking CoAP by hand to the server under test."""

    def __init__(self, server: tuple[str, int]) -> None:
        self.server = server
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.mid = 0

    async def ask(self, path: str, code: int = Code.GET,
                  options: Sequence[tuple[int, bytes]] = ()) -> tuple[int, bytes]:
        self.mid += 1
        opts = sorted(list(options) + [(URI_PATH, s.encode()) for s in path.split("/")])
        self.sock.sendto(encode_message(CON, code, self.mid, b"tk", opts, b""), self.server)
        with trio.fail_after(10):
            while True:
                await trio.lowlevel.wait_readable(self.sock)
                msg = decode_message_untrusted(self.sock.recv(4096))
                # Piggybacked on the ACK, or separate after an Empty ACK (slow handler).
                if msg.code and (msg.mtype != ACK or msg.mid == self.mid):
                    return msg.code, msg.payload


async def test_handler_results_are_rendered_and_counted(nursery: trio.Nursery) -> None:
    site = Site()
    site.add("ok", answer, methods=(Code.GET,))

    async def wrong(req: Request) -> Response:
        return b"not a Response"  # type: ignore[return-value]

    site.add("wrong", wrong)
    server = CoapServer(site)
    addr = await nursery.start(server.serve, "127.0.0.1", 0)
    raw = Raw(addr)
    with raw.sock:
        assert await raw.ask("ok") == (Code.CONTENT, b"ok")
        assert (await raw.ask("ok", Code.POST))[0] == Code.METHOD_NOT_ALLOWED
        assert (await raw.ask("nowhere"))[0] == Code.NOT_FOUND
        code, links = await raw.ask(".well-known/core")
        assert code == Code.CONTENT and b"</ok>" in links
        assert (await raw.ask("wrong"))[0] == Code.INTERNAL_SERVER_ERROR
    assert server.shell_stats.handler_errors == 1


async def test_overrunning_handler_is_answered_503_and_its_worker_serves_on(
        autojump_clock: trio.abc.Clock, nursery: trio.Nursery) -> None:
    site = Site()
    site.add("ok", answer)

    async def stuck(req: Request) -> Response:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    site.add("stuck", stuck)
    server = CoapServer(site, config=CoapConfig(handler_workers=1, handler_timeout=2.0))
    addr = await nursery.start(server.serve, "127.0.0.1", 0)
    raw = Raw(addr)
    with raw.sock:
        assert await raw.ask("stuck") == (Code.SERVICE_UNAVAILABLE, b"handler timed out")
        assert await raw.ask("ok") == (Code.CONTENT, b"ok")  # the only worker is back
    assert server.shell_stats.handler_timeouts == 1


async def test_observation_handle_lives_until_the_observer_is_gone(
        nursery: trio.Nursery) -> None:
    holder: list[Observation] = []

    async def observable(req: Request) -> Response:
        assert req.observation is not None
        holder.append(req.observation)
        return Response(Code.CONTENT, b"v0", observe=True)

    site = Site()
    site.add("obs", observable)
    server = CoapServer(site)
    addr = await nursery.start(server.serve, "127.0.0.1", 0)
    raw = Raw(addr)
    with raw.sock:
        assert await raw.ask("obs", options=[(OBSERVE, b"")]) == (Code.CONTENT, b"v0")
        (obs,) = holder
        assert not obs.gone and server.observer_count == 1
        await obs.notify(b"v1", confirmable=False)
        with trio.fail_after(10):
            await trio.lowlevel.wait_readable(raw.sock)
        note = decode_message_untrusted(raw.sock.recv(4096))
        assert (note.payload, note.token) == (b"v1", b"tk")
        obs.cancel()
        assert await obs.wait_gone() == "ended" and server.observer_count == 0
        with pytest.raises(ObservationGone):
            await obs.notify(b"v2")


async def test_a_request_with_an_oscore_option_goes_through_the_site_hook(
        nursery: trio.Nursery) -> None:
    """`Site.oscore` sees every request carrying an OSCORE option before routing: it refuses
    (its Response goes out as is) or returns the inner request, routed by its own path, whose
    `protect` turns every answer into the outer one (inline, queued, or no route at all). A
    toy "protection" here: the first byte names the inner path, the answer's code goes in
    its payload, reversed."""
    site = Site()
    inline_seen: list[bytes] = []

    def inline(req: Request) -> Response | None:
        inline_seen.append(req.payload)
        return Response(Code.CHANGED, b"inline:" + req.payload) if req.payload == b"hb" else None

    async def handler(req: Request) -> Response:
        return Response(Code.CONTENT, b"queued:" + req.payload)

    site.add("x", handler, methods=(Code.POST,), inline=inline)

    def hook(req: Request) -> Request | Response:
        if req.payload == b"bad":
            return Response(Code.UNAUTHORIZED, b"refused")
        inner = req.inner(Code.POST, (req.payload[:1].decode(),), req.payload[1:], None, [])
        inner.protect = lambda r: Response(Code.CHANGED, bytes((r.code,)) + r.payload[::-1],
                                           None, [(9, b"")], remember=r.remember)
        return inner

    site.oscore = hook
    addr = await nursery.start(CoapServer(site).serve, "127.0.0.1", 0)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)

        def ask(payload: bytes, mid: int) -> tuple[int, list[tuple[int, bytes]], bytes]:
            sock.sendto(encode_message(CON, Code.POST, mid, b"\x01", [(9, b"\x09\x01\x05")],
                                       payload), addr)
            msg = decode_message_untrusted(sock.recv(2048))
            return msg.code, msg.options, msg.payload

        assert await trio.to_thread.run_sync(ask, b"xhb", 1) == (
            Code.CHANGED, [(9, b"")], bytes((Code.CHANGED,)) + b"inline:hb"[::-1])
        assert await trio.to_thread.run_sync(ask, b"xyi", 2) == (
            Code.CHANGED, [(9, b"")], bytes((Code.CONTENT,)) + b"queued:yi"[::-1])
        assert await trio.to_thread.run_sync(ask, b"zab", 3) == (
            Code.CHANGED, [(9, b"")], bytes((Code.NOT_FOUND,)))
        assert await trio.to_thread.run_sync(ask, b"bad", 4) == (
            Code.UNAUTHORIZED, [], b"refused")
    assert inline_seen == [b"hb", b"yi"]
