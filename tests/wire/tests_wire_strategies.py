"""Hypothesis strategies that build any EdgeRM message from its descriptor."""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

from edgerm.wire import pb

T = FieldDescriptor
_INTS = {
    T.TYPE_UINT32: st.integers(0, 2**32 - 1),
    T.TYPE_UINT64: st.integers(0, 2**64 - 1),
    T.TYPE_INT32: st.integers(-(2**31), 2**31 - 1),
    T.TYPE_SINT32: st.integers(-(2**31), 2**31 - 1),
    T.TYPE_INT64: st.integers(-(2**63), 2**63 - 1),
}


def _scalar(fd: FieldDescriptor) -> st.SearchStrategy[Any]:
    if fd.type in _INTS:
        return _INTS[fd.type]
    if fd.type == T.TYPE_DOUBLE:
        return st.floats(allow_nan=False)
    if fd.type == T.TYPE_BOOL:
        return st.booleans()
    if fd.type == T.TYPE_STRING:
        return st.text(max_size=40)
    if fd.type == T.TYPE_BYTES:
        return st.binary(max_size=40)
    if fd.type == T.TYPE_ENUM:
        return st.sampled_from([v.number for v in fd.enum_type.values])
    raise AssertionError(f"no strategy for {fd.full_name}")


def message(desc: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    cls = getattr(pb, desc.name)
    fields = [fd for fd in desc.fields if fd.containing_oneof is None]

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        msg = cls()
        for fd in fields:
            _draw_field(draw, msg, fd, depth)
        for oneof in desc.oneofs:
            fd = draw(st.sampled_from([None, *oneof.fields]))
            if fd is not None:
                _draw_field(draw, msg, fd, depth, force=True)
        return msg

    return build()


def _draw_field(draw: st.DrawFn, msg: Message, fd: FieldDescriptor, depth: int,
                force: bool = False) -> None:
    if fd.type == T.TYPE_MESSAGE:
        if depth >= 3:
            if force:
                getattr(msg, fd.name).SetInParent()
            return
        sub = message(fd.message_type, depth + 1)
        if fd.is_repeated:
            for item in draw(st.lists(sub, max_size=2)):
                getattr(msg, fd.name).add().CopyFrom(item)
        elif force or draw(st.booleans()):
            getattr(msg, fd.name).CopyFrom(draw(sub))
            getattr(msg, fd.name).SetInParent()
        return
    if fd.is_repeated:
        getattr(msg, fd.name).extend(draw(st.lists(_scalar(fd), max_size=3)))
    elif force or draw(st.booleans()):
        setattr(msg, fd.name, draw(_scalar(fd)))


ALL_TYPES = sorted(pb.DESCRIPTOR.message_types_by_name)
