"""Durable records: the operations the core asks the store to make durable, named like Mesos's
registry operations.

Persist, then act: the core emits records together with the messages they allow; the shell
commits every record of a batch in one SQLite transaction and only then sends those messages.
A record holds plain values (ints, strings, encoded bytes) so the store needs no protobuf.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "Record", "AdmitAgent", "ReregisterAgent", "UpdateAgentInfo", "MarkAgentUnreachable",
    "MarkAgentReachable", "MarkAgentLost", "AckAgentUpdates", "EnqueueCommand", "AckCommands",
    "DropCommand", "AddFramework", "UpdateFramework", "MarkFrameworkRemoving", "RemoveFramework",
    "AddTask", "UpdateTaskState", "MarkTaskUnreachable", "MarkTaskLost", "MarkTaskKilled",
    "RemoveTask", "AddStatusUpdate", "AckStatusUpdate", "AddOutput", "ReleaseOutputs",
    "StoreModule", "RemoveModule", "SetOscoreSeqBound",
]


class Record:
    """Base of every durable record."""

    __slots__ = ()


# --- agents ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class AdmitAgent(Record):
    """A first registration: a new agent id with its secret."""
    agent_id: int
    secret: bytes
    info: bytes          # encoded pb.Register without token and tasks
    now: float


@dataclass(frozen=True, slots=True)
class ReregisterAgent(Record):
    """A re-registration accepted at `seq`. No registration at or below it is accepted again,
    after a master restart too: a recorded one replayed would reconcile the agent's tasks
    against a list that is no longer true (docs/protocol.md, "Authentication")."""
    agent_id: int
    seq: int


@dataclass(frozen=True, slots=True)
class UpdateAgentInfo(Record):
    """A re-registration or a heartbeat that changed resources or attributes."""
    agent_id: int
    info: bytes


@dataclass(frozen=True, slots=True)
class MarkAgentUnreachable(Record):
    agent_id: int
    since: float


@dataclass(frozen=True, slots=True)
class MarkAgentReachable(Record):
    agent_id: int


@dataclass(frozen=True, slots=True)
class MarkAgentLost(Record):
    """Past lost_after: the agent must register again to be used; it keeps id and secret."""
    agent_id: int


@dataclass(frozen=True, slots=True)
class SetOscoreSeqBound(Record):
    """The master's OSCORE Sender Sequence Number stays below `bound` until a higher bound
    is durable; a restarted or new leader starts at it (oscore_calls.next_master_seq), so
    no number is used twice, whichever master used it (docs/protocol.md)."""
    bound: int


@dataclass(frozen=True, slots=True)
class AckAgentUpdates(Record):
    """Every update_id <= update_ack from this agent is applied (written with its effects)."""
    agent_id: int
    update_ack: int


@dataclass(frozen=True, slots=True)
class EnqueueCommand(Record):
    """A command for an agent, kept until the agent acknowledges it."""
    agent_id: int
    command_id: int
    body: bytes          # encoded pb.Command


@dataclass(frozen=True, slots=True)
class AckCommands(Record):
    agent_id: int
    command_ack: int


@dataclass(frozen=True, slots=True)
class DropCommand(Record):
    """A queued command withdrawn before the agent got it (a launch killed before launch)."""
    agent_id: int
    command_id: int


# --- frameworks -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class AddFramework(Record):
    framework_id: str
    name: str
    role: str
    failover_s: float
    secret_digest: bytes  # SHA-256 of the framework secret (the secret itself is not stored)


@dataclass(frozen=True, slots=True)
class UpdateFramework(Record):
    """A re-subscription (failover) that changed name or failover timeout."""
    framework_id: str
    name: str
    failover_s: float


@dataclass(frozen=True, slots=True)
class MarkFrameworkRemoving(Record):
    """Teardown or failover timeout: its tasks are being killed; it takes no more calls."""
    framework_id: str


@dataclass(frozen=True, slots=True)
class RemoveFramework(Record):
    framework_id: str


# --- tasks ----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class AddTask(Record):
    """An accepted launch: the task, its number on the agent and what it holds."""
    framework_id: str
    task_id: str
    agent_id: int
    number: int
    spec: bytes          # encoded pb.TaskSpec
    resources: bytes     # encoded pb.Resources actually claimed
    state: int


@dataclass(frozen=True, slots=True)
class UpdateTaskState(Record):
    framework_id: str
    task_id: str
    state: int
    prev_state: int      # the state to return to after UNREACHABLE (else 0)
    reason: int
    message: str
    exit_code: int


class MarkTaskUnreachable(UpdateTaskState):
    __slots__ = ()


class MarkTaskLost(UpdateTaskState):
    __slots__ = ()


class MarkTaskKilled(UpdateTaskState):
    __slots__ = ()


@dataclass(frozen=True, slots=True)
class RemoveTask(Record):
    """A terminal task whose last status update was acknowledged: forget it."""
    framework_id: str
    task_id: str


@dataclass(frozen=True, slots=True)
class AddStatusUpdate(Record):
    """A status update to deliver at least once, in order per task, until acknowledged."""
    framework_id: str
    task_id: str
    uuid: bytes
    body: bytes          # encoded pb.TaskStatus


@dataclass(frozen=True, slots=True)
class AckStatusUpdate(Record):
    framework_id: str
    task_id: str
    uuid: bytes


@dataclass(frozen=True, slots=True)
class AddOutput(Record):
    """A publish applied (same transaction as the agent's update_ack): the task's output number
    `seq`, kept to be re-sent until the framework has surely had it. Its `seq` is the task's
    output count from now on, so numbering goes on after a restart."""
    framework_id: str
    task_id: str
    seq: int
    data: bytes
    topic: str


@dataclass(frozen=True, slots=True)
class ReleaseOutputs(Record):
    """The task's outputs up to `upto` need no re-sending (delivered, or dropped past
    outputs_kept); the task's output count stays."""
    framework_id: str
    task_id: str
    upto: int


# --- modules --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class StoreModule(Record):
    sha256: bytes
    fmt: int
    name: str
    data: bytes
    now: float


@dataclass(frozen=True, slots=True)
class RemoveModule(Record):
    sha256: bytes
