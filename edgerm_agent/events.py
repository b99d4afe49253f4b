"""What the agent's core asks of its shell: the events `AgentCore.next_event()` returns and the
calls `AgentCore.next_call()` gives to send (sans-IO, the vocabulary of `edgerm_agent.core`).

The shell (`edgerm_agent.shell`) carries each event out: start or stop a task, fetch a module,
take a chunk of one; `Registered` tells it the session is up (and whether earlier tasks are
orphans now). Every event is a frozen dataclass: it says what to do, it holds no state.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgerm.wire import pb

__all__ = [
    "LaunchTask", "KillTask", "FetchModule", "ModuleChunk", "ModuleFailed", "Registered",
    "Refused", "SwitchMaster", "Event", "OutgoingCall",
]


@dataclass(frozen=True)
class LaunchTask:
    """Start `task` with `spec`; its STARTING update is already queued."""

    task: int
    spec: pb.TaskSpec


@dataclass(frozen=True)
class KillTask:
    """Stop `task` and report it KILLED with `reason`."""

    task: int
    reason: int = pb.KILL_REQUESTED


@dataclass(frozen=True)
class FetchModule:
    """Put module `sha256` into the cache ahead of a launch."""

    sha256: bytes
    size: int


@dataclass(frozen=True)
class ModuleChunk:
    """A piece of a module, answering `request_module()`."""

    sha256: bytes
    offset: int
    total: int
    data: bytes


@dataclass(frozen=True)
class ModuleFailed:
    """The master could not give the module asked for with `request_module()`."""

    sha256: bytes
    message: str


@dataclass(frozen=True)
class Registered:
    """The session is registered. `fresh`: a new identity (earlier tasks are orphans)."""

    agent_id: int
    fresh: bool


@dataclass(frozen=True)
class Refused:
    """The master refused a call with an error: for the shell to log. `call` is the call's
    kind, `fresh` marks a first registration (signed with the token's key), `retry_at` is when
    the core tries again (None: it does not retry this call)."""

    call: str
    code: int
    message: str
    fresh: bool
    retry_at: float | None


@dataclass(frozen=True)
class SwitchMaster:
    """Advice to move to another configured master: `leader` is the URL a standby named in a
    NOT_LEADER refusal ("" when it named none; after a timeout or a lost connection the shell
    moves on its own). The shell picks the master (edgerm.masters.MasterList) and, if it
    moved, calls `AgentCore.master_changed`."""

    leader: str


Event = (LaunchTask | KillTask | FetchModule | ModuleChunk | ModuleFailed | Registered
         | Refused | SwitchMaster)


@dataclass(frozen=True)
class OutgoingCall:
    """An AgentCall to send; `data` is the encoded message: signed, or, when `protected`,
    bare (no agent_id, seq or mac) for the link to OSCORE-protect with `seq` as its
    Partial IV (`AgentCore.oscore_context()`)."""

    seq: int
    kind: str
    data: bytes
    protected: bool = False
