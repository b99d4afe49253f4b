"""CBOR for EdgeRM's CBOR-encoded protobuf, written for kilobytes.

The data model is the wire's: a message is a dict {field number: value}; values are int, float,
bool, str, bytes, list and dict. `enc` writes deterministic CBOR (RFC 8949 §4.2.1: shortest
heads, shortest float that keeps the value, map keys sorted) straight into a caller's buffer, so
a datagram is built in place. `decode` distrusts its input: it accepts indefinite-length items
and raises only ValueError for anything else wrong (truncation, reserved encodings, bad UTF-8,
tags, simple values other than true/false, map keys that are not unsigned integers, duplicate
keys, nesting deeper than 16, trailing bytes). The schema (which field holds what) is the
caller's business.
"""

import math
import struct
from micropython import const

_MAX_DEPTH = const(16)
_INDEF = const(-1)

# ---------------------------------------------------------------------------------------------
# Encoding: enc(buf, i, value) -> index after the item. IndexError means the buffer is too small.


def _head(b, i, major, n):
    m = major << 5
    if n < 24:
        b[i] = m | n
        return i + 1
    if n < 0x100:
        struct.pack_into(">BB", b, i, m | 24, n)
        return i + 2
    if n < 0x10000:
        struct.pack_into(">BH", b, i, m | 25, n)
        return i + 3
    if n < 0x100000000:
        struct.pack_into(">BI", b, i, m | 26, n)
        return i + 5
    struct.pack_into(">BQ", b, i, m | 27, n)
    return i + 9


def _half(v):
    # The IEEE half with exactly v's value, or None. Written out because not every port's
    # struct knows "e", and the MAC needs the same bytes on every port.
    if v != v:
        return 0x7E00
    s = 0x8000 if math.copysign(1.0, v) < 0 else 0
    a = -v if s else v
    if a == 0:
        return s
    if a == math.inf:
        return s | 0x7C00
    m, e = math.frexp(a)
    if e > 16:
        return None
    if e >= -13:
        f = m * 2048
        if f != int(f):
            return None
        return s | ((e + 14) << 10) | (int(f) - 1024)
    f = a * 16777216
    return s | int(f) if f == int(f) else None


def _put(b, i, data):
    j = i + len(data)
    if j > len(b):
        raise IndexError
    b[i:j] = data
    return j


def enc(b, i, v):
    if v is False or v is True:
        b[i] = 0xF5 if v else 0xF4
        return i + 1
    t = type(v)
    if t is int:
        return _head(b, i, 0, v) if v >= 0 else _head(b, i, 1, -1 - v)
    if t is str:
        v = v.encode()
        return _put(b, _head(b, i, 3, len(v)), v)
    if t is bytes or t is bytearray or t is memoryview:
        return _put(b, _head(b, i, 2, len(v)), v)
    if t is list or t is tuple:
        i = _head(b, i, 4, len(v))
        for x in v:
            i = enc(b, i, x)
        return i
    if t is dict:
        i = _head(b, i, 5, len(v))
        for k in sorted(v):
            i = enc(b, _head(b, i, 0, k), v[k])
        return i
    if t is float:
        h = _half(v)
        if h is not None:
            struct.pack_into(">BH", b, i, 0xF9, h)
            return i + 3
        if struct.unpack(">f", struct.pack(">f", v))[0] == v:
            struct.pack_into(">Bf", b, i, 0xFA, v)
            return i + 5
        struct.pack_into(">Bd", b, i, 0xFB, v)
        return i + 9
    raise TypeError


# ---------------------------------------------------------------------------------------------
# Decoding: a cursor in two module globals (no per-item objects).

_b = b""
_p = 0


def _take(n):
    global _p
    j = _p + n
    if j > len(_b):
        raise ValueError("truncated")
    _p = j
    return j


def _head_in():
    # -> (major, info, argument or _INDEF)
    global _p
    j = _take(1)
    ib = _b[j - 1]
    major = ib >> 5
    info = ib & 31
    if info < 24:
        return major, info, info
    if info < 28:
        n = 1 << (info - 24)
        j = _take(n)
        return major, info, int.from_bytes(_b[j - n:j], "big")
    if info == 31 and major in (2, 3, 4, 5):
        return major, info, _INDEF
    raise ValueError("reserved encoding")


def _at_break():
    global _p
    if _p >= len(_b):
        raise ValueError("truncated")
    if _b[_p] == 0xFF:
        _p += 1
        return True
    return False


def _string(major, n):
    if n != _INDEF:
        j = _take(n)
        return bytes(_b[j - n:j])
    out = bytearray()
    while not _at_break():
        m, _, c = _head_in()
        if m != major or c == _INDEF:
            raise ValueError("bad chunk")
        j = _take(c)
        out += _b[j - c:j]
    return bytes(out)


def _count(n, per):
    # A definite count can be no larger than the bytes left: refuse before looping on it.
    if n != _INDEF and n * per > len(_b) - _p:
        raise ValueError("truncated")


def _item(depth):
    if depth > _MAX_DEPTH:
        raise ValueError("too deep")
    major, info, n = _head_in()
    if major == 0:
        return n
    if major == 1:
        return -1 - n
    if major == 2:
        return _string(2, n)
    if major == 3:
        return str(_string(3, n), "utf-8")
    if major == 4:
        _count(n, 1)
        out = []
        while (n == _INDEF and not _at_break()) or (n != _INDEF and len(out) < n):
            out.append(_item(depth + 1))
        return out
    if major == 5:
        _count(n, 2)
        out = {}
        k = 0
        while (n == _INDEF and not _at_break()) or (n != _INDEF and k < n):
            km, _, key = _head_in()
            if km != 0 or key in out:
                raise ValueError("bad key")
            out[key] = _item(depth + 1)
            k += 1
        return out
    if major == 7:
        if info == 20 or info == 21:
            return info == 21
        j = _p
        if info == 25:  # IEEE half
            e = (n >> 10) & 31
            f = n & 1023
            if e == 31:
                v = math.nan if f else math.inf
            elif e:
                v = math.ldexp(f + 1024, e - 25)
            else:
                v = math.ldexp(f, -24)
            return -v if n & 0x8000 else v
        if info == 26:
            return struct.unpack(">f", _b[j - 4:j])[0]
        if info == 27:
            return struct.unpack(">d", _b[j - 8:j])[0]
    raise ValueError("unsupported item")


def decode(data):
    """The message (a dict) that is one CBOR map filling all of `data` (bytes, bytearray or
    memoryview)."""
    global _b, _p
    _b = data
    _p = 0
    try:
        v = _item(1)
        if type(v) is not dict:
            raise ValueError("expected map")
        if _p != len(data):
            raise ValueError("trailing bytes")
        return v
    except (IndexError, UnicodeError, RuntimeError):
        # RuntimeError: MicroPython's "maximum recursion depth exceeded" on a small stack.
        raise ValueError("malformed")
    finally:
        _b = b""
