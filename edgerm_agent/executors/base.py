"""What an executor gets from the agent for one task, and the bounded output tail."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio

from edgerm.wire import pb

__all__ = ["TaskContext", "OutputTail", "MAX_MESSAGE"]

# StatusUpdate.message from a Linux agent: at most 4 KiB (docs/protocol.md).
MAX_MESSAGE = 4096


class OutputTail:
    """The last `limit` bytes of a task's output, cut at line and UTF-8 boundaries."""

    def __init__(self, limit: int = MAX_MESSAGE) -> None:
        self.limit = limit
        self._buf = bytearray()

    def add(self, data: bytes) -> None:
        self._buf += data
        if not data.endswith(b"\n"):
            self._buf += b"\n"
        if len(self._buf) > 2 * self.limit:
            del self._buf[: len(self._buf) - self.limit]

    def text(self, extra: str = "") -> str:
        raw = bytes(self._buf) + (extra.encode() if extra else b"")
        return tail_text(raw, self.limit)


def tail_text(raw: bytes, limit: int = MAX_MESSAGE) -> str:
    """At most `limit` bytes from the end of `raw`, as text, without a torn character."""
    if len(raw) > limit:
        raw = raw[-limit:]
        while raw and (raw[0] & 0xC0) == 0x80:  # drop a torn UTF-8 sequence at the cut
            raw = raw[1:]
    return raw.decode("utf-8", "replace").rstrip("\n")


@dataclass
class TaskContext:
    """One task as an executor sees it.

    Error handling: `report` never raises; a report for a task that is already terminal is
    ignored by the core (first terminal state wins).
    """

    task: int
    spec: pb.TaskSpec
    #: report(state, reason=..., message=..., exit_code=...): records it durably, queues it.
    report: Callable[..., None]
    #: publish(data) -> waits until the agent's update queue has room, then queues it.
    publish: Callable[[bytes], Awaitable[None]]
    #: flush() -> returns once every report so far is in the checkpoint on disk.
    flush: Callable[[], Awaitable[None]]
    #: set when the master asked to kill the task; `kill_reason` says why.
    killed: trio.Event = field(default_factory=trio.Event)
    kill_reason: int = pb.KILL_REQUESTED
    #: re-attach after an agent restart instead of launching.
    recovered: bool = False
