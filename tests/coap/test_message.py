"""Codec tests: exact bytes from the RFCs, extended option encodings, and every malformation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgerm.coap.codes import ACK, CON, NON, RST, Code
from edgerm.coap.errors import CoapWireError
from edgerm.coap.message import Message, decode_message_untrusted, encode_empty, encode_message
from edgerm.coap.options import (
    BLOCK2,
    CONTENT_FORMAT,
    URI_PATH,
    BlockValue,
    decode_block,
    encode_uint,
    observe_is_fresher,
    size_to_szx,
)


def test_heartbeat_datagram_layout() -> None:
    # 4 header + 1 token + Uri-Path "a" (0xB1 'a') + Content-Format 60 (0x11 '<') + 0xFF + 8.
    data = encode_message(CON, Code.POST, 0x1234, b"\x07",
                          [(URI_PATH, b"a"), (CONTENT_FORMAT, encode_uint(60))], b"\x00" * 8)
    assert data == bytes.fromhex("4102123407" "b161" "113c" "ff") + b"\x00" * 8
    assert len(data) == 18


def test_rfc7252_figure_16_get_with_piggybacked_response() -> None:
    # RFC 7252 Appendix A style: CON GET /temperature, token 0x71, mid 0x7d34.
    data = bytes.fromhex("41017d3471bb74656d7065726174757265")
    msg = decode_message_untrusted(data)
    assert (msg.mtype, msg.code, msg.mid, msg.token) == (CON, Code.GET, 0x7D34, b"\x71")
    assert msg.options == [(URI_PATH, b"temperature")]
    assert msg.encode() == data


@pytest.mark.parametrize("number", [1, 12, 13, 14, 268, 269, 270, 1000, 65000])
@pytest.mark.parametrize("length", [0, 12, 13, 268, 269, 300])
def test_extended_delta_and_length_round_trip(number: int, length: int) -> None:
    msg = Message(NON, Code.GET, 7, b"tok", [(number, b"x" * length)], b"body")
    assert decode_message_untrusted(msg.encode()) == msg


def test_delta_13_and_14_exact_bytes() -> None:
    # Option 13 (delta 13 -> nibble 13, ext 0x00) and then 300 (delta 287 -> nibble 14, 0x0012).
    data = encode_message(CON, Code.GET, 1, b"", [(13, b""), (300, b"")])
    assert data[4:] == bytes((0xD0, 0x00, 0xE0, 0x00, 0x12))


def test_repeated_options_keep_order() -> None:
    msg = Message(CON, Code.GET, 1, b"", [(URI_PATH, b"m"), (URI_PATH, b"ab")])
    assert decode_message_untrusted(msg.encode()).options == [(URI_PATH, b"m"), (URI_PATH, b"ab")]


def test_empty_messages() -> None:
    assert encode_empty(ACK, 0xBEEF) == bytes((0x60, 0, 0xBE, 0xEF))
    msg = decode_message_untrusted(encode_empty(RST, 5))
    assert (msg.mtype, msg.code, msg.mid) == (RST, 0, 5)


@pytest.mark.parametrize(
    ("data", "has_header"),
    [
        (b"", False),
        (b"\x40\x01\x00", False),  # truncated header
        (bytes((0x80, 1, 0, 1)), False),  # version 2
        (bytes((0x00, 1, 0, 1)), False),  # version 0
        (bytes((0x49, 1, 0, 1)) + b"\x00" * 9, True),  # TKL 9
        (bytes((0x4F, 1, 0, 1)) + b"\x00" * 15, True),  # TKL 15
        (bytes((0x44, 1, 0, 1)) + b"ab", True),  # truncated token
        (bytes((0x40, 1, 0, 1, 0xFF)), True),  # payload marker, no payload
        (bytes((0x40, 1, 0, 1, 0xF0)), True),  # delta 15 not as marker
        (bytes((0x40, 1, 0, 1, 0x1F)), True),  # length 15 reserved
        (bytes((0x40, 1, 0, 1, 0xD0)), True),  # delta 13 missing extension byte
        (bytes((0x40, 1, 0, 1, 0xE0, 0x01)), True),  # delta 14 missing a byte
        (bytes((0x40, 1, 0, 1, 0x0D)), True),  # length 13 missing extension byte
        (bytes((0x40, 1, 0, 1, 0x0E, 0x01)), True),  # length 14 missing a byte
        (bytes((0x40, 1, 0, 1, 0xB5, 0x61)), True),  # value runs past the end
        (bytes((0x41, 0, 0, 1, 0x00)), True),  # empty message with a token
        (bytes((0x60, 0, 0, 1, 0xFF, 0x01)), True),  # empty ACK with payload
    ],
)
def test_malformed_raise_only_wire_error(data: bytes, has_header: bool) -> None:
    with pytest.raises(CoapWireError) as info:
        decode_message_untrusted(data)
    assert (info.value.mid is not None) == has_header


@given(
    mtype=st.sampled_from([CON, NON, ACK]),
    code=st.integers(1, 255),
    mid=st.integers(0, 0xFFFF),
    token=st.binary(max_size=8),
    options=st.lists(st.tuples(st.integers(0, 2000), st.binary(max_size=300)), max_size=6),
    payload=st.binary(max_size=200),
)
def test_round_trip_property(mtype: int, code: int, mid: int, token: bytes,
                             options: list[tuple[int, bytes]], payload: bytes) -> None:
    msg = Message(mtype, code, mid, token, sorted(options, key=lambda o: o[0]), payload)
    assert decode_message_untrusted(msg.encode()) == msg


@given(st.binary(max_size=64))
def test_arbitrary_bytes_never_raise_anything_else(data: bytes) -> None:
    try:
        decode_message_untrusted(data)
    except CoapWireError:
        pass


def test_block_values() -> None:
    assert BlockValue(0, True, 2).encode() == b"\x0a"
    assert decode_block(b"\x0a") == BlockValue(0, True, 2)
    assert BlockValue(20, False, 6).offset == 20 * 1024
    assert decode_block(b"\x0f") is None  # SZX 7 is reserved on UDP
    assert decode_block(b"") == BlockValue(0, False, 0)
    assert size_to_szx(64) == 2 and size_to_szx(1024) == 6 and size_to_szx(100) == 2
    with pytest.raises(ValueError):
        size_to_szx(8)
    assert decode_message_untrusted(
        encode_message(ACK, Code.CONTENT, 1, b"", [(BLOCK2, BlockValue(1, True, 6).encode())])
    ).options == [(BLOCK2, b"\x1e")]


def test_observe_freshness_rule() -> None:
    assert observe_is_fresher(5, 0.0, 6, 1.0)
    assert not observe_is_fresher(6, 0.0, 5, 1.0)
    assert observe_is_fresher((1 << 24) - 2, 0.0, 3, 1.0)  # wrapped
    assert observe_is_fresher(6, 0.0, 5, 200.0)  # 128 s later, anything goes
