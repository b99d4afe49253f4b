"""CBOR-encoded protobuf: protobuf messages to and from deterministic CBOR, driven by descriptors.

The mapping (docs/wire.md has the full table): a message is a CBOR map keyed by field number;
integers and enums are CBOR integers, bool is a CBOR bool, double the shortest CBOR float that
keeps its value, bytes a byte string, string a text string, repeated an array, a nested message a
nested map, a oneof exactly one key. Fields at their default are omitted; a present oneof member or
sub-message is written even when empty. Encoding is deterministic (RFC 8949 §4.2.1): shortest
heads, shortest exact floats, keys ascending. `to_tree` gives the CBOR data model of a message,
and cbor2's canonical encoder of it is the reference the tests hold `encode` to.

Decoding is schema-directed and distrusts its input: it reads the CBOR item a field's type calls
for, so every error names the message and the field. It accepts indefinite-length items and
non-shortest heads, skips unknown field numbers (forward compatibility), and refuses everything in
the list below with one exception type, `DecodeError`:
wrong CBOR type, invalid UTF-8, trailing bytes, nesting deeper than `Limits.max_depth`, a
string/bytes/array longer than its limit, a map key that is not a non-negative integer, duplicate
keys, integers outside the field's range, truncated input, reserved or unassigned CBOR encodings.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, TypeVar

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

__all__ = [
    "DecodeError", "Limits", "DEFAULT_LIMITS", "encode", "decode", "to_tree", "cbor_head",
]

M = TypeVar("M", bound=Message)


class DecodeError(ValueError):
    """Bad bytes from the network. The message names the protobuf message and field."""


@dataclass(frozen=True)
class Limits:
    """Bounds on what one decode may accept. Defaults suit control traffic; module uploads
    raise `max_bytes` explicitly."""

    max_depth: int = 16          # our deepest legal message nests 6 maps; 16 leaves room
    max_string: int = 64 * 1024  # text: names, messages, env values
    max_bytes: int = 64 * 1024   # byte strings: hashes, chunks, published data
    max_items: int = 4096        # elements of one array or entries of one map
    max_input: int = 8 * 1024 * 1024


DEFAULT_LIMITS = Limits()

# ---------------------------------------------------------------------------------------------
# Encoding

_T = FieldDescriptor
_MESSAGE = _T.TYPE_MESSAGE
_ENUM = _T.TYPE_ENUM
_DOUBLE_TYPES = frozenset({_T.TYPE_DOUBLE, _T.TYPE_FLOAT})
_REPEATED = _T.LABEL_REPEATED


def _is_repeated(fd: FieldDescriptor) -> bool:
    # `label` is deprecated in newer protobuf releases in favour of `is_repeated`.
    rep = getattr(fd, "is_repeated", None)
    return bool(rep) if rep is not None else fd.label == _REPEATED


def to_tree(msg: Message) -> dict[int, Any]:
    """The CBOR data model of a message: {field number: value}, defaults left out."""
    tree: dict[int, Any] = {}
    for fd, value in msg.ListFields():
        t = fd.type
        if _is_repeated(fd):
            if t == _MESSAGE:
                tree[fd.number] = [to_tree(v) for v in value]
            elif t in _DOUBLE_TYPES:
                tree[fd.number] = [float(v) for v in value]
            else:
                tree[fd.number] = list(value)
        elif t == _MESSAGE:
            tree[fd.number] = to_tree(value)
        elif t in _DOUBLE_TYPES:
            tree[fd.number] = float(value)
        else:
            tree[fd.number] = value
    return tree


_pack_half = struct.Struct(">e").pack
_pack_single = struct.Struct(">f").pack
_pack_double = struct.Struct(">d").pack
_unpack_half = struct.Struct(">e").unpack
_unpack_single = struct.Struct(">f").unpack
_STRING = _T.TYPE_STRING
_BYTES = _T.TYPE_BYTES
_BOOL = _T.TYPE_BOOL
_INT_TYPES = frozenset({
    _T.TYPE_UINT32, _T.TYPE_FIXED32, _T.TYPE_UINT64, _T.TYPE_FIXED64, _T.TYPE_INT32,
    _T.TYPE_SINT32, _T.TYPE_SFIXED32, _T.TYPE_INT64, _T.TYPE_SINT64, _T.TYPE_SFIXED64, _ENUM,
})


def cbor_head(major: int, n: int) -> bytes:
    """The shortest head for major type `major` and argument `n` (RFC 8949 §4.2.1)."""
    mt = major << 5
    if n < 24:
        return bytes((mt | n,))
    if n < 0x100:
        return bytes((mt | 24, n))
    if n < 0x10000:
        return bytes((mt | 25,)) + n.to_bytes(2, "big")
    if n < 0x100000000:
        return bytes((mt | 26,)) + n.to_bytes(4, "big")
    return bytes((mt | 27,)) + n.to_bytes(8, "big")


def _float_bytes(x: float) -> bytes:
    """The shortest of float16/32/64 that keeps `x` exactly; NaN as the canonical f97e00."""
    if x != x:
        return b"\xf9\x7e\x00"
    try:
        half = _pack_half(x)
        if _unpack_half(half)[0] == x:
            return b"\xf9" + half
    except OverflowError:
        pass
    try:
        single = _pack_single(x)
        if _unpack_single(single)[0] == x:
            return b"\xfa" + single
    except OverflowError:
        pass
    return b"\xfb" + _pack_double(x)


def _encode_value(t: int, v: Any, out: bytearray) -> None:
    if t == _MESSAGE:
        _encode_message(v, out)
    elif t == _STRING:
        b = v.encode("utf-8")
        out += cbor_head(3, len(b))
        out += b
    elif t == _BYTES:
        out += cbor_head(2, len(v))
        out += v
    elif t == _BOOL:
        out += b"\xf5" if v else b"\xf4"
    elif t in _DOUBLE_TYPES:
        out += _float_bytes(v)
    else:  # integers and enums
        out += cbor_head(0, v) if v >= 0 else cbor_head(1, -1 - v)


# Per field descriptor: (the canonical head of its key, repeated?, type), so the hot loop does no
# descriptor attribute reads or head arithmetic per field.
_ENC_FIELDS: dict[FieldDescriptor, tuple[bytes, bool, int]] = {}


def _enc_field(fd: FieldDescriptor) -> tuple[bytes, bool, int]:
    info = (cbor_head(0, fd.number), _is_repeated(fd), fd.type)
    _ENC_FIELDS[fd] = info
    return info


_SMALL_MAP_HEADS = [cbor_head(5, n) for n in range(24)]


def _encode_message(msg: Message, out: bytearray) -> None:
    # ListFields() yields the present fields in field-number order, which for our integer keys
    # is exactly the canonical key order, so no sorting pass is needed.
    fields = msg.ListFields()
    n = len(fields)
    out += _SMALL_MAP_HEADS[n] if n < 24 else cbor_head(5, n)
    table = _ENC_FIELDS
    for fd, value in fields:
        info = table.get(fd)
        if info is None:
            info = _enc_field(fd)
        key, repeated, t = info
        out += key
        if repeated:
            out += cbor_head(4, len(value))
            for item in value:
                _encode_value(t, item, out)
        elif t == _MESSAGE:
            _encode_message(value, out)
        elif t == _STRING:
            b = value.encode("utf-8")
            n = len(b)
            out += bytes((0x60 | n,)) if n < 24 else cbor_head(3, n)
            out += b
        elif t in _INT_TYPES:
            if 0 <= value < 24:
                out.append(value)
            else:
                out += cbor_head(0, value) if value >= 0 else cbor_head(1, -1 - value)
        else:
            _encode_value(t, value, out)


def encode(msg: Message) -> bytes:
    """Deterministic CBOR bytes of `msg` (RFC 8949 §4.2.1).

    One pass from the message to bytes. cbor2's canonical encoder of `to_tree(msg)` gives the
    same bytes (the tests hold the two together); this path is 1.4-3x faster, which the master's
    heartbeat path needs (bench/README.md, wire codec).
    """
    out = bytearray()
    _encode_message(msg, out)
    return bytes(out)


# ---------------------------------------------------------------------------------------------
# Decoding

_INT_RANGES: dict[int, tuple[int, int]] = {
    _T.TYPE_UINT32: (0, 2**32 - 1),
    _T.TYPE_FIXED32: (0, 2**32 - 1),
    _T.TYPE_UINT64: (0, 2**64 - 1),
    _T.TYPE_FIXED64: (0, 2**64 - 1),
    _T.TYPE_INT32: (-(2**31), 2**31 - 1),
    _T.TYPE_SINT32: (-(2**31), 2**31 - 1),
    _T.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    _ENUM: (-(2**31), 2**31 - 1),
    _T.TYPE_INT64: (-(2**63), 2**63 - 1),
    _T.TYPE_SINT64: (-(2**63), 2**63 - 1),
    _T.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
}

_MAJOR_NAMES = (
    "unsigned integer", "negative integer", "byte string", "text string",
    "array", "map", "tag", "simple value or float",
)

_INDEFINITE = -1
_BREAK = 0xFF


class _Reader:
    """A cursor over untrusted bytes. Raises `_Bad` with a bare reason; the schema walk adds
    the message and field to it."""

    __slots__ = ("buf", "pos", "limits")

    def __init__(self, buf: bytes, limits: Limits) -> None:
        self.buf = buf
        self.pos = 0
        self.limits = limits

    def head(self) -> tuple[int, int, int]:
        """(major type, additional info, argument or _INDEFINITE) of the next item."""
        buf, pos = self.buf, self.pos
        if pos >= len(buf):
            raise _Bad("truncated input")
        ib = buf[pos]
        major, info = ib >> 5, ib & 0x1F
        if info < 24:
            self.pos = pos + 1
            return major, info, info
        if info <= 27:
            n = 1 << (info - 24)
            end = pos + 1 + n
            if end > len(buf):
                raise _Bad("truncated input")
            self.pos = end
            return major, info, int.from_bytes(buf[pos + 1:end], "big")
        if info == 31 and major in (2, 3, 4, 5, 7):
            self.pos = pos + 1
            return major, info, _INDEFINITE
        raise _Bad(f"reserved additional information {info} in initial byte 0x{ib:02x}")

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.buf):
            raise _Bad("truncated input")
        data = self.buf[self.pos:end]
        self.pos = end
        return data

    def at_break(self) -> bool:
        if self.pos >= len(self.buf):
            raise _Bad("truncated input")
        if self.buf[self.pos] == _BREAK:
            self.pos += 1
            return True
        return False


class _Bad(Exception):
    """Internal: a reason without its location."""


def _string(r: _Reader, major: int, arg: int, limit: int) -> bytes:
    if arg != _INDEFINITE:
        if arg > limit:
            raise _Bad(f"length {arg} over the limit of {limit}")
        return r.take(arg)
    chunks = []
    total = 0
    while not r.at_break():
        cmajor, _, carg = r.head()
        if cmajor != major or carg == _INDEFINITE:
            raise _Bad("bad chunk in indefinite-length string")
        total += carg
        if total > limit:
            raise _Bad(f"length over the limit of {limit}")
        chunks.append(r.take(carg))
    return b"".join(chunks)


def _float(info: int, arg: int) -> float:
    if info == 25:
        return float(struct.unpack(">e", arg.to_bytes(2, "big"))[0])
    if info == 26:
        return float(struct.unpack(">f", arg.to_bytes(4, "big"))[0])
    if info == 27:
        return float(struct.unpack(">d", arg.to_bytes(8, "big"))[0])
    raise _Bad("expected a float")


def _skip(r: _Reader, depth: int) -> None:
    """Skip one well-formed item of any kind (an unknown field)."""
    if depth > r.limits.max_depth:
        raise _Bad(f"nesting deeper than {r.limits.max_depth}")
    major, info, arg = r.head()
    if major in (0, 1):
        return
    if major in (2, 3):
        _string(r, major, arg, r.limits.max_bytes if major == 2 else r.limits.max_string)
        return
    if major in (4, 5):
        per = 1 if major == 4 else 2
        if arg == _INDEFINITE:
            n = 0
            while not r.at_break():
                for _ in range(per):
                    _skip(r, depth + 1)
                n += 1
                if n > r.limits.max_items:
                    raise _Bad(f"more than {r.limits.max_items} items")
            return
        if arg > r.limits.max_items:
            raise _Bad(f"{arg} items over the limit of {r.limits.max_items}")
        for _ in range(arg * per):
            _skip(r, depth + 1)
        return
    if major == 6:
        _skip(r, depth + 1)
        return
    # major 7
    if arg == _INDEFINITE:
        raise _Bad("unexpected break")
    if info == 24 and arg < 32:
        raise _Bad("invalid simple value encoding")


def _where(desc: Descriptor, fd: FieldDescriptor | None) -> str:
    return f"{desc.name}.{fd.name}" if fd is not None else desc.name


# Field kinds of the decode table.
_K_INT, _K_FLOAT, _K_BOOL, _K_STR, _K_BYTES, _K_MSG = range(6)


class _Field:
    """What decoding needs of one field, read once from its descriptor (the hot loop then does
    no descriptor attribute reads or type dispatch through sets)."""

    __slots__ = ("fd", "name", "kind", "repeated", "oneof", "lo", "hi")

    def __init__(self, fd: FieldDescriptor) -> None:
        t = fd.type
        self.fd = fd
        self.name = fd.name
        self.repeated = _is_repeated(fd)
        oneof = fd.containing_oneof
        self.oneof = oneof.name if oneof is not None else None
        self.lo, self.hi = _INT_RANGES.get(t, (0, 0))
        if t in _INT_RANGES:
            self.kind = _K_INT
        elif t in _DOUBLE_TYPES:
            self.kind = _K_FLOAT
        elif t == _BOOL:
            self.kind = _K_BOOL
        elif t == _STRING:
            self.kind = _K_STR
        elif t == _BYTES:
            self.kind = _K_BYTES
        elif t == _MESSAGE:
            self.kind = _K_MSG
        else:  # pragma: no cover - the schema has none
            raise TypeError(f"unsupported field type {t} of {fd.full_name}")


_DEC_TABLES: dict[str, dict[int, _Field]] = {}


def _dec_table(desc: Descriptor) -> dict[int, _Field]:
    table = _DEC_TABLES.get(desc.full_name)
    if table is None:
        table = {num: _Field(fd) for num, fd in desc.fields_by_number.items()}
        _DEC_TABLES[desc.full_name] = table
    return table


def _scalar(r: _Reader, f: _Field) -> Any:
    kind = f.kind
    if kind == _K_INT:  # one-byte unsigned integers (0..23), every type's range holds them
        pos = r.pos
        if pos < len(r.buf) and r.buf[pos] < 24:
            r.pos = pos + 1
            return r.buf[pos]
    major, info, arg = r.head()
    if kind == _K_INT:
        if major == 0 and arg != _INDEFINITE:
            value = arg
        elif major == 1 and arg != _INDEFINITE:
            value = -1 - arg
        else:
            raise _Bad(f"expected integer, got {_MAJOR_NAMES[major]}")
        if not f.lo <= value <= f.hi:
            raise _Bad(f"integer {value} out of range")
        return value
    if kind == _K_STR:
        if major != 3:
            raise _Bad(f"expected text string, got {_MAJOR_NAMES[major]}")
        raw = _string(r, 3, arg, r.limits.max_string)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _Bad("invalid UTF-8") from None
    if kind == _K_BYTES:
        if major != 2:
            raise _Bad(f"expected byte string, got {_MAJOR_NAMES[major]}")
        return _string(r, 2, arg, r.limits.max_bytes)
    if kind == _K_FLOAT:
        if major != 7 or info not in (25, 26, 27):
            raise _Bad(f"expected float, got {_MAJOR_NAMES[major]}")
        return _float(info, arg)
    # _K_BOOL
    if major == 7 and info in (20, 21):
        return info == 21
    raise _Bad(f"expected bool, got {_MAJOR_NAMES[major]}")


def _message(r: _Reader, msg: Message, depth: int) -> None:
    desc = msg.DESCRIPTOR
    if depth > r.limits.max_depth:
        raise DecodeError(f"{desc.name}: nesting deeper than {r.limits.max_depth}")
    try:
        major, _, count = r.head()
    except _Bad as e:
        raise DecodeError(f"{desc.name}: {e}") from None
    if major != 5:
        raise DecodeError(f"{desc.name}: expected map, got {_MAJOR_NAMES[major]}")
    max_items = r.limits.max_items
    if count != _INDEFINITE and count > max_items:
        raise DecodeError(f"{desc.name}: {count} entries over the limit of {max_items}")
    msg.SetInParent()
    seen: set[int] = set()
    oneofs_seen: set[str] = set()
    table = _dec_table(desc)
    n = 0
    while True:
        f: _Field | None = None
        try:
            if count == _INDEFINITE:
                if r.at_break():
                    break
                n += 1
                if n > max_items:
                    raise _Bad(f"more than {max_items} entries")
            else:
                if n == count:
                    break
                n += 1
            pos = r.pos
            if pos < len(r.buf) and r.buf[pos] < 24:  # a key 0..23 in one byte: the usual case
                key = r.buf[pos]
                r.pos = pos + 1
            else:
                kmajor, _, key = r.head()
                if kmajor != 0 or key == _INDEFINITE:
                    raise _Bad(
                        f"map key must be a non-negative integer, got {_MAJOR_NAMES[kmajor]}")
            if key in seen:
                raise _Bad(f"duplicate key {key}")
            seen.add(key)
            f = table.get(key)
            if f is None:
                _skip(r, depth + 1)
                continue
            oneof = f.oneof
            if oneof is not None:
                if oneof in oneofs_seen:
                    raise _Bad(f"a second member of oneof {oneof}")
                oneofs_seen.add(oneof)
            if f.repeated:
                _repeated(r, msg, f, depth)
            elif f.kind == _K_MSG:
                _message(r, getattr(msg, f.name), depth + 1)
            else:
                setattr(msg, f.name, _scalar(r, f))
        except _Bad as e:
            raise DecodeError(f"{_where(desc, f.fd if f is not None else None)}: {e}") from None
        except DecodeError as e:
            if f is None:
                raise
            raise DecodeError(f"{_where(desc, f.fd)} > {e}") from None


def _repeated(r: _Reader, msg: Message, f: _Field, depth: int) -> None:
    major, _, count = r.head()
    if major != 4:
        raise _Bad(f"expected array, got {_MAJOR_NAMES[major]}")
    if count != _INDEFINITE and count > r.limits.max_items:
        raise _Bad(f"{count} items over the limit of {r.limits.max_items}")
    target = getattr(msg, f.name)
    is_msg = f.kind == _K_MSG
    n = 0
    while True:
        if count == _INDEFINITE:
            if r.at_break():
                return
            if n >= r.limits.max_items:
                raise _Bad(f"more than {r.limits.max_items} items")
        elif n == count:
            return
        n += 1
        if is_msg:
            _message(r, target.add(), depth + 1)
        else:
            target.append(_scalar(r, f))


def decode(
    cls: type[M], data: bytes | bytearray | memoryview, limits: Limits = DEFAULT_LIMITS
) -> M:
    """Decode untrusted bytes into a new `cls`. Raises only `DecodeError`."""
    name = cls.DESCRIPTOR.name
    if len(data) > limits.max_input:
        raise DecodeError(
            f"{name}: input of {len(data)} bytes over the limit of {limits.max_input}"
        )
    r = _Reader(bytes(data), limits)
    msg = cls()
    try:
        _message(r, msg, 1)
    except RecursionError:
        raise DecodeError(f"{name}: nesting too deep") from None
    except (ValueError, TypeError) as e:
        if isinstance(e, DecodeError):
            raise
        raise DecodeError(f"{name}: {e}") from None
    if r.pos != len(r.buf):
        raise DecodeError(f"{name}: {len(r.buf) - r.pos} trailing bytes")
    return msg
