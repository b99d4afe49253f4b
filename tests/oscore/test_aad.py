"""edgerm.oscore.aad: the Enc_structure of RFC 8613 §5.4."""

from __future__ import annotations

import cbor2
from hypothesis import given
from hypothesis import strategies as st

from edgerm.oscore.aad import aad, aad_from_bstr, external_aad


def test_rfc_values() -> None:
    assert external_aad(b"", b"\x14").hex() == "8501810a40411440"
    assert aad(b"", b"\x14").hex() == "8368456e63727970743040488501810a40411440"
    assert aad(b"\x00", b"\x14").hex() == "8368456e63727970743040498501810a4100411440"


@given(st.binary(max_size=7), st.binary(min_size=1, max_size=5))
def test_against_cbor2(kid: bytes, piv: bytes) -> None:
    # An independent CBOR encoder builds the same structure.
    ext = cbor2.dumps([1, [10], kid, piv, b""])
    want = cbor2.dumps(["Encrypt0", b"", ext])
    assert aad(kid, piv) == want
    assert aad_from_bstr(cbor2.dumps(kid), piv) == want
