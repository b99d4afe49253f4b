"""The agent lifecycle as a table: every legal (state -> state) move of an agent, and nothing else.

Rule 1: everything that changes an agent's state goes through `check_transition()`; a pair missing
from `TRANSITIONS` is refused with `IllegalAgentTransition` and leaves the agent as it was.

Rule 2: ACTIVE -> UNREACHABLE when nothing was heard from the agent for `unreachable_after_s`
(its tasks become UNREACHABLE, its offers are rescinded); UNREACHABLE -> ACTIVE when a call from
it is accepted again (a heartbeat or a re-registration) within `lost_after_s`.

Rule 3: UNREACHABLE -> LOST after `lost_after_s` more (its tasks become LOST, its commands are
dropped, the allocator forgets it). LOST is not terminal: only a signed re-registration brings
the agent back, LOST -> ACTIVE, with nothing running.

The values are what the store keeps in `agents.state`; `STATE_NAMES` are what the state view
shows. (Whether the master trusts the agent's calls since it restarted, `Agent.synced`, is
separate: an in-between set in Mesos's sense, not a lifecycle state.)
"""

from __future__ import annotations

__all__ = [
    "AGENT_ACTIVE", "AGENT_UNREACHABLE", "AGENT_LOST", "STATE_NAMES", "TRANSITIONS",
    "IllegalAgentTransition", "check_transition", "state_name",
]

# Stored in the `agents.state` column: never renumber.
AGENT_ACTIVE = 0
AGENT_UNREACHABLE = 1
AGENT_LOST = 2

STATE_NAMES: dict[int, str] = {
    AGENT_ACTIVE: "active", AGENT_UNREACHABLE: "unreachable", AGENT_LOST: "lost",
}

TRANSITIONS: dict[int, frozenset[int]] = {
    # Missed its heartbeats (rule 2).
    AGENT_ACTIVE: frozenset({AGENT_UNREACHABLE}),
    # Heard from again, or away too long (rules 2 and 3).
    AGENT_UNREACHABLE: frozenset({AGENT_ACTIVE, AGENT_LOST}),
    # Re-registered (rule 3).
    AGENT_LOST: frozenset({AGENT_ACTIVE}),
}


class IllegalAgentTransition(Exception):
    """A move the table does not allow; the agent is unchanged."""

    def __init__(self, old: int, new: int) -> None:
        super().__init__(f"can't move an agent from {state_name(old)} to {state_name(new)}")
        self.old = old
        self.new = new


def state_name(state: int) -> str:
    return STATE_NAMES.get(state, f"AgentState({state})")


def check_transition(old: int, new: int) -> None:
    """Raise `IllegalAgentTransition` unless `old -> new` is a row of the table."""
    allowed = TRANSITIONS.get(old)
    if allowed is None or new not in allowed:
        raise IllegalAgentTransition(old, new)
