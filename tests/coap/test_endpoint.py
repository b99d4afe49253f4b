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


def feed_from(ep: CoapEndpoint, peer: tuple[str, int], data: bytes,
              now: float = 0.0) -> list[Message]:
    ep.receive_datagram(data, peer, now)
    return [decode_message_untrusted(d) for d, _ in ep.datagrams_to_send(now)]


def answer_all(ep: CoapEndpoint, code: int, now: float = 0.0) -> int:
    """Respond ``code`` to every pending request; returns how many there were."""
    n = 0
    while (ev := ep.next_event()) is not None:
        if isinstance(ev, RequestReceived):
            ep.respond(ev.request_id, code, now=now)
            n += 1
    ep.datagrams_to_send(now)
    return n


def test_request_answered_with_an_error_is_not_remembered() -> None:
    ep = CoapEndpoint(rng=random.Random(0))
    data = raw_request(CON, 7, [(URI_PATH, b"nope")])
    feed(ep, data)
    assert answer_all(ep, Code.NOT_FOUND) == 1
    assert ep.dedup_size == 0
    # A duplicate is processed again and gets the same error again: idempotent for errors.
    feed(ep, data)
    assert answer_all(ep, Code.NOT_FOUND) == 1 and ep.stats.duplicates == 0
    # Refusals from inside the core leave no state either (4.02 here), and repeat.
    bad = raw_request(CON, 8, [(65001, b"x")])  # an unknown critical option (odd number)
    for _ in range(2):
        (resp,) = feed(ep, bad)
        assert resp.code == Code.BAD_OPTION
    assert ep.dedup_size == 0 and ep.get_timer() is None
    # NON requests likewise.
    feed(ep, raw_request(NON, 9, [(URI_PATH, b"nope")]))
    answer_all(ep, Code.SERVICE_UNAVAILABLE)
    assert ep.dedup_size == 0
    # A success is remembered and its duplicate answered from the cache, not processed.
    ok = raw_request(CON, 10, [(URI_PATH, b"a")])
    feed(ep, ok)
    assert answer_all(ep, Code.CONTENT) == 1 and ep.dedup_size == 1
    (again,) = feed(ep, ok)
    assert again.code == Code.CONTENT and ep.next_event() is None


def test_respond_can_override_what_is_remembered() -> None:
    ep = CoapEndpoint(rng=random.Random(0))
    # An error whose processing changed state is kept, so a retransmission gets it again ...
    failed = raw_request(CON, 1, [(URI_PATH, b"a")], b"call", code=Code.POST)
    feed(ep, failed)
    (ev,) = list(iter(ep.next_event, None))
    ep.respond(ev.request_id, Code.NOT_FOUND, b"no module", remember=True)
    ep.datagrams_to_send(0.0)
    (again,) = feed(ep, failed)
    assert (again.code, again.payload) == (Code.NOT_FOUND, b"no module")
    assert ep.next_event() is None
    # ... and a success can be left out (the handler knows it is cheap and idempotent).
    ok = raw_request(CON, 2, [(URI_PATH, b"a")])
    feed(ep, ok)
    (ev,) = list(iter(ep.next_event, None))
    ep.respond(ev.request_id, Code.CONTENT, remember=False)
    assert ep.dedup_size == 1


def test_a_flood_answered_with_errors_holds_no_state() -> None:
    ep = CoapEndpoint(CoapConfig(max_dedup_entries=1000), rng=random.Random(0))
    for n in range(20_000):
        peer = ("10.9.9.9", 40000 + n % 10)
        ep.receive_datagram(raw_request(CON, n & 0xFFFF, [(URI_PATH, b"x%d" % n)]), peer, n / 1e4)
        answer_all(ep, Code.NOT_FOUND if n % 2 else Code.BAD_REQUEST, n / 1e4)
    assert ep.dedup_size == 0 and ep.stats.dedup_evicted == 0


def test_per_peer_quota_evicts_the_peers_own_oldest() -> None:
    cfg = CoapConfig(max_dedup_entries=100, max_dedup_per_peer=3)
    ep = CoapEndpoint(cfg, rng=random.Random(0))
    greedy, agent = ("10.0.0.66", 1000), ("10.0.0.7", 5683)
    feed_from(ep, agent, raw_request(CON, 1, [(URI_PATH, b"a")]))
    answer_all(ep, Code.CHANGED)
    for mid in range(5):
        feed_from(ep, greedy, raw_request(CON, mid, [(URI_PATH, b"a")]), now=mid)
        answer_all(ep, Code.CHANGED, mid)
    assert ep.dedup_size == 4 and ep.stats.dedup_evicted == 2
    # The greedy peer lost its two oldest: a duplicate of mid 0 is processed again ...
    feed_from(ep, greedy, raw_request(CON, 0, [(URI_PATH, b"a")]), now=5)
    assert answer_all(ep, Code.CHANGED, 5) == 1
    # ... its newest are still remembered, and so is the other peer's entry.
    (resp,) = feed_from(ep, greedy, raw_request(CON, 4, [(URI_PATH, b"a")]), now=5)
    (resp2,) = feed_from(ep, agent, raw_request(CON, 1, [(URI_PATH, b"a")]), now=5)
    assert resp.code == resp2.code == Code.CHANGED and ep.next_event() is None


def test_full_table_evicts_the_biggest_holder_and_never_refuses() -> None:
    # 10 entries in all, 6 per peer (a peer holding 3 or more is a candidate for eviction).
    cfg = CoapConfig(max_dedup_entries=10, max_dedup_per_peer=6)
    ep = CoapEndpoint(cfg, rng=random.Random(0))
    now = 0.0

    def ok(peer: tuple[str, int], mid: int) -> None:
        nonlocal now
        now += 1.0
        assert feed_from(ep, peer, raw_request(CON, mid, [(URI_PATH, b"a")]), now) == []
        assert answer_all(ep, Code.CHANGED, now) == 1  # admitted, never 5.03

    agent = ("10.0.0.7", 5683)
    big, small = ("10.0.0.66", 1), ("10.0.0.66", 2)
    ok(agent, 1)
    ok(agent, 2)
    for mid in range(6):
        ok(big, mid)
    ok(small, 0)
    ok(small, 1)
    assert ep.dedup_size == 10
    # Full: the agent's new request evicts the oldest entry of the biggest holder.
    ok(agent, 3)
    assert ep.dedup_size == 10 and ep.stats.dedup_evicted == 1
    dedup = ep._messages.dedup
    assert (big, 0) not in dedup and (agent, 1) in dedup and (small, 0) in dedup
    for mid in (4, 5, 6, 7):
        ok(agent, mid)
    # Each eviction took from whichever of the two held more, so they even out; the peer
    # holding little (below half the quota) was never touched.
    a, b = ep._messages.dedup.peer_count(agent), ep._messages.dedup.peer_count(big)
    assert a + b == 8 and abs(a - b) <= 2 and ep._messages.dedup.peer_count(small) == 2
    # When nobody holds much, the oldest entry of all is evicted.
    cfg = CoapConfig(max_dedup_entries=4, max_dedup_per_peer=100)
    ep = CoapEndpoint(cfg, rng=random.Random(0))
    for port in range(5):
        ok(("10.0.0.9", port), 1)
    assert ep.dedup_size == 4 and (("10.0.0.9", 0), 1) not in ep._messages.dedup


def test_dedup_entries_expire_after_exchange_lifetime_on_a_fake_clock() -> None:
    ep = CoapEndpoint(rng=random.Random(0))
    life = ep.config.exchange_lifetime
    feed(ep, raw_request(CON, 1, [(URI_PATH, b"a")]), 0.0)
    answer_all(ep, Code.CHANGED)
    feed(ep, raw_request(CON, 2, [(URI_PATH, b"a")]), 10.0)
    answer_all(ep, Code.CHANGED, 10.0)
    # Expiry is batched: the timer fires a little after the oldest entry is due.
    assert ep.get_timer() == pytest.approx(life + 1.0)
    ep.handle_timer(life + 1.0)
    assert ep.dedup_size == 1
    (resp,) = feed(ep, raw_request(CON, 2, [(URI_PATH, b"a")]), life + 1.0)
    assert resp.code == Code.CHANGED  # still remembered
    ep.handle_timer(life + 10.0)
    assert ep.dedup_size == 0 and ep.get_timer() is None


def test_slow_handler_keeps_its_empty_ack_even_if_the_answer_is_an_error() -> None:
    ep = CoapEndpoint(rng=random.Random(0))
    data = raw_request(CON, 3, [(URI_PATH, b"slow")])
    feed(ep, data)
    (ev,) = [e for e in iter(ep.next_event, None)]
    ep.handle_timer(1.0)
    (ack,) = [decode_message_untrusted(d) for d, _ in ep.datagrams_to_send(1.0)]
    assert (ack.mtype, ack.code) == (ACK, 0)
    ep.respond(ev.request_id, Code.INTERNAL_SERVER_ERROR, now=2.0)
    ep.datagrams_to_send(2.0)
    # The exchange was acknowledged: a duplicate gets the Empty ACK, not a second run.
    (again,) = feed(ep, data, 3.0)
    assert (again.mtype, again.code) == (ACK, 0) and ep.next_event() is None


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
    old = encode_message(NON, Code.CONTENT, 999, p.client._client.requests[rid].token,
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
