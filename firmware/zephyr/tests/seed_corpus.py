#!/usr/bin/env python3
"""Seed the fuzz corpus with every wire vector (positive, negative, non-canonical) and a few
CoAP datagrams wrapping them: `seed_corpus.py VECTORS_JSON OUT_DIR`."""

from __future__ import annotations

import json
import pathlib
import sys


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
    return 0


if __name__ == "__main__":
    sys.exit(main())
