"""Actuators an agent offers as devices: what a task may set them to, and how they are driven.

An actuator is described in the config (`[[devices]]` with kind = "actuator"):
- `output = "switch"` (the default): 0 or 1, a GPIO pin or a relay;
  `output = "pwm"`: a duty cycle from 0 to 1; `output = "level"`: from `min` to `max`;
- `file = "/sys/class/leds/led0/brightness"` (optional) with an optional `scale`: each set
  writes `value × scale` there (a whole number when it is one), as sysfs GPIO, LED and PWM
  nodes want. Without `file` the actuator is simulated.

Every set, real or simulated, is appended to the actuator's journal
`<work_dir>/actuators/<name>.log`, one line `<ms since the agent started> <task> <value>`, so
an operator (and a test) can see what it was set to and when; the last line is its value now.
The journal is rotated to `<name>.log.1` past `JOURNAL_MAX_BYTES`.

`ActuatorSpec` is plain data (JSON-ready) so the WASM child process drives actuators itself,
without a round trip to the agent per set. The range check and the write live here, once, for
every executor of this agent.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["ActuatorSpec", "ActuatorError", "OUTPUTS", "in_range", "drive", "read_journal",
           "JOURNAL_MAX_BYTES"]

OUTPUTS = ("switch", "pwm", "level")
JOURNAL_MAX_BYTES = 256 * 1024


class ActuatorError(Exception):
    """The actuator could not be driven (its file is missing or not writable)."""


@dataclass(frozen=True)
class ActuatorSpec:
    name: str
    output: str = "switch"       # "switch" (0|1), "pwm" (0..1) or "level" (min..max)
    min: float = 0.0
    max: float = 1.0
    path: str = ""               # written on each set; "" = simulated
    scale: float = 1.0
    journal: str = ""            # where each set is recorded; "" = nowhere

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ActuatorSpec:
        return cls(**raw)


def in_range(spec: ActuatorSpec, value: float) -> bool:
    """Whether `value` is one the actuator takes (NaN never is)."""
    if math.isnan(value):
        return False
    if spec.output == "switch":
        return value in (0.0, 1.0)
    return spec.min <= value <= spec.max


def _text(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)


def drive(spec: ActuatorSpec, value: float, *, task: int, elapsed_ms: int) -> None:
    """Set the actuator (the caller checked the range) and record it in its journal.

    Raises `ActuatorError` when the file cannot be written; nothing is recorded then.
    """
    if spec.path:
        try:
            with open(spec.path, "w") as f:
                f.write(_text(value * spec.scale) + "\n")
        except OSError as e:
            raise ActuatorError(f"{spec.name}: {e}") from None
    if spec.journal:
        _record(spec.journal, f"{elapsed_ms} {task} {_text(value)}\n")


def _record(journal: str, line: str) -> None:
    try:
        if os.path.getsize(journal) > JOURNAL_MAX_BYTES:
            os.replace(journal, journal + ".1")
    except OSError:
        pass  # no journal yet
    for _ in range(2):
        try:
            with open(journal, "a") as f:
                f.write(line)
            return
        except FileNotFoundError:
            try:
                os.makedirs(os.path.dirname(journal) or ".", exist_ok=True)
            except OSError:
                return
        except OSError:
            return  # the actuator was set; a journal that cannot be written must not undo that


def read_journal(journal: str) -> list[tuple[int, int, float]]:
    """The journal's entries (ms, task, value), oldest first; [] when there is none."""
    try:
        with open(journal) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        ms, task, value = line.split()
        out.append((int(ms), int(task), float(value)))
    return out
