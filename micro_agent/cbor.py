"""CBOR for EdgeRM's CBOR-encoded protobuf, written for kilobytes.

The data model is the wire's: a message is a dict {field number: value}; values are int, float,
bool, str, bytes, list and dict. `enc` writes deterministic CBOR (RFC 8949 §4.2.1: shortest
heads, shortest float that keeps the value, map keys sorted) straight into a caller's buffer, so
a datagram is built in place. `decode` distrusts its input: it accepts indefinite-length items
and raises ValueError("malformed CBOR") for anything else wrong (truncation, reserved encodings,
bad UTF-8, tags, simple values other than true/false, map keys that are not unsigned integers,
duplicate keys, nesting deeper than 16, trailing bytes). The schema (which field holds what) is the
caller's business.
"""

import math
import struct
from micropython import const

_MAX_DEPTH = const(16)
_INDEF = const(-1)

# ---------------------------------------------------------------------------------------------
# Encoding: enc(buf, i, value) -> index after the item. IndexError means the buffer is too small.
# enc(None, 0, value) -> the encoding as bytes (not a new function: each global costs heap).


def _head(buf, pos, t, n):
    # The head of an item of major type t and argument n, shortest form.
    m = t << 5
    if n < 24:
        buf[pos] = m | n
        return pos + 1
    k = 0 if n < 0x100 else 1 if n < 0x10000 else 2 if n < 0x100000000 else 3
    w = 1 << k  # argument bytes, big-endian
    buf[pos] = m | (24 + k)
    for x in range(w, 0, -1):
        buf[pos + x] = n & 0xFF
        n >>= 8
    return pos + 1 + w


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


def _put(buf, pos, data):
    j = pos + len(data)
    if j > len(buf):
        raise IndexError
    buf[pos:j] = data
    return j


def enc(buf, pos, v):
    if buf is None:  # enc(None, 0, v): v encoded as bytes (a state file, a queued update)
        buf = bytearray(64)
        while True:
            try:
                return bytes(memoryview(buf)[:enc(buf, 0, v)])
            except IndexError:
                buf = bytearray(2 * len(buf))
    if v is False or v is True:
        buf[pos] = 0xF5 if v else 0xF4
        return pos + 1
    t = type(v)
    if t is int:
        return _head(buf, pos, 0, v) if v >= 0 else _head(buf, pos, 1, -1 - v)
    if t is str:
        v = v.encode()
        return _put(buf, _head(buf, pos, 3, len(v)), v)
    if t is bytes or t is bytearray or t is memoryview:
        return _put(buf, _head(buf, pos, 2, len(v)), v)
    if t is list or t is tuple:
        pos = _head(buf, pos, 4, len(v))
        for x in v:
            pos = enc(buf, pos, x)
        return pos
    if t is dict:
        pos = _head(buf, pos, 5, len(v))
        for k in sorted(v):
            pos = enc(buf, _head(buf, pos, 0, k), v[k])
        return pos
    if t is float:
        h = _half(v)
        if h is not None:
            buf[pos] = 0xF9
            buf[pos + 1] = h >> 8
            buf[pos + 2] = h & 0xFF
            return pos + 3
        f = struct.pack(">f", v)
        if struct.unpack(">f", f)[0] == v:
            buf[pos] = 0xFA
            return _put(buf, pos + 1, f)
        buf[pos] = 0xFB
        return _put(buf, pos + 1, struct.pack(">d", v))
    raise TypeError


# ---------------------------------------------------------------------------------------------
# Decoding: a cursor in two module globals (no per-item objects).

_b = b""
_p = 0


def _take(n):
    global _p
    j = _p + n
    if j > len(_b):
        raise ValueError
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
    raise ValueError


def _at_break():
    global _p
    if _b[_p] == 0xFF:  # (past the end: IndexError, which decode turns into its ValueError)
        _p += 1
        return True
    return False


def _string(t, n):
    if n != _INDEF:
        j = _take(n)
        return bytes(_b[j - n:j])
    out = bytearray()
    while not _at_break():
        m, _, c = _head_in()
        if m != t or c == _INDEF:
            raise ValueError
        j = _take(c)
        out += _b[j - c:j]
    return bytes(out)


def _item(depth):
    if depth > _MAX_DEPTH:
        raise ValueError
    major, info, n = _head_in()
    if major == 0:
        return n
    if major == 1:
        return -1 - n
    if major == 2:
        return _string(2, n)
    if major == 3:
        return str(_string(3, n), "utf-8")
    if major == 4 or major == 5:  # an array, or a map (one loop for both)
        # a count no larger than the bytes left (a map's items are two each)
        if n != _INDEF and (major - 3) * n > len(_b) - _p:
            raise ValueError
        out = [] if major == 4 else {}
        k = 0
        while (n == _INDEF and not _at_break()) or (n != _INDEF and k < n):
            if major == 4:
                out.append(_item(depth + 1))
            else:
                km, _, key = _head_in()
                if km != 0 or key in out:  # map keys: unsigned integers, each once
                    raise ValueError
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
        if info > 25:  # 26 single, 27 double (28.. were refused by _head_in)
            return struct.unpack(">f" if info == 26 else ">d", _b[j - (1 << info - 24):j])[0]
    raise ValueError


def decode(data):
    """The message (a dict) that is one CBOR map filling all of `data` (bytes, bytearray or
    memoryview)."""
    global _b, _p
    _b = data
    _p = 0
    try:
        v = _item(1)
        if type(v) is not dict or _p != len(data):  # not a map, or trailing bytes
            raise ValueError
        return v
    except (ValueError, IndexError, RuntimeError):
        # One message for every way it can be wrong: no caller tells them apart, and a text
        # for each was ~200 B of bytecode. (UnicodeError is a ValueError; RuntimeError is
        # MicroPython's "maximum recursion depth exceeded" on a small stack.)
        raise ValueError("malformed CBOR")
    finally:
        _b = b""
