"""The agent's checkpoint: the core's `snapshot()` in two slot files, written alternately.

Why two slots: the checkpoint is written before every call that carries something new (a
launch taken, an update queued), so its cost sits on the launch path. Replacing one file
atomically (tmp + fsync + rename + directory fsync) costs two journal commits, 4–20 ms here.
Instead the agent keeps `agent.ckpt.0` and `agent.ckpt.1` open and overwrites the older one in
place, then `fdatasync`s it: one flush, and no metadata change while the size does not grow
(~0.3 ms). Each slot starts with a header — magic, generation, length, CRC-32 of the JSON
body — so a slot torn by a crash or a power cut mid-write fails its check, and `load()` takes
the valid slot with the highest generation. A torn slot is always the one being written, whose
save had not returned, so nothing the master saw depended on it.

An older agent's `agent.json` (one file, atomically replaced) is read when no slot exists, and
removed once the first slot is on disk.

Error handling: `load()` raises `CheckpointError` with a message that says what to do when the
checkpoint exists but no slot is usable; it never starts an agent with a half-read state.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path
from typing import Any

__all__ = ["Checkpoint", "CheckpointError", "corrupt", "SLOT_NAMES", "LEGACY_NAME"]

SLOT_NAMES = ("agent.ckpt.0", "agent.ckpt.1")
LEGACY_NAME = "agent.json"
_MAGIC = b"ERMC"
_HEADER = struct.Struct(">4sQII")  # magic, generation, body length, crc32(body)
# A snapshot is small (tasks and queued updates, each bounded); anything larger is damage.
_MAX_BODY = 64 * 1024 * 1024


class CheckpointError(Exception):
    """The checkpoint exists but cannot be read; the agent refuses to start rather than forget
    its tasks (move the file away to start afresh). The message says what to do."""


def corrupt(path: Path, why: str) -> CheckpointError:
    """The error for a checkpoint that is there but unusable, with the way out."""
    return CheckpointError(
        f"checkpoint {path} is corrupt ({why}): move it away to register as a new agent "
        "(the master then ends the old agent's tasks as lost)")


class Checkpoint:
    """`load()` once at start, then `save(snapshot)` (blocking: call it in a thread)."""

    def __init__(self, work_dir: str | os.PathLike[str]) -> None:
        self.dir = Path(work_dir)
        self.slots = tuple(self.dir / n for n in SLOT_NAMES)
        self.legacy = self.dir / LEGACY_NAME
        #: what to name in messages: the slots (as a glob) once they exist.
        self.path = self.dir / "agent.ckpt.*"
        self._fds: list[int] = []
        self._generation = 0
        self._sizes = [0, 0]

    # -- reading -------------------------------------------------------------------------------

    def load(self) -> dict[str, Any] | None:
        """The last saved snapshot, or None when there is none."""
        found: list[tuple[int, dict[str, Any]]] = []
        problems: list[str] = []
        written = 0
        first_torn = False
        for slot in self.slots:
            try:
                raw = slot.read_bytes()
            except FileNotFoundError:
                continue
            except OSError as e:
                raise CheckpointError(f"cannot read checkpoint {slot} ({e.strerror}): fix its "
                                      "permissions, or move it away to register as a new "
                                      "agent") from None
            if not raw:
                continue  # created, never written
            written += 1
            try:
                found.append(_parse_slot(raw))
            except ValueError as e:
                problems.append(f"{slot.name}: {e}")
                first_torn = _first_save_torn(raw)
        if found:
            generation, snap = max(found, key=lambda f: f[0])
            self._generation = generation
            return snap
        if written > 1 or (written == 1 and not first_torn):
            raise corrupt(self.path, "; ".join(problems))
        # No slot, or only the very first save, torn by a crash: that save never returned, so
        # nothing left the agent that depended on it.
        return self._load_legacy()

    def _load_legacy(self) -> dict[str, Any] | None:
        try:
            raw = self.legacy.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise CheckpointError(f"cannot read checkpoint {self.legacy} ({e.strerror}): fix "
                                  "its permissions, or move it away to register as a new "
                                  "agent") from None
        self.path = self.legacy
        try:
            snap = json.loads(raw)
        except ValueError as e:
            raise corrupt(self.legacy, f"not valid JSON: {e}") from None
        if not isinstance(snap, dict) or snap.get("version") != 1:
            raise corrupt(self.legacy, "not a version 1 agent checkpoint")
        return snap

    # -- writing -------------------------------------------------------------------------------

    def save(self, snapshot: dict[str, Any]) -> None:
        """Durable when it returns (one fdatasync once the slots exist)."""
        if not self._fds:
            self._open_slots()
        body = json.dumps(snapshot, separators=(",", ":"), sort_keys=True).encode()
        self._generation += 1
        i = self._generation % 2
        data = _HEADER.pack(_MAGIC, self._generation, len(body), zlib.crc32(body)) + body
        fd = self._fds[i]
        written = 0
        while written < len(data):
            written += os.pwrite(fd, data[written:], written)
        os.fdatasync(fd)
        self._sizes[i] = max(self._sizes[i], len(data))
        if self.legacy.exists():
            # Both slots must hold a valid snapshot before the old file may go: the other one
            # is empty until the second save.
            if self._generation >= 2 and all(self._sizes):
                self.legacy.unlink()
                self._fsync_dir()

    def _open_slots(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        created = False
        for slot in self.slots:
            created |= not slot.exists()
            self._fds.append(os.open(slot, os.O_RDWR | os.O_CREAT, 0o600))
        self._sizes = [os.fstat(fd).st_size for fd in self._fds]
        if created:
            self._fsync_dir()  # the new names themselves must survive a power cut
        self.path = self.dir / "agent.ckpt.*"

    def _fsync_dir(self) -> None:
        dfd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds = []


def _first_save_torn(raw: bytes) -> bool:
    """Whether unusable slot bytes can be the agent's very first save, cut short."""
    if len(raw) < _HEADER.size:
        return _MAGIC.startswith(raw) if len(raw) < len(_MAGIC) else raw[:4] == _MAGIC
    magic, generation, _, _ = _HEADER.unpack_from(raw)
    return bool(magic == _MAGIC and generation == 1)


def _parse_slot(raw: bytes) -> tuple[int, dict[str, Any]]:
    """(generation, snapshot) of one slot's bytes; ValueError saying what is wrong."""
    if len(raw) == 0:
        raise ValueError("empty")
    if len(raw) < _HEADER.size:
        raise ValueError("shorter than its header")
    magic, generation, length, crc = _HEADER.unpack_from(raw)
    if magic != _MAGIC:
        raise ValueError("not an agent checkpoint slot")
    if length > _MAX_BODY or _HEADER.size + length > len(raw):
        raise ValueError("torn (shorter than its header says)")
    body = raw[_HEADER.size:_HEADER.size + length]
    if zlib.crc32(body) != crc:
        raise ValueError("torn (checksum mismatch)")
    try:
        snap = json.loads(body)
    except ValueError as e:
        raise ValueError(f"not valid JSON: {e}") from None
    if not isinstance(snap, dict) or snap.get("version") != 1:
        raise ValueError("not a version 1 agent checkpoint")
    return generation, snap
