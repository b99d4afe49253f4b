"""The agent core's plain data (edgerm_agent/core.py): its configuration, what it keeps of
each task, the call in flight, and the task-state and executor tables they use."""

from __future__ import annotations

from dataclasses import dataclass

from edgerm.wire import pb

__all__ = ["CoreConfig", "TaskRecord", "InFlight", "TERMINAL_STATES", "EXECUTOR_OF_KIND"]

TERMINAL_STATES = frozenset({pb.FINISHED, pb.FAILED, pb.KILLED, pb.ERROR, pb.LOST, pb.DROPPED})

# Which executor a TaskSpec's `kind` oneof needs.
EXECUTOR_OF_KIND = {"docker": pb.DOCKER, "wasm": pb.WASM, "micropython": pb.MICROPYTHON}


@dataclass(frozen=True)
class CoreConfig:
    """Everything the core needs from the agent's configuration."""

    name: str
    token: str
    resources: pb.Resources
    attributes: tuple[pb.Attribute, ...]
    executors: tuple[int, ...]
    #: largest payload the agent accepts in one reply (Register.max_payload; 0 means 1024).
    max_payload: int = 0
    #: interval used until the master tells us its own (Registered.heartbeat_ms).
    heartbeat_s: float = 5.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    #: publishes queued beyond this are refused (the task sees EDGERM_E_AGAIN).
    max_queued_publishes: int = 256


@dataclass
class TaskRecord:
    """What the agent knows about one task; survives restarts through the checkpoint."""

    task: int
    spec: pb.TaskSpec
    state: int
    reason: int = pb.REASON_UNSPECIFIED
    message: str = ""
    exit_code: int = 0
    #: update_id of the update that reported `state`; 0 when none is queued.
    update_id: int = 0
    #: why a kill was asked for this task (0: none). Checkpointed before the kill is carried
    #: out, so that a task killed across an agent crash is still reported KILLED.
    kill_reason: int = pb.REASON_UNSPECIFIED

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def executor(self) -> int:
        return EXECUTOR_OF_KIND.get(self.spec.WhichOneof("kind") or "", pb.EXECUTOR_UNSPECIFIED)


@dataclass
class InFlight:
    """The one call in flight and what its reply must be checked against."""

    seq: int
    kind: str                      # "register", "heartbeat", "update", "module"
    fresh: bool = False            # register without identity
    nonce: bytes = b""             # fresh register: ours, for deriving the secret
    command_ack: int = 0           # heartbeat: the ack it carried
    update_id: int = 0
    module: pb.ModuleRequest | None = None

