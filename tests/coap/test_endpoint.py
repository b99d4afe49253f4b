"""Message-layer tests on the sans-IO endpoint: hand-held clock, no sockets (aioquic style)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from edgerm.coap import (
    CoapConfig,
    CoapEndpoint,
    Code,
    ObserverGone,
    RequestFailed,
    RequestReceived,
    ResponseReceived,
)
from edgerm.coap.codes import ACK, CON, NON, RST
from edgerm.coap.message import Message, decode_message_untrusted, encode_message
from edgerm.coap.options import BLOCK1, BLOCK2, OBSERVE, SIZE1, URI_PATH, BlockValue

CLIENT = ("10.0.0.1", 5683)
SERVER = ("10.0.0.2", 5683)


class Pair:
    """A client and a server endpoint joined by a perfect network unless told otherwise."""

    def __init__(self, client_cfg: CoapConfig | None = None,
                 server_cfg: CoapConfig | None = None) -> None:
        self.client = CoapEndpoint(client_cfg, rng=random.Random(1))
        self.server = CoapEndpoint(server_cfg, rng=random.Random(2))
        self.now = 0.0

    def c2s(self) -> list[bytes]:
        data = [d for d, _ in self.client.datagrams_to_send(self.now)]
        for d in data:
            self.server.receive_datagram(d, CLIENT, self.now)
        return data

    def s2c(self) -> list[bytes]:
        data = [d for d, _ in self.server.datagrams_to_send(self.now)]
        for d in data:
            self.client.receive_datagram(d, SERVER, self.now)
        return data

    def roundtrip(self) -> None:
        for _ in range(200):
            if not (self.c2s() or self.s2c()):
                return
        raise AssertionError("no quiescence after 200 rounds")

    def serve(self, handler) -> None:  # type: ignore[no-untyped-def]
        """Answer every pending request with handler(event) -> (code, payload)."""
        while (ev := self.server.next_event()) is not None:
            if isinstance(ev, RequestReceived):
                code, payload = handler(ev)
                self.server.respond(ev.request_id, code, payload, now=self.now)

    def events(self, ep: CoapEndpoint) -> list[Any]:
        out: list[Any] = []
        while (ev := ep.next_event()) is not None:
            out.append(ev)
        return out


def raw_request(mtype: int, mid: int, options: list[tuple[int, bytes]], payload: bytes = b"",
                token: bytes = b"\x01", code: int = Code.GET) -> bytes:
    return encode_message(mtype, code, mid, token, options, payload)


def feed(ep: CoapEndpoint, data: bytes, now: float = 0.0) -> list[Message]:
    ep.receive_datagram(data, CLIENT, now)
    return [decode_message_untrusted(d) for d, _ in ep.datagrams_to_send(now)]


# --------------------------------------------------------------------------- retransmission


def test_con_backoff_follows_rfc7252_section_4_8() -> None:
    p = Pair()
    rid = p.client.request(SERVER, Code.POST, ["a"], b"x")
    first = p.client.datagrams_to_send(0.0)
    assert len(first) == 1
    deadlines = []
    sends = 1
    now = 0.0
    while True:
        timer = p.client.get_timer()
        assert timer is not None
        deadlines.append(timer)
        now = timer
        p.client.handle_timer(now)
        sent = p.client.datagrams_to_send(now)
        if not sent:
            break
        assert sent[0][0] == first[0][0]  # a retransmission is the same bytes
        sends += 1
    assert sends == 5  # 1 + MAX_RETRANSMIT
    t = deadlines[0]
    assert 2.0 <= t <= 3.0  # ACK_TIMEOUT * U(1, ACK_RANDOM_FACTOR)
    gaps = [b - a for a, b in zip([0.0] + deadlines, deadlines, strict=False)]
    assert gaps == pytest.approx([t, 2 * t, 4 * t, 8 * t, 16 * t])
    assert deadlines[-1] == pytest.approx(31 * t)  # <= MAX_TRANSMIT_WAIT (93 s)
    events = p.events(p.client)
    assert len(events) == 1 and isinstance(events[0], RequestFailed)
    assert events[0].request_id == rid and events[0].reason == "timeout"
    assert p.client.get_timer() is None


def test_lost_ack_is_recovered_by_dedup_cache() -> None:
    p = Pair()
    p.client.request(SERVER, Code.POST, ["a"], b"hello")
    p.c2s()
    p.serve(lambda ev: (Code.CHANGED, ev.payload[::-1]))
    lost = p.server.datagrams_to_send(0.0)  # the piggybacked ACK is lost
    assert len(lost) == 1
    p.now = p.client.get_timer() or 0.0
    p.client.handle_timer(p.now)
    p.c2s()  # retransmission reaches the server
    assert p.server.next_event() is None  # not delivered twice
    assert p.server.stats.duplicates == 1
    resent = p.server.datagrams_to_send(p.now)
    assert [d for d, _ in resent] == [d for d, _ in lost]  # the cached response, byte for byte
    for d, _ in resent:
        p.client.receive_datagram(d, SERVER, p.now)
    (ev,) = p.events(p.client)
    assert isinstance(ev, ResponseReceived) and ev.payload == b"olleh"


def test_duplicate_while_handler_runs_is_ignored() -> None:
    p = Pair()
    data = raw_request(CON, 9, [(URI_PATH, b"x")])
    assert feed(p.server, data) == []
    assert feed(p.server, data) == []
    assert len(p.events(p.server)) == 1


def test_slow_handler_gets_empty_ack_then_separate_response() -> None:
    p = Pair()
    p.client.request(SERVER, Code.GET, ["slow"])
    p.c2s()
    (ev,) = p.events(p.server)
    assert p.server.get_timer() == pytest.approx(1.0)  # empty_ack_delay
    p.now = 1.0
    p.server.handle_timer(p.now)
    (ack,) = [decode_message_untrusted(d) for d, _ in p.server.datagrams_to_send(p.now)]
    assert (ack.mtype, ack.code) == (ACK, 0)
    p.client.receive_datagram(ack.encode(), SERVER, p.now)
    assert p.client.next_event() is None
    p.now = 5.0  # after the client would have retransmitted without the ACK
    p.client.handle_timer(p.now)
    assert p.client.datagrams_to_send(p.now) == []  # the empty ACK stopped retransmission
    p.server.respond(ev.request_id, Code.CONTENT, b"late")
    (sep,) = [decode_message_untrusted(d) for d, _ in p.server.datagrams_to_send(p.now)]
    assert sep.mtype == CON and sep.code == Code.CONTENT and sep.mid != ack.mid
    # First copy is lost; the server retransmits the separate response.
    p.now = p.server.get_timer() or 0.0
    p.server.handle_timer(p.now)
    p.s2c()
    p.c2s()  # the client's ACK
    remaining = p.server.get_timer()
    assert remaining is None or remaining > 200  # only dedup expiry left
    (resp,) = p.events(p.client)
    assert isinstance(resp, ResponseReceived) and resp.payload == b"late"


def test_nstart_free_concurrent_requests_match_by_token() -> None:
    p = Pair()
    ids = [p.client.request(SERVER, Code.POST, ["a"], bytes([i]), token_length=1)
           for i in range(20)]
    p.c2s()
    p.serve(lambda ev: (Code.CHANGED, ev.payload * 2))
    p.s2c()
    got = {ev.request_id: ev.payload for ev in p.events(p.client)}
    assert got == {rid: bytes([i]) * 2 for i, rid in enumerate(ids)}


def test_client_sends_only_the_options_asked_for() -> None:
    p = Pair()
    p.client.request(SERVER, Code.POST, ["a"], b"\xa1\x01\x02" + b"\x00" * 10,
                     content_format=60, token_length=1)
    (data,) = [d for d, _ in p.client.datagrams_to_send(0.0)]
    msg = decode_message_untrusted(data)
    assert [n for n, _ in msg.options] == [URI_PATH, 12]
    assert len(data) == 4 + 1 + 2 + 2 + 1 + 13 <= 32


# --------------------------------------------------------------------------- bad input


def test_bad_messages_get_the_rfc_answer() -> None:
    ep = CoapEndpoint(rng=random.Random(0))
    # Format error in a CON: RST with its mid. In a NON: silence.
    (rst,) = feed(ep, bytes((0x49, 1, 0x12, 0x34)) + b"\x00" * 9)
    assert (rst.mtype, rst.code, rst.mid) == (RST, 0, 0x1234)
    assert feed(ep, bytes((0x59, 1, 0x12, 0x35)) + b"\x00" * 9) == []
    # Version 2: silently ignored even as CON.
    assert feed(ep, bytes((0x80, 1, 0, 1))) == []
    # CoAP ping.
    (pong,) = feed(ep, bytes((0x40, 0, 0, 7)))
    assert (pong.mtype, pong.mid) == (RST, 7)
    # Reserved code class 1 in a CON: rejected.
    (rst2,) = feed(ep, raw_request(CON, 8, [], code=0x21))
    assert rst2.mtype == RST
    assert ep.stats.malformed == 4
    assert ep.next_event() is None


def test_unknown_critical_option_is_4_02_and_elective_is_ignored() -> None:
    ep = CoapEndpoint(rng=random.Random(0))
    (resp,) = feed(ep, raw_request(CON, 1, [(URI_PATH, b"a"), (2049, b"x")]))
    assert (resp.mtype, resp.code, resp.mid) == (ACK, Code.BAD_OPTION, 1)
    assert feed(ep, raw_request(CON, 2, [(URI_PATH, b"a"), (2048, b"x")])) == []
    ev = ep.next_event()
    assert isinstance(ev, RequestReceived) and ev.path == ("a",)
    (resp,) = feed(ep, raw_request(CON, 3, [(BLOCK2, b"\x0f")]))  # SZX 7 -> bad Block2
    assert resp.code == Code.BAD_OPTION
    (resp,) = feed(ep, raw_request(CON, 4, [(35, b"coap://x/")]))
    assert resp.code == Code.PROXYING_NOT_SUPPORTED
    (resp,) = feed(ep, raw_request(NON, 5, [(URI_PATH, b"\xff\xfe")]))
    assert (resp.mtype, resp.code) == (NON, Code.BAD_REQUEST)


def test_payload_over_limit_is_4_13_with_size1() -> None:
    ep = CoapEndpoint(CoapConfig(max_request_payload=100), rng=random.Random(0))
    (resp,) = feed(ep, raw_request(CON, 1, [(URI_PATH, b"a")], b"x" * 101, code=Code.POST))
    assert resp.code == Code.REQUEST_ENTITY_TOO_LARGE and resp.opt(SIZE1) == b"\x64"
    # Oversized datagram.
    ep2 = CoapEndpoint(CoapConfig(max_datagram_size=200), rng=random.Random(0))
    (resp,) = feed(ep2, raw_request(CON, 1, [(URI_PATH, b"a")], b"x" * 300, code=Code.POST))
    assert resp.code == Code.REQUEST_ENTITY_TOO_LARGE and resp.opt(BLOCK1) is not None


def test_dedup_cache_is_bounded_and_refuses_with_5_03() -> None:
    ep = CoapEndpoint(CoapConfig(max_dedup_entries=3), rng=random.Random(0))
    for mid in range(3):
        assert feed(ep, raw_request(CON, mid, [(URI_PATH, b"a")])) == []
    (resp,) = feed(ep, raw_request(CON, 3, [(URI_PATH, b"a")]))
    assert resp.code == Code.SERVICE_UNAVAILABLE and ep.stats.dedup_full == 1
    # After EXCHANGE_LIFETIME the entries expire and requests are accepted again.
    later = ep.config.exchange_lifetime + 2
    ep.handle_timer(later)
    assert ep.dedup_size == 0
    # The three requests nobody answered got Empty ACKs meanwhile (separate response pending).
    acks = [decode_message_untrusted(d) for d, _ in ep.datagrams_to_send(later)]
    assert [(m.mtype, m.code, m.mid) for m in acks] == [(ACK, 0, 0), (ACK, 0, 1), (ACK, 0, 2)]
    assert feed(ep, raw_request(CON, 4, [(URI_PATH, b"a")]), later) == []


# --------------------------------------------------------------------------- block-wise


def test_block2_download_at_64_bytes_from_one_representation() -> None:
    p = Pair()
    body = bytes(range(256)) * 24  # 6 KiB
    calls = []

    def handler(ev: RequestReceived) -> tuple[int, bytes]:
        calls.append(ev)
        return Code.CONTENT, body

    p.client.request(SERVER, Code.GET, ["s"], block_size=64)
    for _ in range(200):
        p.c2s()
        p.serve(handler)
        if not p.s2c():
            break
    (ev,) = p.events(p.client)
    assert isinstance(ev, ResponseReceived) and ev.payload == body
    assert len(calls) == 1  # later blocks came from the cache
    assert p.server.stats.received == 96


def test_block1_upload_with_server_negotiating_smaller_blocks() -> None:
    p = Pair(server_cfg=CoapConfig(block_size=64))
    body = bytes(range(250)) * 24
    p.client.request(SERVER, Code.POST, ["up"], body)  # client starts at 1024
    p.roundtrip()
    (ev,) = p.events(p.server)
    assert isinstance(ev, RequestReceived) and ev.payload == body
    p.server.respond(ev.request_id, Code.CHANGED, b"ok")
    p.roundtrip()
    (resp,) = p.events(p.client)
    assert isinstance(resp, ResponseReceived) and resp.code == Code.CHANGED
    # 1 block of 1024, then the rest at 64 bytes.
    assert p.server.stats.received == 1 + (len(body) - 1024 + 63) // 64


def block1(num: int, more: bool, szx: int = 2) -> tuple[int, bytes]:
    return (BLOCK1, BlockValue(num, more, szx).encode())


def test_block1_abuse() -> None:
    ep = CoapEndpoint(CoapConfig(max_request_payload=256, max_block1_transfers=1),
                      rng=random.Random(0))
    path = (URI_PATH, b"up")
    (r,) = feed(ep, raw_request(CON, 1, [path, block1(0, True)], b"a" * 64, code=Code.POST))
    assert r.code == Code.CONTINUE
    # Out of order: block 2 while expecting 1.
    (r,) = feed(ep, raw_request(CON, 2, [path, block1(2, True)], b"a" * 64, code=Code.POST))
    assert r.code == Code.REQUEST_ENTITY_INCOMPLETE
    # Endless blocks: stopped at the size limit.
    codes = []
    for i in range(10):
        (r,) = feed(ep, raw_request(CON, 10 + i, [path, block1(i, True)], b"b" * 64,
                                    code=Code.POST))
        codes.append(r.code)
        if r.code != Code.CONTINUE:
            break
    assert codes == [Code.CONTINUE] * 4 + [Code.REQUEST_ENTITY_TOO_LARGE]
    # Non-final short block.
    (r,) = feed(ep, raw_request(CON, 30, [path, block1(0, True)], b"c" * 10, code=Code.POST))
    assert r.code == Code.BAD_REQUEST
    # Concurrent uploads bounded.
    (r,) = feed(ep, raw_request(CON, 40, [path, block1(0, True)], b"d" * 64, code=Code.POST))
    assert r.code == Code.CONTINUE
    (r,) = feed(ep, raw_request(CON, 41, [(URI_PATH, b"other"), block1(0, True)], b"d" * 64,
                                code=Code.POST))
    assert r.code == Code.SERVICE_UNAVAILABLE
    # An idle upload expires.
    ep.handle_timer(ep.config.block_lifetime + 1)
    (r,) = feed(ep, raw_request(CON, 42, [path, block1(1, True)], b"d" * 64, code=Code.POST),
                ep.config.block_lifetime + 1)
    assert r.code == Code.REQUEST_ENTITY_INCOMPLETE
    assert ep.next_event() is None


# --------------------------------------------------------------------------- Observe


def register(p: Pair, path: str = "c") -> tuple[int, int]:
    rid = p.client.request(SERVER, Code.FETCH, [path], b"auth", observe=True)
    p.c2s()
    (ev,) = p.events(p.server)
    assert isinstance(ev, RequestReceived) and ev.observe == 0
    oid = p.server.respond(ev.request_id, Code.CONTENT, b"hello", observe=True)
    assert oid is not None
    p.roundtrip()
    (first,) = p.events(p.client)
    assert isinstance(first, ResponseReceived) and first.observing
    return rid, oid


def test_observe_notifications_in_order_and_stale_ones_dropped() -> None:
    p = Pair()
    rid, oid = register(p)
    seqs: list[int] = []
    for i in range(5):
        assert p.server.notify(oid, payload=b"cmd%d" % i)
        p.roundtrip()
        (ev,) = p.events(p.client)
        assert isinstance(ev, ResponseReceived) and ev.request_id == rid
        assert ev.payload == b"cmd%d" % i
        assert ev.observe is not None
        seqs.append(ev.observe)
    assert seqs == sorted(seqs)
    # A reordered (older) notification is ACKed but not delivered.
    old = encode_message(NON, Code.CONTENT, 999, p.client._requests[rid].token,
                         [(OBSERVE, (seqs[0] or 0).to_bytes(3, "big"))], b"old")
    p.client.receive_datagram(old, SERVER, p.now)
    assert p.client.next_event() is None


def test_large_notification_is_completed_block_wise() -> None:
    p = Pair()
    _, oid = register(p)
    big = bytes(range(200)) * 20
    p.server.notify(oid, payload=big)
    p.roundtrip()
    (ev,) = p.events(p.client)
    assert isinstance(ev, ResponseReceived) and ev.payload == big and ev.observing


def test_observer_gone_on_rst() -> None:
    p = Pair()
    rid, oid = register(p)
    p.client.cancel_request(rid)  # forget locally; the next notification gets RST
    p.server.notify(oid, payload=b"x")
    p.roundtrip()
    (gone,) = p.events(p.server)
    assert isinstance(gone, ObserverGone) and gone.reason == "reset"
    assert not p.server.notify(oid, payload=b"y")


def test_observer_gone_on_unacknowledged_con_notification() -> None:
    p = Pair()
    _, oid = register(p)
    p.server.notify(oid, payload=b"x")
    p.server.datagrams_to_send(p.now)  # the agent is gone: nothing arrives
    retransmits = 0
    while (t := p.server.get_timer()) is not None and t < 100:
        p.server.handle_timer(t)
        retransmits += len(p.server.datagrams_to_send(t))
        events = p.events(p.server)
        if events:
            (gone,) = events
            assert isinstance(gone, ObserverGone) and gone.reason == "timeout"
            break
    else:
        raise AssertionError("observer never declared gone")
    assert retransmits == 4 and p.server.observer_count == 0


def test_deregister_with_observe_1() -> None:
    p = Pair()
    rid, oid = register(p)
    p.client.cancel_request(rid, deregister=True)
    p.c2s()
    events = p.events(p.server)
    assert isinstance(events[0], ObserverGone) and events[0].reason == "deregistered"
    assert isinstance(events[1], RequestReceived) and events[1].observe == 1
    p.server.respond(events[1].request_id, Code.CONTENT, b"bye")
    p.roundtrip()
    assert p.client.next_event() is None  # the deregistration's answer is swallowed
    assert p.client.outstanding_requests == 0


def test_observer_limit_falls_back_to_plain_response() -> None:
    p = Pair(server_cfg=CoapConfig(max_observers=1))
    register(p)
    p.client.request(SERVER, Code.GET, ["c"], observe=True)
    p.c2s()
    (ev,) = p.events(p.server)
    assert p.server.respond(ev.request_id, Code.CONTENT, b"no", observe=True) is None
    p.roundtrip()
    (resp,) = p.events(p.client)
    assert isinstance(resp, ResponseReceived) and not resp.observing and resp.observe is None


def test_replacing_an_unacknowledged_notification_keeps_the_backoff() -> None:
    p = Pair()
    _, oid = register(p)
    p.server.notify(oid, payload=b"1")
    p.server.datagrams_to_send(p.now)
    t = p.server.get_timer() or 0.0
    p.server.handle_timer(t)
    p.server.datagrams_to_send(t)  # first retransmission, lost
    p.server.notify(oid, payload=b"2")
    (d,) = p.server.datagrams_to_send(t)
    assert decode_message_untrusted(d[0]).payload == b"2"
    assert (p.server.get_timer() or 0.0) - t >= 4.0  # inherits count 1 -> 2 x ACK_TIMEOUT
