"""The steady heartbeat, read straight from its bytes (most of the master's traffic).

A steady heartbeat is `AgentCall{agent_id, seq, mac, heartbeat{}}` or with
`heartbeat{command_ack}`: in canonical CBOR `{1: id, 2: seq, 3: mac8, 5: {}}` or
`{..., 5: {1: ack}}`. `parse_steady_heartbeat_untrusted` recognises exactly those and returns the
bytes the MAC covers (the same map without key 3), so the core can check the MAC without decoding
into protobuf and re-encoding. Anything else (another call, another field, a non-shortest head,
indefinite lengths) returns None and takes the general path, which gives the same answer; so
this is only a shortcut, never a second parser with its own rules. What a heartbeat changes is
not here either: both paths apply it through `agents.heard_from` and `commands.take_ack`.
"""

from __future__ import annotations

__all__ = ["parse_steady_heartbeat_untrusted", "parse_protected_heartbeat_ack"]


def _uint(data: bytes, i: int) -> tuple[int, int]:
    """A shortest-form unsigned integer at i -> (value, next index); (-1, i) if not one."""
    if i >= len(data):
        return -1, i
    b = data[i]
    if b < 0x18:
        return b, i + 1
    if b == 0x18 and i + 1 < len(data) and data[i + 1] >= 0x18:
        return data[i + 1], i + 2
    if b == 0x19 and i + 2 < len(data):
        v = (data[i + 1] << 8) | data[i + 2]
        return (v, i + 3) if v > 0xFF else (-1, i)
    if b == 0x1A and i + 4 < len(data):
        v = int.from_bytes(data[i + 1:i + 5], "big")
        return (v, i + 5) if v > 0xFFFF else (-1, i)
    return -1, i


def parse_steady_heartbeat_untrusted(data: bytes) -> tuple[int, int, bytes, bytes, int] | None:
    """(agent_id, seq, mac, unsigned bytes, command_ack) of a steady heartbeat, else None.

    Cannot raise.
    """
    n = len(data)
    if n < 16 or n > 40 or data[0] != 0xA4 or data[1] != 0x01:
        return None
    aid, i = _uint(data, 2)
    if aid <= 0 or i >= n or data[i] != 0x02:
        return None
    seq, i = _uint(data, i + 1)
    if seq <= 0 or i + 10 > n or data[i] != 0x03 or data[i + 1] != 0x48:
        return None
    mac_start = i
    mac = data[i + 2:i + 10]
    i += 10
    tail = data[i:]
    if tail == b"\x05\xa0":
        ack = 0
    elif len(tail) >= 4 and tail[:3] == b"\x05\xa1\x01":
        ack, j = _uint(tail, 3)
        if ack <= 0 or j != len(tail):
            return None
    else:
        return None
    unsigned = b"\xa3" + data[1:mac_start] + tail
    return aid, seq, mac, unsigned, ack


def parse_protected_heartbeat_ack(data: bytes) -> int:
    """The command_ack of a steady OSCORE-protected heartbeat `{5: {1: ack}}` (no agent_id,
    seq or mac: OSCORE carries them), 0 for `{5: {}}`, -1 for anything else. Cannot raise."""
    if data == b"\xa1\x05\xa0":
        return 0
    if len(data) < 5 or data[:4] != b"\xa1\x05\xa1\x01":
        return -1
    ack, j = _uint(data, 4)
    return ack if ack > 0 and j == len(data) else -1
