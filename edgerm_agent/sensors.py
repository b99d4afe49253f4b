"""Sensors an agent offers as devices: real ones read from a file, simulated ones computed.

A sensor is described in the config (`[[devices]]` with kind = "sensor") by exactly one source:
- `constant = 21.5`
- `sine = { mean = 20.0, amplitude = 5.0, period_s = 60.0 }` (phase 0 at the agent's start)
- `file = "/sys/class/thermal/thermal_zone0/temp"` with an optional `scale` (0.001 for m°C)

On a gateway (docs/gateway.md) a task may also read the latest reading a device behind it
published: the name "<device>/<topic>" (`read_reading`), from the file the gateway keeps.

`SensorSpec` is plain data (JSON-ready) so the WASM child process can read sensors itself,
without a round trip to the agent per reading.
"""

from __future__ import annotations

import math
import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

__all__ = ["SensorSpec", "SensorError", "read_reading", "read_sensor", "reading_path",
           "reading_value"]


class SensorError(Exception):
    """The sensor did not answer (file missing, unreadable, not a number)."""


@dataclass(frozen=True)
class SensorSpec:
    name: str
    source: str                  # "constant", "sine" or "file"
    value: float = 0.0           # constant
    mean: float = 0.0            # sine
    amplitude: float = 1.0
    period_s: float = 60.0
    path: str = ""               # file
    scale: float = 1.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> SensorSpec:
        return cls(**raw)


def read_sensor(spec: SensorSpec, elapsed_s: float) -> float:
    """One reading; `elapsed_s` is the time since the agent started (for simulated sensors)."""
    if spec.source == "constant":
        return spec.value
    if spec.source == "sine":
        return spec.mean + spec.amplitude * math.sin(2 * math.pi * elapsed_s / spec.period_s)
    if spec.source == "file":
        try:
            with open(spec.path, "rb") as f:
                text = f.read(64)
            return float(text.strip()) * spec.scale
        except (OSError, ValueError) as e:
            raise SensorError(f"{spec.name}: {e}") from None
    raise SensorError(f"{spec.name}: unknown source {spec.source!r}")


def reading_path(readings: Path, device: str, topic: str) -> Path:
    """Where the latest reading of `device` under `topic` lives: names are quoted, so no name
    can leave the directory ("" and "." become their quoted forms too)."""
    def part(name: str) -> str:
        q = quote(name, safe="")
        return q if q not in ("", ".", "..") else "%" + q.encode().hex()
    return readings / part(device) / part(topic or "data")


def reading_value(data: bytes) -> float:
    """A published reading as a number: its text ("21.5") or 8 bytes of little-endian f64.
    Raises ValueError for anything else."""
    if len(data) == 8:
        try:
            return float(data.decode("ascii").strip())
        except (UnicodeDecodeError, ValueError):
            return float(struct.unpack("<d", data)[0])
    return float(data.decode("utf-8", "strict").strip())


def read_reading(readings: Path, name: str) -> float | None:
    """The latest reading named "<device>/<topic>" under `readings` (a gateway's), None when the
    device never published under that topic. Raises SensorError when it is not a number."""
    device, _, topic = name.partition("/")
    try:
        data = reading_path(readings, device, topic).read_bytes()
    except OSError:
        return None
    try:
        return reading_value(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise SensorError(f"{name}: the device's reading is not a number ({e})") from None
