"""What the master core hands its shell: the answer to an agent call and the messages to send
after a commit (the core's output vocabulary, as h11's `_events.py`). Plain slotted dataclasses;
the shell matches on their types.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgerm.wire import pb

__all__ = ["ToFramework", "CloseFramework", "ToAgent", "ModuleRead", "AgentResult", "Outgoing"]


@dataclass(slots=True)
class ToFramework:
    """Send `event` on framework connection `conn` (after the commit)."""
    conn: int
    event: pb.FrameworkEvent


@dataclass(slots=True)
class CloseFramework:
    """Close framework connection `conn` (after sending what precedes this)."""
    conn: int
    reason: str
    # The connection never subscribed: its first call was refused (a policy violation).
    refused: bool = False


@dataclass(slots=True)
class ToAgent:
    """Push this signed `AgentReply` (seq 0) on the agent's Observe or WebSocket."""
    agent_id: int
    data: bytes


@dataclass(slots=True)
class ModuleRead:
    """The shell reads `length` bytes at `offset` of a module and answers with a ModuleChunk."""
    sha256: bytes
    offset: int
    length: int
    total: int
    seq: int


@dataclass(slots=True)
class AgentResult:
    """The answer to one AgentCall."""
    data: bytes               # encoded AgentReply; signed when the caller authenticated
    error: int = 0            # a pb.ErrorCode; 0 when the call succeeded
    agent_id: int = 0         # the authenticated agent, 0 if none
    module: ModuleRead | None = None


Outgoing = ToFramework | ToAgent | CloseFramework
