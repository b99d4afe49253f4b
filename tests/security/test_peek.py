"""The eavesdropper's OSCORE reading (peek.py) against RFC 8613 Appendix C (the C.1.1 keys,
the C.4 request and the C.6 / C.7 responses open to their plaintexts; a flipped bit does not)
and against the EdgeRM vectors of proto/vectors/oscore.json."""

from __future__ import annotations

from edgerm.coap.codes import Code
from edgerm.coap.options import URI_PATH

from .peek import Peek, kid

SECRET = bytes.fromhex("0102030405060708090a0b0c0d0e0f10")
SALT = bytes.fromhex("9e7ca92223786340")
# C.1.1: the client's Sender ID is empty, the server's 0x01.
CLIENT = Peek(SECRET, 0, SALT, master_id=b"\x01", agent_kid=b"")
REQUEST = bytes.fromhex("44025d1f00003974396c6f63616c686f7374620914ff612f1092f1776f1c1668b3825e")


def test_keys_of_c_1_1() -> None:
    assert CLIENT.agent_key.hex() == "f0910ed7295e6ad4b54fc793154302ff"
    assert CLIENT.master_key.hex() == "ffb14e093c94c9cac9471648b4f98710"
    assert CLIENT.common_iv.hex() == "4622d4dd6d944168eefb54987c"


def test_request_of_c_4() -> None:
    opened = CLIENT.request(REQUEST)
    assert opened is not None and opened.seq == 20 and opened.kid == b""
    assert opened.inner.code == Code.GET and opened.inner.opts(URI_PATH) == [b"tv1"]
    assert CLIENT.request(REQUEST[:-1] + bytes([REQUEST[-1] ^ 1])) is None


def test_responses_of_c_6_and_c_7() -> None:
    c6 = bytes.fromhex("64445d1f0000397490ffdbaad1e9a7e7b2a813d3c31524378303cdafae119106")
    opened = CLIENT.response(c6, REQUEST)
    assert opened is not None and opened.inner.code == Code.CONTENT
    assert opened.inner.payload == b"Hello World!"
    c7 = bytes.fromhex("64445d1f00003974920100ff4d4c13669384b67354b2b6175ff4b8658c666a6cf88e")
    opened = CLIENT.response(c7, REQUEST)
    assert opened is not None and opened.piv == b"\x00"
    assert opened.inner.payload == b"Hello World!"
    assert CLIENT.response(c7[:-3] + b"\x00\x00\x00", REQUEST) is None


def test_kid_is_the_agent_id_in_minimal_bytes() -> None:
    assert [kid(n) for n in (1, 255, 256, 65535, 65536)] == [
        b"\x01", b"\xff", b"\x01\x00", b"\xff\xff", b"\x01\x00\x00"]


def test_edgerm_vectors_open_with_the_independent_reading() -> None:
    """proto/vectors/oscore.json (made with edgerm.oscore) agrees with this reading: every
    EdgeRM request and response opens to its plaintext, every must-refuse case does not."""
    import json
    from pathlib import Path

    v = json.loads((Path(__file__).resolve().parents[2] / "proto" / "vectors" /
                    "oscore.json").read_text())["edgerm"]
    peek = Peek(bytes.fromhex(v["secret"]), v["agent_id"])
    assert peek.agent_key.hex() == v["agent_context"]["sender_key"]
    assert peek.master_key.hex() == v["master_context"]["sender_key"]
    requests = {r["name"]: r for r in v["requests"]}
    for r in v["requests"]:
        opened = peek.request(bytes.fromhex(r["datagram"]))
        assert opened is not None and opened.seq == r["seq"], r["name"]
        assert opened.inner.payload == bytes.fromhex(r["payload"]), r["name"]
    for r in v["responses"]:
        req = bytes.fromhex(requests[r["request"]]["datagram"])
        opened = peek.response(bytes.fromhex(r["datagram"]), req)
        assert opened is not None and opened.inner.code == r["inner_code"], r["name"]
        assert opened.inner.payload == bytes.fromhex(r["payload"]), r["name"]
    # (A reader keeps no replay window and is not the master's policy on options: only the
    # cases whose tag must fail apply to it.)
    refused = [c for c in v["must_refuse"] if c["receiver"] == "master"
               and c["error"] == "DecryptFailed"]
    assert refused
    for c in refused:
        assert peek.request(bytes.fromhex(c["datagram"])) is None, c["name"]
