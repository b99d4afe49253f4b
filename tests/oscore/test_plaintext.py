"""edgerm.oscore.plaintext: code + options + payload."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgerm.oscore.plaintext import decode_plaintext, encode_plaintext


def test_rfc_plaintexts() -> None:
    assert encode_plaintext(0x01, [(11, b"tv1")], b"").hex() == "01b3747631"
    assert encode_plaintext(0x45, [], b"Hello World!").hex() == "45ff48656c6c6f20576f726c6421"
    assert decode_plaintext(bytes.fromhex("01b3747631")) == (0x01, [(11, b"tv1")], b"")


@pytest.mark.parametrize("hexstr", ["", "02ff", "02f0", "020f", "02d0", "02e000", "02b374"])
def test_malformed_refused(hexstr: str) -> None:
    with pytest.raises(ValueError):
        decode_plaintext(bytes.fromhex(hexstr))


options = st.lists(st.tuples(st.integers(1, 65000), st.binary(max_size=300)), max_size=6)


@given(st.integers(0, 255), options, st.binary(max_size=50))
def test_roundtrip(code: int, opts: list[tuple[int, bytes]], payload: bytes) -> None:
    got = decode_plaintext(encode_plaintext(code, opts, payload))
    assert got == (code, sorted(opts, key=lambda o: o[0]), payload)


@given(st.binary(max_size=60))
def test_decode_raises_only_value_error(data: bytes) -> None:
    try:
        decode_plaintext(data)
    except ValueError:
        pass
