"""The client side alone over a message layer: requests, token matching, Observe registrations."""

from __future__ import annotations

import itertools
import random
from collections import deque

import pytest

from edgerm.coap.client import ClientSide
from edgerm.coap.codes import ACK, CON, NON, RST, Code
from edgerm.coap.config import CoapConfig
from edgerm.coap.errors import CoapLocalError
from edgerm.coap.events import Event, RequestFailed, ResponseReceived
from edgerm.coap.message import Message, Option, decode_message_untrusted
from edgerm.coap.message_layer import CoapStats, MessageLayer
from edgerm.coap.options import BLOCK1, OBSERVE, SIZE1, URI_PATH, BlockValue, decode_block

SERVER = ("10.0.0.2", 5683)


class Client:
    """A ClientSide with the message layer and event queue an endpoint would give it."""

    def __init__(self, **cfg: float) -> None:
        rng = random.Random(9)
        self.ml = MessageLayer(CoapConfig(**cfg), rng, CoapStats())  # type: ignore[arg-type]
        self.events: deque[Event] = deque()
        self.side = ClientSide(self.ml.config, rng, self.ml, self.events, itertools.count(1))

    def sent(self, now: float = 0.0) -> list[Message]:
        out = self.ml.datagrams_to_send(now)
        assert all(addr == SERVER for _, addr in out)
        return [decode_message_untrusted(d) for d, _ in out]

    def ack(self, req: Message, code: int, payload: bytes = b"",
            options: list[Option] | None = None, token: bytes | None = None) -> None:
        """The server's piggybacked (or, with code 0, Empty) ACK of ``req``, as the endpoint
        routes it: matched by the message layer, then handed to the client side."""
        msg = Message(ACK, code, req.mid, req.token if token is None else token,
                      options or [], payload)
        p = self.ml.match(msg, SERVER)
        assert p is not None
        self.side.request_answered(p, msg, 0.0)

    def separate(self, mtype: int, mid: int, token: bytes, code: int = Code.CONTENT,
                 payload: bytes = b"", options: list[Option] | None = None,
                 now: float = 0.0) -> None:
        self.side.on_separate_response(Message(mtype, code, mid, token, options or [], payload),
                                       SERVER, now)


def option(msg: Message, num: int) -> bytes | None:
    return next((v for n, v in msg.options if n == num), None)


def response(c: Client) -> ResponseReceived:
    ev = c.events.popleft()
    assert isinstance(ev, ResponseReceived)
    return ev


def test_response_is_matched_by_token() -> None:
    c = Client(token_length=2)
    rid = c.side.request(SERVER, Code.GET, ["a", "b"])
    (req,) = c.sent()
    assert (req.mtype, req.code, len(req.token)) == (CON, Code.GET, 2)
    assert [v for n, v in req.options if n == URI_PATH] == [b"a", b"b"]
    c.ack(req, Code.CONTENT, b"other", token=bytes(2) if req.token != bytes(2) else b"\xff\xff")
    assert not c.events and c.ml.stats.unmatched == 1  # a stranger's token: keep waiting
    assert c.side.outstanding_requests == 1
    c.separate(NON, 600, req.token, payload=b"ok")
    ev = response(c)
    assert (ev.request_id, ev.code, ev.payload, ev.observing) == (rid, Code.CONTENT, b"ok", False)
    assert c.side.outstanding_requests == 0
    c.side.request(SERVER, Code.GET, ["a"], token=req.token)  # the token is free again


def test_empty_ack_then_separate_response_is_acked_and_delivered() -> None:
    c = Client()
    rid = c.side.request(SERVER, Code.POST, ["x"], b"body")
    (req,) = c.sent()
    c.ack(req, 0)  # Empty ACK: the response comes later
    assert not c.events and c.side.outstanding_requests == 1
    c.separate(CON, 500, req.token, Code.CHANGED, b"done")
    (ack,) = c.sent()
    assert (ack.mtype, ack.code, ack.mid) == (ACK, 0, 500)
    assert response(c).request_id == rid
    c.separate(CON, 500, req.token, Code.CHANGED, b"done")  # duplicate: ACKed again only
    assert [m.mtype for m in c.sent()] == [ACK] and not c.events


def test_reset_and_timeout_fail_the_request() -> None:
    c = Client()
    reset = c.side.request(SERVER, Code.GET, ["r"])
    timeout = c.side.request(SERVER, Code.GET, ["t"])
    r, _ = c.sent()
    msg = Message(RST, 0, r.mid)
    p = c.ml.match(msg, SERVER)
    assert p is not None
    c.side.request_answered(p, msg, 0.0)
    for _ in range(5):
        c.ml.retransmit(c.ml.next_deadline() or 0.0, c.side.request_gave_up)
    failed = [(ev.request_id, ev.reason) for ev in c.events if isinstance(ev, RequestFailed)]
    assert failed == [(reset, "reset"), (timeout, "timeout")]
    assert c.side.outstanding_requests == 0


def test_observe_registration_notifications_and_deregistration() -> None:
    c = Client()
    rid = c.side.request(SERVER, Code.GET, ["obs"], observe=True)
    (reg,) = c.sent()
    assert option(reg, OBSERVE) == b""
    c.ack(reg, Code.CONTENT, b"v5", [(OBSERVE, b"\x05")])
    first = response(c)
    assert (first.request_id, first.observe, first.observing) == (rid, 5, True)
    assert c.side.outstanding_requests == 1  # the observation stays
    c.separate(CON, 900, reg.token, payload=b"v6", options=[(OBSERVE, b"\x06")], now=1.0)
    c.separate(NON, 901, reg.token, payload=b"v4", options=[(OBSERVE, b"\x04")], now=2.0)
    assert [m.mtype for m in c.sent()] == [ACK]  # the CON notification is acknowledged
    ev = response(c)
    assert (ev.request_id, ev.payload, ev.observe) == (rid, b"v6", 6)
    assert not c.events and c.ml.stats.ignored == 1  # the older one is dropped
    c.side.cancel_request(rid, deregister=True)
    (dereg,) = c.sent()
    assert (dereg.token, option(dereg, OBSERVE)) == (reg.token, b"\x01")
    c.ack(dereg, Code.CONTENT, b"last")
    assert not c.events and c.side.outstanding_requests == 0  # nobody waits for it


def test_notification_nobody_waits_for_is_reset() -> None:
    c = Client()
    c.separate(NON, 77, b"\x99", options=[(OBSERVE, b"\x01")])
    (rst,) = c.sent()
    assert (rst.mtype, rst.mid) == (RST, 77)
    assert c.ml.stats.unmatched == 1 and not c.events


def test_block1_upload_sends_the_next_block_on_continue() -> None:
    c = Client(block_size=64)
    body = bytes(range(150))
    c.side.request(SERVER, Code.POST, ["up"], body)
    (b0,) = c.sent()
    block = decode_block(option(b0, BLOCK1) or b"")
    assert block is not None and (block.num, block.more, block.szx) == (0, True, 2)
    assert b0.payload == body[:64] and option(b0, SIZE1) == bytes([150])
    c.ack(b0, Code.CONTINUE, options=[(BLOCK1, BlockValue(0, True, 2).encode())])
    (b1,) = c.sent()
    block = decode_block(option(b1, BLOCK1) or b"")
    assert block is not None and (block.num, block.more) == (1, True)
    assert b1.payload == body[64:128] and b1.token == b0.token and b1.mid != b0.mid


def test_token_in_use_is_refused_and_changes_nothing() -> None:
    c = Client()
    c.side.request(SERVER, Code.GET, ["a"], token=b"\x01")
    c.sent()
    with pytest.raises(CoapLocalError, match="token already in use"):
        c.side.request(SERVER, Code.GET, ["b"], token=b"\x01")
    with pytest.raises(CoapLocalError, match="0..8"):
        c.side.request(SERVER, Code.GET, ["b"], token_length=9)
    assert c.side.outstanding_requests == 1 and c.sent() == []
