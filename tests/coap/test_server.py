"""The server side alone over a message layer: requests, responses, observers, notifications."""

from __future__ import annotations

import itertools
import random
from collections import deque

import pytest

from edgerm.coap.codes import ACK, CON, NON, RST, Code
from edgerm.coap.config import CoapConfig
from edgerm.coap.events import Event, ObserverGone, RequestReceived
from edgerm.coap.message import Message, decode_message_untrusted, encode_message
from edgerm.coap.message_layer import KIND_SEPARATE, CoapStats, MessageLayer, Pending
from edgerm.coap.options import BLOCK2, OBSERVE, SIZE2, URI_PATH, decode_block
from edgerm.coap.server import ServerSide

CLIENT = ("10.0.0.1", 40000)


class Server:
    """A ServerSide with the message layer and event queue an endpoint would give it."""

    def __init__(self, **cfg: float) -> None:
        rng = random.Random(5)
        self.ml = MessageLayer(CoapConfig(**cfg), rng, CoapStats())  # type: ignore[arg-type]
        self.events: deque[Event] = deque()
        self.side = ServerSide(self.ml.config, rng, self.ml, self.events, itertools.count(1))

    def receive(self, mtype: int, mid: int, path: str = "r", *, token: bytes = b"\x07",
                options: list[tuple[int, bytes]] | None = None, now: float = 0.0) -> None:
        opts = [(URI_PATH, seg.encode()) for seg in path.split("/")] + (options or [])
        opts.sort(key=lambda o: o[0])
        data = encode_message(mtype, Code.GET, mid, token, opts, b"")
        if not self.ml.answered_duplicate((CLIENT, mid), CLIENT):  # as the endpoint does
            self.side.on_request(decode_message_untrusted(data), CLIENT, now, len(data))

    def sent(self, now: float = 0.0) -> list[Message]:
        out = self.ml.datagrams_to_send(now)
        assert all(addr == CLIENT for _, addr in out)
        return [decode_message_untrusted(d) for d, _ in out]

    def request_event(self) -> RequestReceived:
        ev = self.events.popleft()
        assert isinstance(ev, RequestReceived)
        return ev


def gone(s: Server, n: int | None = None) -> list[tuple[int, object, str]]:
    """The first ``n`` (default all) events, which must be ObserverGone, as tuples."""
    events = [s.events.popleft() for _ in range(len(s.events) if n is None else n)]
    assert all(isinstance(ev, ObserverGone) for ev in events)
    return [(ev.observation_id, ev.remote, ev.reason) for ev in events
            if isinstance(ev, ObserverGone)]


def option(msg: Message, num: int) -> bytes | None:
    return next((v for n, v in msg.options if n == num), None)


def test_quick_answer_is_piggybacked_and_kept_for_duplicates() -> None:
    s = Server()
    s.receive(CON, 100, "a/b")
    ev = s.request_event()
    assert (ev.request_id, ev.path, ev.confirmable, ev.remote) == (1, ("a", "b"), True, CLIENT)
    assert s.sent() == []  # nothing until the application answers
    s.side.respond(ev.request_id, Code.CONTENT, b"hi", 0)
    (ack,) = s.sent()
    assert (ack.mtype, ack.code, ack.mid, ack.token, ack.payload) == (
        ACK, Code.CONTENT, 100, b"\x07", b"hi")
    s.receive(CON, 100, "a/b")  # a retransmission of the request
    assert not s.events and [m.payload for m in s.sent()] == [b"hi"]
    with pytest.raises(Exception, match="no pending request"):
        s.side.respond(ev.request_id, Code.CONTENT)


def test_slow_answer_gets_empty_ack_then_a_separate_con_response() -> None:
    s = Server(empty_ack_delay=0.5)
    s.receive(CON, 7, now=10.0)
    ev = s.request_event()
    assert s.side.next_deadline() == 10.5
    s.side.send_empty_acks(10.49)
    assert s.sent(10.49) == []
    s.side.send_empty_acks(10.5)
    (empty,) = s.sent(10.5)
    assert (empty.mtype, empty.code, empty.mid) == (ACK, 0, 7)
    s.receive(CON, 7)  # the client's retransmission crossed our Empty ACK: ACKed again
    assert [(m.mtype, m.code) for m in s.sent()] == [(ACK, 0)]
    s.side.respond(ev.request_id, Code.CHANGED, b"late")
    (resp,) = s.sent(11.0)
    assert (resp.mtype, resp.code, resp.token, resp.payload) == (
        CON, Code.CHANGED, b"\x07", b"late")
    p = s.ml.match(Message(ACK, 0, resp.mid), CLIENT)  # retransmitted until ACKed
    assert isinstance(p, Pending) and p.kind == KIND_SEPARATE
    assert s.side.next_deadline() is None


def test_error_answer_is_not_remembered_so_a_duplicate_is_processed_again() -> None:
    s = Server()
    s.receive(NON, 3)
    s.side.respond(s.request_event().request_id, Code.NOT_FOUND)
    (resp,) = s.sent()
    assert (resp.mtype, resp.code) == (NON, Code.NOT_FOUND) and len(s.ml.dedup) == 0
    s.receive(NON, 3)
    assert s.request_event().request_id == 2


def test_unknown_critical_option_is_a_bad_option_and_leaves_no_state() -> None:
    s = Server()
    s.receive(CON, 9, options=[(2049, b"x")])  # odd = critical, not implemented
    (resp,) = s.sent()
    assert (resp.mtype, resp.code, resp.mid) == (ACK, Code.BAD_OPTION, 9)
    assert not s.events and len(s.ml.dedup) == 0 and s.ml.stats.bad_options == 1


def register(s: Server, token: bytes = b"\x07", mid: int = 1) -> int:
    s.receive(CON, mid, "obs", token=token, options=[(OBSERVE, b"")])
    ev = s.request_event()
    assert ev.observe == 0
    oid = s.side.respond(ev.request_id, Code.CONTENT, b"v0", observe=True)
    assert oid is not None and s.side.observer_count == 1
    (resp,) = s.sent()
    assert option(resp, OBSERVE) is not None
    return oid


def test_notifications_carry_fresh_sequence_numbers_and_the_registration_token() -> None:
    s = Server()
    oid = register(s, b"\x0a\x0b")
    assert s.side.notify(oid, payload=b"v1", confirmable=False)
    assert s.side.notify(oid, payload=b"v2", confirmable=True)
    n1, n2 = s.sent()  # NON goes out at once, CON when its timer is armed
    assert (n1.mtype, n1.token, n1.payload) == (NON, b"\x0a\x0b", b"v1")
    assert (n2.mtype, n2.token, n2.payload) == (CON, b"\x0a\x0b", b"v2")
    seq1 = int.from_bytes(option(n1, OBSERVE) or b"", "big")
    seq2 = int.from_bytes(option(n2, OBSERVE) or b"", "big")
    assert seq2 == (seq1 + 1) % (1 << 24)
    assert not s.events  # nobody is gone


def test_reset_notification_ends_the_observer() -> None:
    s = Server()
    oid = register(s)
    s.side.notify(oid, payload=b"v1", confirmable=True)
    (n,) = s.sent()
    p = s.ml.match(Message(RST, 0, n.mid), CLIENT)
    assert p is not None
    s.side.notification_answered(p, Message(RST, 0, n.mid))
    assert gone(s) == [(oid, CLIENT, "reset")]
    assert s.side.observer_count == 0 and not s.side.notify(oid, payload=b"v2")


def test_unacknowledged_con_notification_ends_the_observer_with_timeout() -> None:
    s = Server()
    oid = register(s)
    s.side.notify(oid, payload=b"v1", confirmable=True)
    s.sent()
    for _ in range(5):  # 4 retransmissions, then one more timeout
        assert not s.events
        s.ml.retransmit(s.ml.next_deadline() or 0.0, s.side.notification_gave_up)
    assert s.ml.stats.retransmissions == 4 and s.ml.stats.gave_up == 1
    assert gone(s) == [(oid, CLIENT, "timeout")]


def test_reset_of_a_non_notification_ends_the_observer() -> None:
    s = Server()
    oid = register(s)
    s.side.notify(oid, payload=b"v1", confirmable=False)
    (n,) = s.sent()
    assert not s.side.reset_of_non_notification(CLIENT, (n.mid + 1) & 0xFFFF)
    assert s.side.reset_of_non_notification(CLIENT, n.mid)
    assert gone(s) == [(oid, CLIENT, "reset")]


def test_observe_1_deregisters_and_still_reaches_the_application() -> None:
    s = Server()
    oid = register(s, b"\x01")
    s.receive(CON, 2, "obs", token=b"\x01", options=[(OBSERVE, b"\x01")])
    assert gone(s, 1) == [(oid, CLIENT, "deregistered")]
    assert s.request_event().observe == 1 and s.side.observer_count == 0


def test_error_notification_ends_the_observation() -> None:
    s = Server()
    oid = register(s)
    assert s.side.notify(oid, Code.NOT_FOUND, confirmable=False)
    (n,) = s.sent()
    assert n.code == Code.NOT_FOUND and option(n, OBSERVE) is None
    assert gone(s) == [(oid, CLIENT, "ended")]


def test_large_notification_goes_block_wise_from_the_cache() -> None:
    s = Server(block_size=64)
    oid = register(s)
    body = bytes(range(200))
    s.side.notify(oid, payload=body, confirmable=False)
    (n,) = s.sent()
    block = decode_block(option(n, BLOCK2) or b"")
    assert block is not None and (block.num, block.more, block.szx) == (0, True, 2)
    assert n.payload == body[:64] and option(n, SIZE2) == bytes([200])
