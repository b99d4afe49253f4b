#!/usr/bin/env python3
"""Seed the fuzz corpus with every wire vector (positive, negative, non-canonical), a few
CoAP datagrams wrapping them, and saved update-queue records (the fuzz target reads its input
back as the queue a reboot restores): `seed_corpus.py VECTORS_JSON OUT_DIR`."""

from __future__ import annotations

import json
import pathlib
import struct
import sys


def queue_entry(kind: int, task: int, state: int, reason: int, data: bytes) -> bytes:
    """One entry of the agent's update queue (agent.c: kind, state, reason, pad, task, exit
    code, u16 length, bytes), little-endian as on the host and Cortex-M4."""
    return struct.pack("<BBBBIiH", kind, state, reason, 0, task, 0, len(data)) + data


def main() -> int:
    doc = json.loads(pathlib.Path(sys.argv[1]).read_text(encoding="utf-8"))
    out = pathlib.Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    rows = doc["vectors"] + doc["negative"] + doc.get("noncanonical", [])
    for i, row in enumerate(rows):
        data = bytes.fromhex(row["hex"])
        (out / f"v{i:03d}").write_bytes(data)
        # The same payload as a piggybacked 2.04 ACK with a 1-byte token and Content-Format 60.
        coap = bytes([0x61, 0x44, 0x00, 0x01, 0x00, 0xC1, 0x3C, 0xFF]) + data if data else b""
        (out / f"c{i:03d}").write_bytes(coap)
    # Records of agent 7, secret 01 02 03 00.. (the fuzz target's identity): a publish then
    # FINISHED, and a FAILED.
    header = struct.pack("<I4sI", 7, bytes([1, 2, 3, 0]), 3)
    (out / "q000").write_bytes(header + queue_entry(7, 4, 0, 0, b"21.5")
                               + queue_entry(6, 4, 5, 0, b"done"))
    (out / "q001").write_bytes(header + queue_entry(6, 9, 6, 11, b"unreachable"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
