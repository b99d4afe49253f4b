"""CoAP message types and codes (RFC 7252 §3, §12.1; FETCH/PATCH from RFC 8132).

Codes are plain ``int`` on the wire and in :class:`~edgerm.coap.message.Message` (the hot
path never builds enum members); :class:`Code` gives them names. A code byte is
``class << 5 | detail`` and is written "c.dd".
"""

from __future__ import annotations

from enum import IntEnum

# Message types (2-bit field of the header).
CON = 0
NON = 1
ACK = 2
RST = 3
TYPE_NAMES = ("CON", "NON", "ACK", "RST")


class Code(IntEnum):
    EMPTY = 0x00
    GET = 0x01
    POST = 0x02
    PUT = 0x03
    DELETE = 0x04
    FETCH = 0x05  # RFC 8132
    PATCH = 0x06
    IPATCH = 0x07

    CREATED = 0x41  # 2.01
    DELETED = 0x42
    VALID = 0x43
    CHANGED = 0x44
    CONTENT = 0x45
    CONTINUE = 0x5F  # 2.31, RFC 7959

    BAD_REQUEST = 0x80  # 4.00
    UNAUTHORIZED = 0x81
    BAD_OPTION = 0x82
    FORBIDDEN = 0x83
    NOT_FOUND = 0x84
    METHOD_NOT_ALLOWED = 0x85
    NOT_ACCEPTABLE = 0x86
    REQUEST_ENTITY_INCOMPLETE = 0x88  # 4.08, RFC 7959
    CONFLICT = 0x89
    PRECONDITION_FAILED = 0x8C
    REQUEST_ENTITY_TOO_LARGE = 0x8D  # 4.13
    UNSUPPORTED_CONTENT_FORMAT = 0x8F

    INTERNAL_SERVER_ERROR = 0xA0  # 5.00
    NOT_IMPLEMENTED = 0xA1
    BAD_GATEWAY = 0xA2
    SERVICE_UNAVAILABLE = 0xA3
    GATEWAY_TIMEOUT = 0xA4
    PROXYING_NOT_SUPPORTED = 0xA5


METHODS = frozenset((Code.GET, Code.POST, Code.PUT, Code.DELETE, Code.FETCH, Code.PATCH,
                     Code.IPATCH))


def is_request(code: int) -> bool:
    """Class 0 with a non-zero detail is a request (0.00 is the empty message)."""
    return 0 < code < 32


def is_response(code: int) -> bool:
    """Classes 2, 4 and 5 are responses; 1, 3, 6 and 7 are reserved (RFC 7252 §12.1)."""
    return (code >> 5) in (2, 4, 5)


def is_success(code: int) -> bool:
    return (code >> 5) == 2


def code_str(code: int) -> str:
    """Dotted form, e.g. ``0x45 -> "2.05"``; for logs and error messages."""
    return f"{code >> 5}.{code & 0x1F:02d}"


__all__ = ["CON", "NON", "ACK", "RST", "TYPE_NAMES", "Code", "METHODS", "is_request",
           "is_response", "is_success", "code_str"]
