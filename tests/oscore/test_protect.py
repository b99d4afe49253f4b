"""edgerm.oscore.protect: round trips, every refusal, and fuzz (only OscoreError escapes)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgerm import oscore
from edgerm.oscore import (
    BadOption,
    BadPlaintext,
    DecryptFailed,
    OscoreError,
    Replay,
    UnknownKid,
)

SECRET = bytes(range(16))
AGENT = oscore.agent_context(SECRET, 5)
MASTER = oscore.master_context(SECRET, 5)
OTHER = oscore.master_context(SECRET, 6)
LOOKUP = {b"\x05": MASTER, b"\x06": OTHER}.get
OPTS = [(11, b"a"), (12, b"<")]


def test_request_and_response_round_trip() -> None:
    value, ct = oscore.protect_request(AGENT, 1000, 0x02, OPTS, b"\xa1\x05\xa0")
    kid, piv, code, opts, payload = oscore.unprotect_request(LOOKUP, value, ct)
    assert (kid, piv, code, opts, payload) == (b"\x05", 1000, 0x02, OPTS, b"\xa1\x05\xa0")
    rv, rct = oscore.protect_response(MASTER, kid, piv, 0x44, [(12, b"<")], b"\xa0")
    assert rv == b""
    assert oscore.unprotect_response(AGENT, 1000, rv, rct) == (None, 0x44, [(12, b"<")],
                                                                b"\xa0")
    rv, rct = oscore.protect_response(MASTER, kid, piv, 0x44, [], b"", own_piv=77)
    assert rv == b"\x01\x4d"
    assert oscore.unprotect_response(AGENT, 1000, rv, rct) == (77, 0x44, [], b"")


def test_fast_path_equals_full_path() -> None:
    pt = oscore.encode_plaintext(0x02, OPTS, b"\xa1\x05\xa0")
    v1, c1 = oscore.seal_request(AGENT, 42, pt)
    assert (v1, c1) == oscore.protect_request(AGENT, 42, 0x02, OPTS, b"\xa1\x05\xa0")
    assert oscore.parse_request_option(v1) == (b"\x05", 42)
    assert oscore.open_request(MASTER, v1, c1) == (42, pt)
    v2, c2 = oscore.seal_response(MASTER, b"\x05", 42, pt)
    assert oscore.open_response(AGENT, 42, v2, c2) == (None, pt)


def test_open_request_checks_the_kid() -> None:
    value, ct = oscore.protect_request(AGENT, 1, 0x02, OPTS, b"")
    with pytest.raises(UnknownKid):
        oscore.open_request(OTHER, value, ct)


def test_unknown_kid() -> None:
    ctx7 = oscore.agent_context(SECRET, 7)
    value, ct = oscore.protect_request(ctx7, 1, 0x02, OPTS, b"")
    with pytest.raises(UnknownKid) as info:
        oscore.unprotect_request(LOOKUP, value, ct)
    assert info.value.code == 0x81


def test_other_agent_cannot_speak_for_agent_5() -> None:
    # Agent 6 (a real, registered agent) puts kid 05 in its option: its key is not 5's.
    six = oscore.agent_context(b"\x99" * 16, 6)
    value, ct = oscore.protect_request(six, 1, 0x02, OPTS, b"")
    forged = b"\x09\x01\x05"
    with pytest.raises(DecryptFailed):
        oscore.unprotect_request(LOOKUP, forged, ct)
    assert value != forged


def test_every_ciphertext_bit_is_authenticated() -> None:
    value, ct = oscore.protect_request(AGENT, 3, 0x02, OPTS, b"\xa1\x05\xa0")
    for i in range(len(ct) * 8):
        bad = bytearray(ct)
        bad[i // 8] ^= 1 << (i % 8)
        with pytest.raises(DecryptFailed):
            oscore.unprotect_request(LOOKUP, value, bytes(bad))
    for cut in range(len(ct)):
        with pytest.raises(DecryptFailed):
            oscore.unprotect_request(LOOKUP, value, ct[:cut])


def test_response_is_bound_to_its_request() -> None:
    rv, rct = oscore.protect_response(MASTER, b"\x05", 10, 0x44, [], b"ok")
    with pytest.raises(DecryptFailed):
        oscore.unprotect_response(AGENT, 11, rv, rct)
    rv, rct = oscore.protect_response(MASTER, b"\x05", 10, 0x44, [], b"ok", own_piv=3)
    with pytest.raises(DecryptFailed):
        oscore.unprotect_response(AGENT, 11, rv, rct)


def test_response_kid_must_name_the_responder() -> None:
    rv, rct = oscore.protect_response(MASTER, b"\x05", 10, 0x44, [], b"ok", own_piv=3)
    with pytest.raises(UnknownKid):
        oscore.unprotect_response(AGENT, 10, b"\x09\x03\x05", rct)
    # The responder's own (empty) kid is accepted.
    assert oscore.unprotect_response(AGENT, 10, b"\x09\x03", rct)[0] == 3


def test_bad_plaintext_names_kid_and_piv() -> None:
    value, ct = oscore.seal_request(AGENT, 9, b"\x02\xff")  # payload marker, no payload
    with pytest.raises(BadPlaintext) as info:
        oscore.unprotect_request(LOOKUP, value, ct)
    assert (info.value.kid, info.value.piv, info.value.code) == (b"\x05", 9, 0x80)


def test_request_option_refusals() -> None:
    _, ct = oscore.protect_request(AGENT, 1, 0x02, OPTS, b"")
    for value in (b"", b"\x01\x01", b"\x08\x05", b"\x19\x01\x01\xaa\x05", b"\x0a\x00\x01\x05"):
        with pytest.raises(OscoreError) as info:
            oscore.unprotect_request(LOOKUP, value, ct)
        assert isinstance(info.value, BadOption | UnknownKid)


def test_check_fresh() -> None:
    oscore.check_fresh(5, 4)
    for piv in (4, 3, 0):
        with pytest.raises(Replay) as info:
            oscore.check_fresh(piv, 4)
        assert info.value.code == 0x81


def test_large_sequence_numbers() -> None:
    for seq in (0, 255, 256, 2**32 - 1, oscore.MAX_PIV):
        value, ct = oscore.protect_request(AGENT, seq, 0x02, OPTS, b"x")
        assert oscore.unprotect_request(LOOKUP, value, ct)[1] == seq
    with pytest.raises(ValueError):
        oscore.protect_request(AGENT, oscore.MAX_PIV + 1, 0x02, OPTS, b"x")


# --- fuzz: nothing but OscoreError escapes, whatever the bytes ------------------------------

VALID_VALUE, VALID_CT = oscore.protect_request(AGENT, 70000, 0x02, OPTS, b"\xa1\x05\xa0")
RV, RCT = oscore.protect_response(MASTER, b"\x05", 70000, 0x44, [], b"\xa0", own_piv=2)


def _mutate(data: bytes, flips: list[int], cut: int | None) -> bytes:
    b = bytearray(data)
    for f in flips:
        if b:
            b[f % len(b)] ^= 1 << (f % 8)
    return bytes(b[:cut] if cut is not None else b)


@settings(max_examples=400)
@given(st.binary(max_size=16), st.binary(max_size=40))
def test_fuzz_unprotect_request_random(value: bytes, ct: bytes) -> None:
    try:
        oscore.unprotect_request(LOOKUP, value, ct)
    except OscoreError:
        pass


@settings(max_examples=400)
@given(st.lists(st.integers(0, 10_000), max_size=3), st.one_of(st.none(), st.integers(0, 30)),
       st.lists(st.integers(0, 10_000), max_size=3))
def test_fuzz_unprotect_request_mutated(vflips: list[int], cut: int | None,
                                        cflips: list[int]) -> None:
    value = _mutate(VALID_VALUE, vflips, None)
    ct = _mutate(VALID_CT, cflips, cut)
    try:
        got = oscore.unprotect_request(LOOKUP, value, ct)
    except OscoreError:
        return
    # Accepted only if nothing authenticated changed.
    assert got[1] == 70000 and ct == VALID_CT


@settings(max_examples=400)
@given(st.binary(max_size=16), st.binary(max_size=40), st.integers(0, 2**40 - 1))
def test_fuzz_unprotect_response(value: bytes, ct: bytes, request_piv: int) -> None:
    for v, c in ((value, ct), (value, RCT), (RV, ct)):
        try:
            oscore.unprotect_response(AGENT, request_piv, v, c)
        except OscoreError:
            pass


@settings(max_examples=300)
@given(st.binary(max_size=60))
def test_fuzz_datagrams(data: bytes) -> None:
    try:
        oscore.unprotect_request_datagram(LOOKUP, data)
    except OscoreError:
        pass
    try:
        oscore.unprotect_response_datagram(AGENT, 1, data)
    except OscoreError:
        pass
    try:
        oscore.unpack_forwarded(data)
    except OscoreError:
        pass


VALID_DATAGRAM = oscore.request_datagram(AGENT, 9, 0, 1, b"\x42", 0x02, OPTS, b"\xa1\x05\xa0")
VALID_REPLY = oscore.response_datagram(MASTER, b"\x05", 9, 2, 1, b"\x42", 0x44, [], b"\xa0",
                                       own_piv=4)


@settings(max_examples=400)
@given(st.lists(st.tuples(st.integers(0, 200), st.integers(0, 7)), min_size=1, max_size=4),
       st.one_of(st.none(), st.integers(0, 40)), st.binary(max_size=4))
def test_fuzz_mutated_datagrams(flips: list[tuple[int, int]], cut: int | None,
                                tail: bytes) -> None:
    for good in (VALID_DATAGRAM, VALID_REPLY):
        b = bytearray(good)
        for i, bit in flips:
            b[i % len(b)] ^= 1 << bit
        data = bytes(b[:cut] if cut is not None else b) + tail
        try:
            if good is VALID_DATAGRAM:
                _, piv, inner = oscore.unprotect_request_datagram(LOOKUP, data)
            else:
                piv, inner = oscore.unprotect_response_datagram(AGENT, 9, data)
        except OscoreError:
            continue
        # What is accepted carries the original, authenticated content (only the unprotected
        # CoAP header, token or an outer option may have changed).
        assert inner.payload == (b"\xa1\x05\xa0" if good is VALID_DATAGRAM else b"\xa0")
