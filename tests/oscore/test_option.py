"""edgerm.oscore.option: the OSCORE option value, strict both ways."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgerm.oscore.errors import BadOption
from edgerm.oscore.option import decode_option, encode_option

h = bytes.fromhex


def test_rfc_examples() -> None:
    # RFC 8613 §6.3 and Appendix C.
    assert encode_option(h("05"), h("25")) == h("090525")
    assert encode_option(h("00"), b"") == h("0900")
    assert encode_option(h("05"), b"", b"Dalek") == h("19050544616c656b")
    assert encode_option(h("07"), None) == h("0107")
    assert encode_option(None, None) == b""
    assert decode_option(h("19140837cbf3210017a2d3")) == (h("14"), b"", h("37cbf3210017a2d3"))
    assert decode_option(b"") == (None, None, None)
    assert decode_option(h("0100")) == (h("00"), None, None)


@pytest.mark.parametrize("value,why", [
    ("00", "all-zero"),
    ("890105", "reserved"),
    ("290105", "reserved"),
    ("4105", "reserved"),
    ("0e010203040506", "reserved"),
    ("0f01020304050607", "reserved"),
    ("03", "truncated Partial IV"),
    ("020001", "minimal"),
    ("0101ff", "without the k flag"),
    ("10", "kid context length"),
    ("1105", "kid context length"),
    ("110103aa", "truncated kid context"),
])
def test_malformed_values_refused(value: str, why: str) -> None:
    with pytest.raises(BadOption, match=why):
        decode_option(h(value))


def test_encode_refuses_impossible_values() -> None:
    with pytest.raises(ValueError):
        encode_option(b"", b"")
    with pytest.raises(ValueError):
        encode_option(bytes(6), b"")
    with pytest.raises(ValueError):
        encode_option(b"\x01", b"", bytes(256))


@given(st.integers(0, 2**40 - 1), st.one_of(st.none(), st.binary(max_size=7)),
       st.one_of(st.none(), st.binary(max_size=20)))
def test_roundtrip(seq: int, kid: bytes | None, kid_context: bytes | None) -> None:
    piv = seq.to_bytes(max(1, (seq.bit_length() + 7) // 8), "big")
    assert decode_option(encode_option(piv, kid, kid_context)) == (piv, kid, kid_context)


@given(st.binary(max_size=40))
def test_decode_raises_only_bad_option(value: bytes) -> None:
    try:
        piv, kid, kid_context = decode_option(value)
    except BadOption:
        return
    # Whatever decodes re-encodes to the same bytes: one spelling per value.
    assert encode_option(piv, kid, kid_context) == value
