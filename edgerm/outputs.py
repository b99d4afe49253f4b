"""How a task's published bytes are shown to a person: the CLI (`edgerm run --output`), the local
cluster's demo and the dashboard (through the HTTP API's `shown`) all use this one guess, so a
reading looks the same everywhere.

Outputs are opaque bytes on the wire; the guess exists because the example sampler publishes
f64 readings and everything else publishes text. Callers that know the format pass it."""

from __future__ import annotations

import struct

__all__ = ["format_output"]


def format_output(data: bytes, how: str = "auto") -> str:
    """Published bytes for a terminal. `text`: UTF-8; `hex`; `f64`: a little-endian double
    (what the example sampler publishes); `auto`: 8 bytes holding a double of everyday size
    (or any 8 bytes that are not printable text) as an f64, other printable UTF-8 as text, the
    rest as hex.

    The size test comes first because a double's six low bytes are noise that is printable
    UTF-8 often enough (21.3 can be the bytes of "ֱP#k$5@"); the two high bytes of an everyday
    double are "?", "@" or "A" followed by little else, so 8-character text is rarely taken
    for a number. Pass `--output` when the task's format is known."""
    if how == "hex":
        return data.hex()
    if how == "f64" or (how == "auto" and len(data) == 8
                        and (_everyday_double(data) or not _printable(data))):
        if len(data) == 8:
            return f"{struct.unpack('<d', data)[0]:g}"
        return data.hex()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return data.hex()
    if how == "auto" and not _printable(data):
        return data.hex()
    return text.rstrip("\n")


def _everyday_double(data: bytes) -> bool:
    value = abs(struct.unpack("<d", data)[0])
    return value == 0.0 or 1e-6 <= value < 1e9


def _printable(data: bytes) -> bool:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c in "\t\r\n" for c in text)
