"""Sensors an agent offers as devices: real ones read from a file, simulated ones computed.

A sensor is described in the config (`[[devices]]` with kind = "sensor") by exactly one source:
- `constant = 21.5`
- `sine = { mean = 20.0, amplitude = 5.0, period_s = 60.0 }` (phase 0 at the agent's start)
- `file = "/sys/class/thermal/thermal_zone0/temp"` with an optional `scale` (0.001 for m°C)

`SensorSpec` is plain data (JSON-ready) so the WASM child process can read sensors itself,
without a round trip to the agent per reading.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["SensorSpec", "SensorError", "read_sensor"]


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
