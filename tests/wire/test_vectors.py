"""The shared vectors in proto/vectors/vectors.json, against our codec and against cbor2."""

from __future__ import annotations

import json
from pathlib import Path

import cbor2
import pytest
from google.protobuf import json_format

from edgerm.wire import DecodeError, Limits, decode, encode, pb, to_tree

ROOT = Path(__file__).resolve().parents[2]
DATA = json.loads((ROOT / "proto/vectors/vectors.json").read_text())
LIMITS = Limits(**DATA["limits"])


def _cls(name: str) -> type:
    return getattr(pb, name)


@pytest.mark.parametrize("v", DATA["vectors"], ids=lambda v: v["name"])
def test_vector_encodes_and_decodes(v: dict) -> None:
    msg = json_format.ParseDict(v["json"], _cls(v["type"])())
    raw = bytes.fromhex(v["hex"])
    assert encode(msg) == raw
    assert decode(_cls(v["type"]), raw, LIMITS) == msg
    # An independent decoder agrees on the structure, so the vector does not merely echo us.
    assert cbor2.loads(raw) == to_tree(msg)


@pytest.mark.parametrize("v", DATA["noncanonical"], ids=lambda v: v["name"])
def test_noncanonical_input_decodes_to_canonical(v: dict) -> None:
    msg = decode(_cls(v["type"]), bytes.fromhex(v["hex"]), LIMITS)
    assert encode(msg).hex() == v["canonical"]


@pytest.mark.parametrize("v", DATA["negative"], ids=lambda v: v["name"])
def test_negative_vector_rejected_with_reason(v: dict) -> None:
    with pytest.raises(DecodeError) as err:
        decode(_cls(v["type"]), bytes.fromhex(v["hex"]), LIMITS)
    assert v["reason"] in str(err.value)
    assert str(err.value).startswith(v["type"])


def test_vectors_cover_every_message_type_and_field() -> None:
    covered: set[str] = set()
    types = {v["type"] for v in DATA["vectors"]}
    for v in DATA["vectors"]:
        msg = json_format.ParseDict(v["json"], _cls(v["type"])())
        stack = [msg]
        while stack:
            m = stack.pop()
            for fd, value in m.ListFields():
                covered.add(fd.full_name)
                if fd.type == fd.TYPE_MESSAGE:
                    stack.extend(value if fd.is_repeated else [value])
    every_field = {
        fd.full_name
        for d in pb.DESCRIPTOR.message_types_by_name.values() for fd in d.fields
    }
    assert set(pb.DESCRIPTOR.message_types_by_name) <= types
    assert every_field - covered == set()


def test_vectors_file_is_current() -> None:
    import importlib.util

    path = ROOT / "proto/vectors/make_vectors.py"
    spec = importlib.util.spec_from_file_location("make_vectors", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    built = mod.build()
    # The MAC'd vectors are deterministic too, so the whole file must match.
    assert built == DATA, "vectors.json is stale: run python proto/vectors/make_vectors.py"
