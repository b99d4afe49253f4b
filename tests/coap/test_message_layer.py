"""The message layer alone: ids, retransmission back-off, ACK/RST matching, dedup; fake clock."""

from __future__ import annotations

import random

import pytest

from edgerm.coap.codes import ACK, RST
from edgerm.coap.config import CoapConfig
from edgerm.coap.message import Message, decode_message_untrusted
from edgerm.coap.message_layer import (
    HOUSEKEEPING_SLACK,
    KIND_REQUEST,
    CoapStats,
    MessageLayer,
    Pending,
)

PEER = ("10.0.0.7", 5683)


def layer(**cfg: float) -> MessageLayer:
    return MessageLayer(CoapConfig(**cfg), random.Random(3), CoapStats())  # type: ignore[arg-type]


def con(ml: MessageLayer, data: bytes = b"con") -> Pending:
    p = Pending(PEER, ml.new_mid(), data, KIND_REQUEST, "ref")
    ml.add_pending(p)
    return p


def empty(mtype: int, mid: int) -> Message:
    return Message(mtype, 0, mid, b"", [], b"")


def test_message_ids_are_consecutive_and_wrap() -> None:
    ml = layer()
    ml._next_mid = 0xFFFE
    assert [ml.new_mid() for _ in range(3)] == [0xFFFE, 0xFFFF, 0]


def test_retransmission_doubles_then_gives_up_once() -> None:
    ml = layer()
    p = con(ml)
    gen = ml.timer_generation
    assert gen == 1  # scheduling a CON may make the endpoint's timer earlier
    assert ml.next_deadline() is None  # armed only when it really leaves
    assert ml.datagrams_to_send(10.0) == [(b"con", PEER)]
    first = ml.next_deadline()
    assert first is not None and 12.0 <= first <= 13.0  # now + ACK_TIMEOUT * U(1, 1.5)
    timeout = first - 10.0
    gave_up: list[Pending] = []
    now, deadlines = 10.0, []
    while (deadline := ml.next_deadline()) is not None:
        deadlines.append(deadline)
        now = deadline
        ml.retransmit(now, gave_up.append)
        if not gave_up:
            assert ml.datagrams_to_send(now) == [(b"con", PEER)]
    gaps = [b - a for a, b in zip([10.0] + deadlines, deadlines, strict=False)]
    assert gaps == pytest.approx([timeout * 2 ** i for i in range(5)])
    assert gave_up == [p] and p.done
    assert ml.stats.retransmissions == 4 and ml.stats.gave_up == 1
    assert ml.datagrams_to_send(now) == []
    assert ml.match(empty(ACK, p.mid), PEER) is None  # forgotten once given up


def test_retransmission_not_due_yet_sends_nothing() -> None:
    ml = layer()
    con(ml)
    ml.datagrams_to_send(0.0)
    ml.retransmit(1.99, lambda p: None)  # before ACK_TIMEOUT
    assert ml.datagrams_to_send(1.99) == [] and ml.stats.retransmissions == 0


def test_ack_matches_by_peer_and_mid_and_stops_retransmission() -> None:
    ml = layer()
    p = con(ml)
    ml.datagrams_to_send(0.0)
    assert ml.match(empty(ACK, p.mid), ("10.0.0.8", 5683)) is None  # another peer
    assert ml.match(empty(ACK, (p.mid + 1) & 0xFFFF), PEER) is None  # another id
    assert ml.match(empty(RST, p.mid), PEER) is p and p.done
    assert ml.match(empty(ACK, p.mid), PEER) is None  # matched once
    assert ml.next_deadline() is None  # its timer entry is skipped
    ml.retransmit(1000.0, lambda q: pytest.fail("gave up an acknowledged message"))
    assert ml.datagrams_to_send(1000.0) == []


def test_cancelled_before_sending_is_never_sent() -> None:
    ml = layer()
    p = con(ml)
    kept = con(ml, b"kept")
    ml.cancel_pending(p)
    assert ml.datagrams_to_send(0.0) == [(b"kept", PEER)]
    assert ml.match(empty(ACK, p.mid), PEER) is None
    assert ml.match(empty(ACK, kept.mid), PEER) is kept


def test_inherited_retransmission_count_starts_with_a_longer_timeout() -> None:
    # A notification replacing an unacknowledged one keeps its count (RFC 7641 §4.5.2).
    ml = layer()
    p = Pending(PEER, ml.new_mid(), b"n", KIND_REQUEST, None)
    p.count = 2
    ml.add_pending(p)
    ml.datagrams_to_send(0.0)
    deadline = ml.next_deadline()
    assert deadline is not None and 8.0 <= deadline <= 12.0  # 4 * U(2, 3)
    ml.retransmit(deadline, lambda q: None)
    ml.retransmit(ml.next_deadline() or 0.0, lambda q: None)
    gave_up: list[Pending] = []
    ml.retransmit(ml.next_deadline() or 0.0, gave_up.append)
    assert gave_up == [p]  # 4 - 2 retransmissions left


def test_dedup_answers_a_duplicate_with_the_cached_bytes() -> None:
    ml = layer()
    key = (PEER, 77)
    assert not ml.answered_duplicate(key, PEER)
    ml.remember(key, 0.0)  # the handler is running: a duplicate is ignored silently
    assert ml.answered_duplicate(key, PEER) and ml.datagrams_to_send(0.0) == []
    ml.dedup.answer(key, b"answer")
    assert ml.answered_duplicate(key, PEER)
    assert ml.datagrams_to_send(0.0) == [(b"answer", PEER)]
    assert ml.stats.duplicates == 2


def test_dedup_expiry_is_batched_and_arms_the_timer_once() -> None:
    ml = layer()
    gen = ml.timer_generation
    ml.remember((PEER, 1), 0.0, b"a")
    assert ml.timer_generation == gen + 1  # the first entry arms the expiry timer
    ml.remember((PEER, 2), 5.0, b"b")
    assert ml.timer_generation == gen + 1  # a later one cannot make it earlier
    lifetime = ml.config.exchange_lifetime
    assert ml.next_deadline() == pytest.approx(lifetime + HOUSEKEEPING_SLACK)
    ml.dedup.expire(lifetime + HOUSEKEEPING_SLACK)
    assert not ml.answered_duplicate((PEER, 1), PEER)
    assert ml.answered_duplicate((PEER, 2), PEER)


def test_dedup_eviction_is_counted_in_stats() -> None:
    ml = layer(max_dedup_entries=2, max_dedup_per_peer=2)
    for mid in range(3):
        ml.remember((PEER, mid), 0.0, b"x")
    assert ml.stats.dedup_evicted == 1 and len(ml.dedup) == 2


def test_rst_is_empty_with_the_given_id_and_counted() -> None:
    ml = layer()
    ml.send_rst(4242, PEER)
    ((data, addr),) = ml.datagrams_to_send(0.0)
    msg = decode_message_untrusted(data)
    assert addr == PEER and (msg.mtype, msg.code, msg.mid) == (RST, 0, 4242)
    assert ml.stats.resets_sent == 1


def test_out_list_is_never_replaced() -> None:
    # The client and server layers append to the very list object they were given.
    ml = layer()
    out = ml.out
    out.append((b"x", PEER))
    assert ml.datagrams_to_send(0.0) == [(b"x", PEER)]
    assert ml.out is out and out == []

