"""The task lifecycle as a table: every legal (state -> state) move of a task, and nothing else.

Rule 1: everything that changes a task's state goes through `check_transition()`; a pair missing
from `TRANSITIONS` is refused with `IllegalTransition` and leaves the task as it was.

Rule 2: terminal states (FINISHED, FAILED, KILLED, ERROR, LOST, DROPPED) have no way out. A task
that reached one holds no resources and is never launched again.

Rule 3: UNREACHABLE is not terminal. An agent that comes back within `lost_after` returns its
tasks to the state they had before (STAGING, STARTING, RUNNING or KILLING) without a relaunch;
past `lost_after` they become LOST.

Rule 3a: frameworks are told a subsequence of these moves, each once: never STAGING, and of a
return from UNREACHABLE only one to RUNNING that the agent reported (the agent's next update
follows the others, and is legal after UNREACHABLE). So what a framework sees is itself a path
through this table (docs/protocol.md, "What a framework sees").

Rule 4: STAGING means "accepted by the master, launch not confirmed". A kill while the launch is
still queued for the agent cancels it: STAGING -> KILLED (reason KILLED_BEFORE_LAUNCH). A launch
that can never be delivered (agent lost) gives LOST; DROPPED is for launches the master itself
threw away (framework removed before delivery).

Theory of operation: the master moves a task on three kinds of input — a framework call (kill),
an agent status update (STARTING, RUNNING, FINISHED, ...) and the clock (UNREACHABLE, LOST). All
three go through this table; the core then emits the durable record and, after the commit, the
status update for the framework.
"""

from __future__ import annotations

from edgerm.wire import pb

__all__ = [
    "TERMINAL", "ACTIVE", "TRANSITIONS", "IllegalTransition", "check_transition", "is_terminal",
    "state_name", "markdown_table",
]

S = pb.TaskState

STAGING = S.STAGING
STARTING = S.STARTING
RUNNING = S.RUNNING
KILLING = S.KILLING
FINISHED = S.FINISHED
FAILED = S.FAILED
KILLED = S.KILLED
ERROR = S.ERROR
LOST = S.LOST
UNREACHABLE = S.UNREACHABLE
DROPPED = S.DROPPED

TERMINAL: frozenset[int] = frozenset({FINISHED, FAILED, KILLED, ERROR, LOST, DROPPED})
# States in which a task holds resources on an agent.
ACTIVE: frozenset[int] = frozenset({STAGING, STARTING, RUNNING, KILLING, UNREACHABLE})

# What an agent may report, and what the master decides itself, from each non-terminal state.
_ENDINGS = frozenset({FINISHED, FAILED, KILLED, ERROR})

TRANSITIONS: dict[int, frozenset[int]] = {
    # Launch queued; the agent may skip STARTING and report RUNNING or an end directly.
    STAGING: frozenset({STARTING, RUNNING, KILLING, UNREACHABLE, LOST, DROPPED}) | _ENDINGS,
    STARTING: frozenset({RUNNING, KILLING, UNREACHABLE, LOST}) | _ENDINGS,
    RUNNING: frozenset({KILLING, UNREACHABLE, LOST}) | _ENDINGS,
    # A kill is on its way; the task may still finish or fail by itself first.
    KILLING: frozenset({UNREACHABLE, LOST}) | _ENDINGS,
    # Rule 3: back to where it was, or an end the agent reports on return, or LOST.
    UNREACHABLE: frozenset({STAGING, STARTING, RUNNING, KILLING, LOST, DROPPED}) | _ENDINGS,
    FINISHED: frozenset(),
    FAILED: frozenset(),
    KILLED: frozenset(),
    ERROR: frozenset(),
    LOST: frozenset(),
    DROPPED: frozenset(),
}


class IllegalTransition(Exception):
    """A move the table does not allow; the task is unchanged."""

    def __init__(self, old: int, new: int) -> None:
        super().__init__(f"can't move a task from {state_name(old)} to {state_name(new)}")
        self.old = old
        self.new = new


def state_name(state: int) -> str:
    try:
        return pb.TaskState.Name(state)  # type: ignore[arg-type]
    except ValueError:
        return f"TaskState({state})"


def check_transition(old: int, new: int) -> None:
    """Raise `IllegalTransition` unless `old -> new` is a row of the table."""
    allowed = TRANSITIONS.get(old)
    if allowed is None or new not in allowed:
        raise IllegalTransition(old, new)


def is_terminal(state: int) -> bool:
    return state in TERMINAL


def markdown_table() -> str:
    """The table as Markdown (docs/master.md embeds it; a test keeps the two equal)."""
    lines = ["| from | may become |", "|---|---|"]
    for old, new in TRANSITIONS.items():
        targets = ", ".join(state_name(n) for n in sorted(new)) or "(terminal)"
        lines.append(f"| {state_name(old)} | {targets} |")
    return "\n".join(lines) + "\n"
