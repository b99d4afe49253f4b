"""The OSCORE option value (RFC 8613 §6.1): flags, Partial IV, kid context, kid.

::

     0 1 2 3 4 5 6 7 <------------- n bytes -------------->
    |0 0 0|h|k|  n  |       Partial IV (if any) ...
    | s (if any) | kid context (if any) | kid (if any) ... |

The decoder is strict, because every byte of it is unauthenticated input: reserved bits set,
n = 6 or 7, a lone all-zero flags byte (that value must be sent empty), a Partial IV with a
leading zero byte (not minimal, §6.1; it would let one sequence number take two forms), a
truncated kid context, or bytes after the Partial IV with the k bit clear are all
:class:`~edgerm.oscore.errors.BadOption`.
"""

from __future__ import annotations

from edgerm.oscore.errors import BadOption

FLAG_K = 0x08
FLAG_H = 0x10
_RESERVED = 0xE0


def encode_option(piv: bytes | None, kid: bytes | None,
                  kid_context: bytes | None = None) -> bytes:
    """The option value for the given parameters; all absent gives the empty value."""
    flags = 0
    out = bytearray(1)
    if piv is not None:
        if not 0 < len(piv) <= 5:
            raise ValueError("a Partial IV has 1 to 5 bytes")
        flags |= len(piv)
        out += piv
    if kid_context is not None:
        if len(kid_context) > 255:
            raise ValueError("a kid context has at most 255 bytes")
        flags |= FLAG_H
        out.append(len(kid_context))
        out += kid_context
    if kid is not None:
        flags |= FLAG_K
        out += kid
    if flags == 0:
        return b""
    out[0] = flags
    return bytes(out)


def decode_option(value: bytes) -> tuple[bytes | None, bytes | None, bytes | None]:
    """``(piv, kid, kid_context)`` of an option value, each ``None`` when absent."""
    if not value:
        return None, None, None
    flags = value[0]
    if flags & _RESERVED:
        raise BadOption("OSCORE option: reserved flag bits are set")
    n = flags & 7
    if n > 5:
        raise BadOption(f"OSCORE option: Partial IV length {n} is reserved")
    end = 1 + n
    if end > len(value):
        raise BadOption("OSCORE option: truncated Partial IV")
    piv: bytes | None = None
    if n:
        piv = value[1:end]
        if n > 1 and piv[0] == 0:
            raise BadOption("OSCORE option: Partial IV is not in minimal form")
    kid_context: bytes | None = None
    if flags & FLAG_H:
        if end >= len(value):
            raise BadOption("OSCORE option: missing kid context length")
        s = value[end]
        start = end + 1
        end = start + s
        if end > len(value):
            raise BadOption("OSCORE option: truncated kid context")
        kid_context = value[start:end]
    kid: bytes | None = None
    if flags & FLAG_K:
        kid = value[end:]
    elif end != len(value):
        raise BadOption("OSCORE option: bytes after the Partial IV without the k flag")
    if flags == 0:
        raise BadOption("OSCORE option: an all-zero flags byte must be sent as the empty value")
    return piv, kid, kid_context


__all__ = ["encode_option", "decode_option", "FLAG_K", "FLAG_H"]
