"""Codec properties: round trips for every message type, determinism, limits, hostile input."""

from __future__ import annotations

import math
import random

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests_wire_strategies import ALL_TYPES, message  # type: ignore[import-not-found]

from edgerm.wire import DecodeError, Limits, decode, encode, pb, to_tree


@pytest.mark.parametrize("type_name", ALL_TYPES)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_round_trip_every_message_type(type_name: str, data: st.DataObject) -> None:
    desc = pb.DESCRIPTOR.message_types_by_name[type_name]
    msg = data.draw(message(desc))
    raw = encode(msg)
    back = decode(getattr(pb, type_name), raw, Limits(max_depth=32))
    assert back == msg
    assert encode(back) == raw                       # deterministic
    assert encode(msg) == raw                        # twice, same bytes
    assert cbor2.loads(raw) == to_tree(msg)          # independent decoder agrees
    assert raw == cbor2.dumps(to_tree(msg), canonical=True)  # and cbor2's canonical encoder


def test_nan_is_canonical_half() -> None:
    assert encode(pb.Resources(cpus=float("nan"))) == bytes.fromhex("a101f97e00")


@given(st.floats(allow_nan=False))
def test_double_uses_shortest_exact_float(x: float) -> None:
    raw = encode(pb.Resources(cpus=x))
    if x == 0.0 and math.copysign(1, x) > 0:
        assert raw == b"\xa0"
        return
    head = raw[2]
    width = {0xF9: 2, 0xFA: 4, 0xFB: 8}[head]
    assert len(raw) == 3 + width
    assert decode(pb.Resources, raw).cpus == x
    # no narrower float keeps the value
    import struct
    for fmt, w in (("e", 2), ("f", 4)):
        if w < width:
            try:
                assert struct.unpack(fmt, struct.pack(fmt, x))[0] != x
            except OverflowError:
                pass


def test_keys_sorted_and_defaults_omitted() -> None:
    msg = pb.StatusUpdate(update_id=300, task=2, state=pb.RUNNING)
    assert encode(msg).hex() == "a3" + "01190 12c".replace(" ", "") + "0202" + "0303"
    assert encode(pb.StatusUpdate()) == b"\xa0"


def test_unknown_fields_skipped() -> None:
    raw = cbor2.dumps({1: 7, 50: {"nested": [1, 2, {3: b"x"}]}, 60: 2.5})
    assert decode(pb.AgentCall, raw).agent_id == 7


def test_string_bytes_and_array_limits() -> None:
    small = Limits(max_string=8, max_bytes=4, max_items=3)
    assert decode(pb.Error, encode(pb.Error(message="12345678")), small).message == "12345678"
    with pytest.raises(DecodeError, match=r"Error.message: length 9 over the limit of 8"):
        decode(pb.Error, encode(pb.Error(message="123456789")), small)
    with pytest.raises(DecodeError, match=r"Publish.data: length 5 over the limit of 4"):
        decode(pb.Publish, encode(pb.Publish(data=b"12345")), small)
    with pytest.raises(DecodeError, match=r"Set.items: 4 items over the limit of 3"):
        decode(pb.Set, encode(pb.Set(items=["a", "b", "c", "d"])), small)
    with pytest.raises(DecodeError, match=r"over the limit of 10"):
        decode(pb.Set, b"\xa0" * 11, Limits(max_input=10))


def test_indefinite_array_limit() -> None:
    raw = bytes.fromhex("a1019f") + b"\x61a" * 5 + b"\xff"
    with pytest.raises(DecodeError, match="more than 3 items"):
        decode(pb.Set, raw, Limits(max_items=3))


def test_depth_bomb_is_refused_without_recursion_error() -> None:
    raw = b"\xa1\x18\x63" + b"\x81" * 100_000 + b"\x00"
    with pytest.raises(DecodeError, match="nesting deeper"):
        decode(pb.AgentCall, raw)


def test_random_and_mutated_input_raises_only_decode_error() -> None:
    rng = random.Random(1)
    seeds = [encode(pb.AgentCall(agent_id=3, seq=9, mac=b"12345678", heartbeat=pb.Heartbeat(
        command_ack=4, resources=pb.Resources(cpus=1.5, ports=[pb.Range(begin=1, end=9)]))))]
    accepted = 0
    for i in range(20_000):
        if i % 2:
            raw = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
        else:
            b = bytearray(seeds[0])
            for _ in range(rng.randrange(1, 4)):
                b[rng.randrange(len(b))] = rng.randrange(256)
            raw = bytes(b)
        try:
            decode(pb.AgentCall, raw)
            accepted += 1
        except DecodeError:
            pass
    assert 0 < accepted < 20_000
