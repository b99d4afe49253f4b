"""edgerm.oscore.context: ids, Partial IVs, nonces, derivation errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgerm.oscore.context import (
    MAX_PIV,
    SecurityContext,
    agent_context,
    hkdf_info,
    kid_of,
    master_context,
    nonce,
    piv_bytes,
)

SECRET = bytes(range(16))


def test_kid_of_is_minimal_big_endian() -> None:
    assert kid_of(1) == b"\x01"
    assert kid_of(255) == b"\xff"
    assert kid_of(256) == b"\x01\x00"
    assert kid_of(2**56 - 1) == b"\xff" * 7
    for bad in (0, -1, 2**56):
        with pytest.raises(ValueError):
            kid_of(bad)


def test_piv_bytes() -> None:
    assert piv_bytes(0) == b"\x00"
    assert piv_bytes(20) == b"\x14"
    assert piv_bytes(256) == b"\x01\x00"
    assert piv_bytes(70000) == b"\x01\x11\x70"
    assert piv_bytes(MAX_PIV) == b"\xff" * 5
    for bad in (-1, MAX_PIV + 1):
        with pytest.raises(ValueError):
            piv_bytes(bad)


@given(st.binary(max_size=7), st.integers(0, MAX_PIV))
def test_nonce_layout(id_: bytes, piv: int) -> None:
    # §5.2 literally: size of id, id left-padded to 7, PIV left-padded to 5, XOR Common IV.
    iv = bytes(range(100, 113))
    raw = bytes((len(id_),)) + id_.rjust(7, b"\x00") + piv.to_bytes(5, "big")
    assert nonce(iv, id_, piv) == bytes(a ^ b for a, b in zip(raw, iv, strict=True))


def test_hkdf_info_encoding() -> None:
    # [h'01', nil, 10, "Key", 16] and [h'', h'37cb...', 10, "IV", 13]
    assert hkdf_info(b"\x01", None, "Key", 16).hex() == "854101f60a634b657910"
    assert hkdf_info(b"", bytes.fromhex("37cbf3210017a2d3"), "IV", 13).hex() == \
        "854048" + "37cbf3210017a2d3" + "0a6249560d"


def test_agent_and_master_contexts_mirror() -> None:
    a = agent_context(SECRET, 5)
    m = master_context(SECRET, 5)
    assert (a.sender_id, a.recipient_id) == (b"\x05", b"")
    assert (m.sender_id, m.recipient_id) == (b"", b"\x05")
    assert a.sender_key == m.recipient_key and a.recipient_key == m.sender_key
    assert a.common_iv == m.common_iv
    assert a.sender_nonce(9) == m.recipient_nonce(9)
    assert "key" not in repr(a).lower() or SECRET.hex() not in repr(a)
    assert a.sender_key.hex() not in repr(a)


def test_derive_refuses_bad_parameters() -> None:
    with pytest.raises(ValueError, match="empty"):
        SecurityContext.derive(b"", b"\x01", b"")
    with pytest.raises(ValueError, match="differ"):
        SecurityContext.derive(SECRET, b"\x01", b"\x01")
    with pytest.raises(ValueError, match="7 bytes"):
        SecurityContext.derive(SECRET, b"\x01" * 8, b"")
