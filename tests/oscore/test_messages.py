"""edgerm.oscore.messages: option classes, outer codes, datagrams, gateway framing."""

from __future__ import annotations

import pytest

from edgerm import oscore
from edgerm.coap.codes import ACK, CON, Code
from edgerm.coap.message import Message, decode_message_untrusted
from edgerm.coap.options import BLOCK2, CONTENT_FORMAT, OBSERVE, OSCORE, URI_HOST, URI_PATH
from edgerm.oscore import BadOption

SECRET = bytes(range(16))
AGENT = oscore.agent_context(SECRET, 300)
MASTER = oscore.master_context(SECRET, 300)
LOOKUP = {MASTER.recipient_id: MASTER}.get


def test_split_options() -> None:
    outer, inner = oscore.split_options([(URI_HOST, b"h"), (OBSERVE, b""), (URI_PATH, b"c"),
                                         (OSCORE, b"\x09"), (BLOCK2, b"\x02")])
    assert outer == [(URI_HOST, b"h"), (OBSERVE, b"")]
    assert inner == [(OBSERVE, b""), (URI_PATH, b"c"), (BLOCK2, b"\x02")]


def test_observe_request_is_fetch_with_outer_copy() -> None:
    req = Message(CON, Code.FETCH, 7, b"\x42", [(OBSERVE, b""), (URI_PATH, b"c"),
                                               (CONTENT_FORMAT, b"<")], b"\xa0")
    out = oscore.protect_request_message(AGENT, 12, req)
    assert out.code == Code.FETCH
    assert [n for n, _ in out.options] == [OBSERVE, OSCORE]
    assert out.opt(OSCORE) == b"\x09\x0c\x01\x2c"
    kid, piv, inner = oscore.unprotect_request_message(LOOKUP, out)
    assert (kid, piv) == (b"\x01\x2c", 12)
    assert inner == req
    # The whole datagram path gives the same bytes.
    assert oscore.request_datagram(AGENT, 12, CON, 7, b"\x42", Code.FETCH, req.options,
                                   req.payload) == out.encode()


def test_notification_is_content_with_master_piv() -> None:
    note = Message(CON, Code.CONTENT, 8, b"\x42", [(OBSERVE, b"\x05"), (CONTENT_FORMAT, b"<")],
                   b"\xa0")
    out = oscore.protect_response_message(MASTER, AGENT.sender_id, 12, note, own_piv=9)
    assert out.code == Code.CONTENT
    assert out.options == [(OBSERVE, b"\x05"), (OSCORE, b"\x01\x09")]
    piv, inner = oscore.unprotect_response_message(AGENT, 12, out)
    assert piv == 9 and inner == note


def test_plain_post_request_and_piggybacked_reply() -> None:
    data = oscore.request_datagram(AGENT, 5, CON, 0x1234, b"\x42", Code.POST,
                                   [(URI_PATH, b"a"), (CONTENT_FORMAT, b"<")], b"\xa1\x05\xa0")
    msg = decode_message_untrusted(data)
    assert msg.code == Code.POST and [n for n, _ in msg.options] == [OSCORE]
    kid, piv, inner = oscore.unprotect_request_datagram(LOOKUP, data)
    reply = oscore.response_datagram(MASTER, kid, piv, ACK, inner.mid, inner.token,
                                     Code.CHANGED, [(CONTENT_FORMAT, b"<")], b"\xa0")
    out = decode_message_untrusted(reply)
    assert (out.mtype, out.code, out.mid, out.token) == (ACK, Code.CHANGED, 0x1234, b"\x42")
    assert out.options == [(OSCORE, b"")]
    piv2, inner2 = oscore.unprotect_response_datagram(AGENT, 5, reply)
    assert piv2 is None and inner2.payload == b"\xa0"


def test_repeated_options_keep_their_order() -> None:
    # m/<sha>: the Uri-Path segments must come back in order (a sort by value would swap them).
    req = Message(CON, Code.GET, 1, b"", [(URI_HOST, b"z"), (URI_PATH, b"m"),
                                          (URI_PATH, b"0a0b"), (BLOCK2, b"\x12")])
    out = oscore.protect_request_message(AGENT, 1, req)
    assert oscore.unprotect_request_message(LOOKUP, out)[2] == req
    reply = Message(ACK, Code.CONTENT, 1, b"", [(URI_PATH, b"y"), (URI_PATH, b"x")], b"p")
    prot = oscore.protect_response_message(MASTER, AGENT.sender_id, 1, reply)
    assert oscore.unprotect_response_message(AGENT, 1, prot)[1] == reply


def test_class_u_options_stay_outside() -> None:
    req = Message(CON, Code.GET, 1, b"", [(URI_HOST, b"master"), (URI_PATH, b"m")])
    out = oscore.protect_request_message(AGENT, 1, req)
    assert out.opt(URI_HOST) == b"master" and out.opt(URI_PATH) is None
    assert oscore.unprotect_request_message(LOOKUP, out)[2] == req


@pytest.mark.parametrize("options", [[], [(OSCORE, b"\x09\x01\x01\x2c"),
                                          (OSCORE, b"\x09\x01\x01\x2c")]])
def test_missing_or_repeated_oscore_option(options: list[tuple[int, bytes]]) -> None:
    with pytest.raises(BadOption):
        oscore.unprotect_request_message(LOOKUP, Message(CON, Code.POST, 1, b"", options, b"x"))


def test_not_coap_is_bad_option() -> None:
    with pytest.raises(BadOption):
        oscore.unprotect_request_datagram(LOOKUP, b"\x80\x02")


def test_gateway_framing() -> None:
    value, ct = oscore.protect_request(AGENT, 3, Code.POST, [(URI_PATH, b"a")], b"")
    packed = oscore.pack_forwarded(Code.POST, value, ct)
    assert packed[:2] == bytes((Code.POST, len(value)))
    assert oscore.unpack_forwarded(packed) == (Code.POST, value, ct)
    assert oscore.unpack_forwarded(b"\x44\x00") == (0x44, b"", b"")
    for bad in (b"", b"\x02", b"\x02\x05\x09"):
        with pytest.raises(BadOption):
            oscore.unpack_forwarded(bad)
