"""CoAP option numbers, value formats, and the Block (RFC 7959) and Observe (RFC 7641) values.

Options travel as ``(number, value_bytes)`` pairs sorted by number (see
:mod:`edgerm.coap.message`); this module knows what the numbers mean: which are critical,
which we understand, their permitted value lengths (RFC 7252 §5.10 table), and how the
integer-valued ones are encoded ("uint": minimal big-endian, zero is the empty string).
"""

from __future__ import annotations

from typing import NamedTuple

IF_MATCH = 1
URI_HOST = 3
ETAG = 4
IF_NONE_MATCH = 5
OBSERVE = 6
URI_PORT = 7
LOCATION_PATH = 8
OSCORE = 9
URI_PATH = 11
CONTENT_FORMAT = 12
MAX_AGE = 14
URI_QUERY = 15
HOP_LIMIT = 16
ACCEPT = 17
LOCATION_QUERY = 20
BLOCK2 = 23
BLOCK1 = 27
SIZE2 = 28
PROXY_URI = 35
PROXY_SCHEME = 39
SIZE1 = 60
ECHO = 252
NO_RESPONSE = 258
REQUEST_TAG = 292

# Content-Format registry values we use by name.
CF_TEXT = 0
CF_LINK_FORMAT = 40
CF_OCTET_STREAM = 42
CF_JSON = 50
CF_CBOR = 60

# Value length ranges (RFC 7252 §5.10, RFC 7959 §2.1, RFC 7641 §2). A value outside its range is
# treated like an unrecognised option (§5.4.3): fatal if critical, ignored if elective.
LENGTH_LIMITS: dict[int, tuple[int, int]] = {
    IF_MATCH: (0, 8),
    URI_HOST: (1, 255),
    ETAG: (1, 8),
    IF_NONE_MATCH: (0, 0),
    OBSERVE: (0, 3),
    URI_PORT: (0, 2),
    LOCATION_PATH: (0, 255),
    URI_PATH: (0, 255),
    CONTENT_FORMAT: (0, 2),
    MAX_AGE: (0, 4),
    URI_QUERY: (0, 255),
    HOP_LIMIT: (1, 1),
    ACCEPT: (0, 2),
    LOCATION_QUERY: (0, 255),
    BLOCK2: (0, 3),
    BLOCK1: (0, 3),
    SIZE2: (0, 4),
    SIZE1: (0, 4),
    ECHO: (1, 40),
    REQUEST_TAG: (0, 8),
}

# Which critical options are understood, and which may not repeat (RFC 7252 §5.4), is decided
# inline in the hot option loops of `server.py` (requests) and `client.py` (responses).


def encode_uint(value: int) -> bytes:
    """Minimal big-endian encoding; 0 is the empty string (RFC 7252 §3.2)."""
    if value == 0:
        return b""
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


# Block sizes are 2**(SZX+4): SZX 0..6 is 16..1024 bytes; 7 is reserved (BERT, TCP only).
MIN_SZX = 0
MAX_SZX = 6


def size_to_szx(size: int) -> int:
    """The largest SZX whose block size is <= ``size`` (16 <= size; 1024 if larger)."""
    if size < 16:
        raise ValueError(f"block size {size} is below the CoAP minimum of 16")
    return min(MAX_SZX, size.bit_length() - 5)


def szx_to_size(szx: int) -> int:
    return 1 << (szx + 4)


class BlockValue(NamedTuple):
    """A Block1 or Block2 option value: block number, more flag, size exponent."""

    num: int
    more: bool
    szx: int

    @property
    def size(self) -> int:
        return 1 << (self.szx + 4)

    @property
    def offset(self) -> int:
        return self.num << (self.szx + 4)

    def encode(self) -> bytes:
        return encode_uint((self.num << 4) | (8 if self.more else 0) | self.szx)


def decode_block(value: bytes) -> BlockValue | None:
    """Block option value, or ``None`` for SZX 7 (reserved on UDP) or a number past 2**20-1."""
    raw = int.from_bytes(value, "big")
    szx = raw & 7
    if szx == 7 or len(value) > 3:
        return None
    return BlockValue(raw >> 4, bool(raw & 8), szx)


# Observe option values (RFC 7641 §2): in a request 0 registers and 1 deregisters; in a
# notification it is a 24-bit sequence number.
OBSERVE_REGISTER = 0
OBSERVE_DEREGISTER = 1
OBSERVE_SEQ_MODULUS = 1 << 24


def observe_is_fresher(v1: int, t1: float, v2: int, t2: float) -> bool:
    """RFC 7641 §3.4: is notification (v2, received at t2) newer than (v1, t1)?

    Sequence numbers are compared in serial-number arithmetic over 24 bits; after 128 s the
    numbers may have wrapped, so a later arrival wins regardless.
    """
    return (
        (v1 < v2 and v2 - v1 < (1 << 23))
        or (v1 > v2 and v1 - v2 > (1 << 23))
        or t2 > t1 + 128.0
    )


__all__ = [name for name in dir() if not name.startswith("_") and name not in ("annotations",
                                                                                "NamedTuple")]
