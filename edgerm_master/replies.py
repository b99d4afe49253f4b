"""Signed AgentReply bytes built from pre-encoded parts: the heartbeat reply's fast path.

A reply re-sends the agent's unacknowledged commands, each already encoded once when it was
queued, so a reply is assembled from those bytes instead of re-encoding protobuf messages twice
(once to compute the MAC, once with it). The result is byte for byte what
`edgerm.wire.sign(pb.AgentReply(...), secret)` gives (tests/master/test_replies.py holds the two
together): a canonical CBOR map with keys in field order 1 seq, 2 mac, 3 update_ack,
4 commands, 5 registered, 6 error, 7 module; fields at their default are left out.
"""

from __future__ import annotations

from edgerm.wire import compute_mac
from edgerm.wire.codec import cbor_head as _head

__all__ = ["build_reply", "launch_command"]


def build_reply(secret: bytes | None, seq: int = 0, update_ack: int = 0,
                commands: list[bytes] | None = None, registered: bytes | None = None,
                error: bytes | None = None, module: bytes | None = None) -> bytes:
    """The encoded AgentReply; signed (field 2) when `secret` is given.

    `commands` are encoded pb.Command maps; `registered`, `error`, `module` encoded
    pb.Registered / pb.Error / pb.ModuleChunk maps (each present even when empty).
    """
    first = b""
    n = 0
    if seq:
        first = b"\x01" + _head(0, seq)
        n += 1
    rest = bytearray()
    if update_ack:
        rest += b"\x03"
        rest += _head(0, update_ack)
        n += 1
    if commands:
        rest += b"\x04"
        rest += _head(4, len(commands))
        for c in commands:
            rest += c
        n += 1
    for key, part in ((b"\x05", registered), (b"\x06", error), (b"\x07", module)):
        if part is not None:
            rest += key
            rest += part
            n += 1
    if secret is None:
        return _head(5, n) + first + bytes(rest)
    mac = compute_mac(secret, _head(5, n) + first + bytes(rest))
    return _head(5, n + 1) + first + b"\x02" + _head(2, len(mac)) + mac + bytes(rest)


def launch_command(command_id: int, number: int, spec: bytes) -> bytes:
    """Encoded `pb.Command{id, launch{task: number, spec}}` from the encoded TaskSpec, which
    the task keeps anyway (ids and numbers start at 1, so both keys are always present)."""
    return (b"\xa2\x01" + _head(0, command_id) + b"\x02\xa2\x01" + _head(0, number) + b"\x02"
            + spec)
