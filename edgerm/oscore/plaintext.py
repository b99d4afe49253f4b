"""The OSCORE plaintext (RFC 8613 §5.3): inner code, class E options, payload marker, payload.

Encoded exactly like the tail of a CoAP message after its token (RFC 7252 §3.1), with the
code byte in front. Decoding is strict (it runs on authenticated bytes, so a failure is a peer
bug): option delta/length nibble 15, an extension running past the end, or a payload marker
with no payload are errors.
"""

from __future__ import annotations

from collections.abc import Iterable

from edgerm.coap.message import Option, encode_options


def encode_plaintext(code: int, options: Iterable[Option], payload: bytes) -> bytes:
    out = bytearray((code,))
    out += encode_options(options)
    if payload:
        out.append(0xFF)
        out += payload
    return bytes(out)


def _ext(nibble: int, data: bytes, pos: int) -> tuple[int, int]:
    if nibble == 13:
        if pos >= len(data):
            raise ValueError("truncated option extension")
        return data[pos] + 13, pos + 1
    if pos + 1 >= len(data):
        raise ValueError("truncated option extension")
    return ((data[pos] << 8) | data[pos + 1]) + 269, pos + 2


def decode_plaintext(data: bytes) -> tuple[int, list[Option], bytes]:
    """``(code, options, payload)``; raises ``ValueError`` on a malformed plaintext."""
    n = len(data)
    if n == 0:
        raise ValueError("empty plaintext (no code)")
    code = data[0]
    options: list[Option] = []
    pos = 1
    number = 0
    while pos < n:
        b = data[pos]
        pos += 1
        if b == 0xFF:
            if pos == n:
                raise ValueError("payload marker followed by no payload")
            return code, options, data[pos:]
        delta = b >> 4
        length = b & 0x0F
        if delta >= 13:
            if delta == 15:
                raise ValueError("option delta 15 without payload marker")
            delta, pos = _ext(delta, data, pos)
        if length >= 13:
            if length == 15:
                raise ValueError("option length 15 is reserved")
            length, pos = _ext(length, data, pos)
        number += delta
        end = pos + length
        if end > n:
            raise ValueError("option value runs past the plaintext")
        options.append((number, data[pos:end]))
        pos = end
    return code, options, b""


__all__ = ["encode_plaintext", "decode_plaintext"]
