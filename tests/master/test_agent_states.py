"""The agent table: every legal row is accepted, every other pair refused and nothing changes."""

from __future__ import annotations

import pytest

from edgerm.wire import pb
from edgerm_master import agents
from edgerm_master.agent_states import (
    AGENT_ACTIVE,
    AGENT_LOST,
    AGENT_UNREACHABLE,
    STATE_NAMES,
    TRANSITIONS,
    IllegalAgentTransition,
    check_transition,
    state_name,
)
from edgerm_master.state import Agent

ALL = [AGENT_ACTIVE, AGENT_UNREACHABLE, AGENT_LOST]
LEGAL = [(a, b) for a, bs in TRANSITIONS.items() for b in sorted(bs)]
# With a value no agent has, so an unknown state is refused too.
ILLEGAL = [(a, b) for a in ALL + [7] for b in ALL + [7]
           if b not in TRANSITIONS.get(a, frozenset())]


@pytest.mark.parametrize("old,new", LEGAL)
def test_legal_row(old: int, new: int) -> None:
    check_transition(old, new)


@pytest.mark.parametrize("old,new", ILLEGAL)
def test_illegal_pair(old: int, new: int) -> None:
    with pytest.raises(IllegalAgentTransition) as info:
        check_transition(old, new)
    assert state_name(old) in str(info.value) and state_name(new) in str(info.value)
    assert (info.value.old, info.value.new) == (old, new)


def test_the_rows_are_the_lifecycle() -> None:
    assert set(LEGAL) == {(AGENT_ACTIVE, AGENT_UNREACHABLE), (AGENT_UNREACHABLE, AGENT_ACTIVE),
                          (AGENT_UNREACHABLE, AGENT_LOST), (AGENT_LOST, AGENT_ACTIVE)}
    assert len(LEGAL) + len(ILLEGAL) == (len(ALL) + 1) ** 2
    # A table entry for each state, and the names the state view shows.
    assert set(TRANSITIONS) == set(ALL) == set(STATE_NAMES)
    assert [state_name(s) for s in ALL] == ["active", "unreachable", "lost"]
    assert state_name(7) == "AgentState(7)"


def test_stored_values_never_change() -> None:
    # The store keeps these numbers in agents.state: renumbering would misread old stores.
    assert (AGENT_ACTIVE, AGENT_UNREACHABLE, AGENT_LOST) == (0, 1, 2)


def test_set_state_refuses_an_illegal_move_and_leaves_the_agent() -> None:
    agent = Agent(1, b"s" * 16, b"", pb.Register(), None)  # type: ignore[arg-type]
    assert agent.state == AGENT_ACTIVE
    with pytest.raises(IllegalAgentTransition):
        agents.set_state(agent, AGENT_LOST)  # LOST only after UNREACHABLE
    assert agent.state == AGENT_ACTIVE
    agents.set_state(agent, AGENT_UNREACHABLE)
    agents.set_state(agent, AGENT_LOST)
    assert agent.state == AGENT_LOST
