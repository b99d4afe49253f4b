#!/usr/bin/env python3
"""Turn proto/vectors/vectors.json into a C header for the firmware's codec tests.

Run at build time (the header is never committed): `gen_vectors.py VECTORS_JSON OUT_H`.
Each vector becomes {type, name, bytes, len}; the C tests pick the types the codec handles.
The `auth` section (the first registration's keys) becomes auth_* constants.
"""

from __future__ import annotations

import json
import sys


def c_bytes(hex_text: str) -> str:
    data = bytes.fromhex(hex_text)
    if not data:
        return "{0}"
    return "{" + ",".join(f"0x{b:02x}" for b in data) + "}"


def table(name: str, rows: list[dict], field: str = "hex") -> list[str]:
    out = []
    for i, row in enumerate(rows):
        out.append(f"static const uint8_t {name}_{i}[] = {c_bytes(row[field])};")
    out.append(f"static const struct vec {name}[] = {{")
    for i, row in enumerate(rows):
        n = len(bytes.fromhex(row[field]))
        extra = ""
        if "canonical" in row:
            extra = f", {name}_canon_{i}, {len(bytes.fromhex(row['canonical']))}"
        else:
            extra = ", 0, 0"
        level = row.get("level", "")
        out.append(f'  {{"{row["type"]}", "{row["name"]}", {name}_{i}, {n}{extra}, "{level}"}},')
    out.append("  {0, 0, 0, 0, 0, 0, 0},\n};")
    return out


def auth(a: dict[str, str]) -> list[str]:
    """docs/protocol.md "Authentication": the token (its UTF-8 bytes as a C string), the keys
    and nonces, and the names of the two vectors signed with them."""
    token = a["token"].encode()
    escaped = "".join(f"\\x{b:02x}" for b in token)
    out = [f'static const char auth_token[] = "{escaped}";']
    for key, size in (("token_key", 32), ("agent_nonce", 8), ("master_nonce", 8), ("secret", 16)):
        data = bytes.fromhex(a[key])
        assert len(data) == size, (key, len(data))
        out.append(f"static const uint8_t auth_{key}[{size}] = {c_bytes(a[key])};")
    for key in ("register_vector", "registered_vector"):
        out.append(f"static const char auth_{key}[] = {json.dumps(a[key])};")
    return out


def main() -> int:
    src, dst = sys.argv[1], sys.argv[2]
    with open(src, encoding="utf-8") as f:
        doc = json.load(f)
    lines = [
        "/* Generated from proto/vectors/vectors.json by gen_vectors.py: do not edit. */",
        "#include <stddef.h>",
        "#include <stdint.h>",
        "struct vec { const char *type, *name; const uint8_t *bytes; size_t len;",
        "             const uint8_t *canonical; size_t canonical_len; const char *level; };",
    ]
    nc = doc.get("noncanonical", [])
    for i, row in enumerate(nc):
        lines.append(f"static const uint8_t noncanon_canon_{i}[] = {c_bytes(row['canonical'])};")
    lines += table("positive", doc["vectors"])
    lines += table("negative", doc["negative"])
    lines += table("noncanon", nc)
    lines += auth(doc["auth"])
    with open(dst, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
