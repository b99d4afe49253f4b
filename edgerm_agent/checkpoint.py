"""The agent's checkpoint: one JSON file in its work dir, replaced atomically.

The core's `snapshot()` (identity, seq, command_ack, task table, unacknowledged updates) is
written to a temporary file, fsynced, renamed over `agent.json` and the directory fsynced, so a
SIGKILL or a power cut leaves either the old or the new checkpoint, never a torn one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["Checkpoint", "CheckpointError", "corrupt"]

FILENAME = "agent.json"


class CheckpointError(Exception):
    """The checkpoint exists but cannot be read; the agent refuses to start rather than forget
    its tasks (move the file away to start afresh). The message says what to do."""


def corrupt(path: Path, why: str) -> CheckpointError:
    """The error for a checkpoint that is there but unusable, with the way out."""
    return CheckpointError(
        f"checkpoint {path} is corrupt ({why}): move it away to register as a new agent "
        "(the master then ends the old agent's tasks as lost)")


class Checkpoint:
    def __init__(self, work_dir: str | os.PathLike[str]) -> None:
        self.dir = Path(work_dir)
        self.path = self.dir / FILENAME

    def load(self) -> dict[str, Any] | None:
        """The last saved snapshot, or None when there is none."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise CheckpointError(f"cannot read checkpoint {self.path} ({e.strerror}): "
                                  "fix its permissions, or move it away to register as a new "
                                  "agent") from None
        try:
            snap = json.loads(raw)
        except ValueError as e:
            raise corrupt(self.path, f"not valid JSON: {e}") from None
        if not isinstance(snap, dict) or snap.get("version") != 1:
            raise corrupt(self.path, "not a version 1 agent checkpoint")
        return snap

    def save(self, snapshot: dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        data = json.dumps(snapshot, separators=(",", ":"), sort_keys=True).encode()
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        dfd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
