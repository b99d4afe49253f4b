"""The AEAD additional data of OSCORE (RFC 8613 §5.4), byte for byte.

``AAD = Enc_structure = ["Encrypt0", h'', external_aad]`` with
``external_aad = bstr .cbor [oscore_version 1, [alg_aead 10], request_kid, request_piv,
options h'']`` (EdgeRM has no class I options, so ``options`` is always the empty bstr).
Requests and their responses use the *request's* kid and Partial IV.
"""

from __future__ import annotations


def _bstr(b: bytes) -> bytes:
    n = len(b)
    if n < 24:
        return bytes((0x40 | n,)) + b
    return bytes((0x58, n)) + b


_ENC0 = b"\x83\x68Encrypt0\x40"
_HEAD = b"\x85\x01\x81\x0a"


def external_aad(request_kid: bytes, request_piv: bytes) -> bytes:
    """The CBOR array ``[1, [10], request_kid, request_piv, h'']``."""
    return _HEAD + _bstr(request_kid) + _bstr(request_piv) + b"\x40"


def aad(request_kid: bytes, request_piv: bytes) -> bytes:
    """The full Enc_structure that AES-CCM authenticates."""
    return _ENC0 + _bstr(external_aad(request_kid, request_piv))


def aad_from_bstr(kid_bstr: bytes, request_piv: bytes) -> bytes:
    """:func:`aad` with the kid already bstr-wrapped (cached per context); kid <= 7 and
    Partial IV <= 5 bytes keep the external AAD under 24 bytes, so its head is one byte."""
    ext_len = 6 + len(kid_bstr) + len(request_piv)
    return (_ENC0 + bytes((0x40 | ext_len,)) + _HEAD + kid_bstr
            + bytes((0x40 | len(request_piv),)) + request_piv + b"\x40")


__all__ = ["aad", "external_aad", "aad_from_bstr"]
