"""Agents: one AgentCall in, the reply out; the steady-heartbeat shortcut and the general path
answer alike (they share `heard_from` and `commands.take_ack`); liveness on the agent table."""

from __future__ import annotations

from typing import Any

import pytest

from edgerm.wire import decode, pb, verify
from edgerm_master import agents, commands
from edgerm_master import records as rec
from edgerm_master.agent_states import AGENT_ACTIVE, AGENT_LOST, AGENT_UNREACHABLE
from edgerm_master.config import MasterConfig
from edgerm_master.state import T_AGENT_CHECK, T_AGENT_LOST, MasterState
from edgerm_master.testing import ScriptedAgent

T0 = 1000.0


def registered(seed: int = 0) -> tuple[MasterState, ScriptedAgent]:
    cfg = MasterConfig(agent_tokens=["agent-token"], heartbeat_ms=10_000,
                       unreachable_after_missed=3, lost_after_s=60.0)
    st = MasterState(cfg, random_bytes=lambda n: bytes([seed]) * n)
    a = ScriptedAgent()
    a.handle_reply(agents.agent_call(st, a.register_call(), T0, "coap", "").data)
    assert a.agent_id == 1
    return st, a


def general_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every call takes the general path (decode, authenticate, dispatch)."""
    monkeypatch.setattr(agents, "parse_steady_heartbeat_untrusted", lambda data: None)


def spy(heard_from: Any, calls: list[tuple[Any, ...]]) -> Any:
    def wrapped(st: MasterState, agent: Any, seq: int, now: float, transport: str) -> None:
        calls.append((agent.agent_id, seq, now, transport))
        heard_from(st, agent, seq, now, transport)
    return wrapped


def outcome(st: MasterState, data: bytes, now: float) -> tuple[Any, ...]:
    result = agents.agent_call(st, data, now, "websocket", "")
    agent = st.agents[1]
    reply = decode(pb.AgentReply, result.data)
    assert verify(reply, agent.secret)
    reply.ClearField("mac")  # (each run's agent has its own secret)
    return (reply, result.error, agent.seq, agent.last_seen, agent.transport,
            agent.command_ack, agent.commands, list(st.records))


@pytest.mark.parametrize("ack", [0, 1, 2, 50])
def test_fast_and_general_path_agree_on_a_steady_heartbeat(
        monkeypatch: pytest.MonkeyPatch, ack: int) -> None:
    both = []
    for fast in (True, False):
        with monkeypatch.context() as m:
            if not fast:
                general_only(m)
            st, a = registered()
            for n in range(2):
                commands.enqueue(st, st.agents[1], pb.Command(kill=pb.Kill(task=n)))
            st.records.clear()
            a.applied = ack
            hb = a.heartbeat_call()
            calls = []
            m.setattr(agents, "heard_from", spy(agents.heard_from, calls))
            both.append(outcome(st, hb, T0 + 5))
            assert calls == [(1, 2, T0 + 5, "websocket")]  # one shared liveness update
    assert both[0] == both[1]
    assert both[0][1] == 0 and both[0][2:5] == (2, T0 + 5, "websocket")
    assert both[0][5] == min(ack, 2)


@pytest.mark.parametrize("fast", [True, False])
def test_a_replayed_heartbeat_is_refused_and_changes_nothing(
        monkeypatch: pytest.MonkeyPatch, fast: bool) -> None:
    if not fast:
        general_only(monkeypatch)
    st, a = registered()
    hb = a.heartbeat_call()
    assert agents.agent_call(st, hb, T0 + 1, "coap", "").error == 0
    st.records.clear()
    result = agents.agent_call(st, hb, T0 + 2, "coap", "")
    assert result.error == pb.UNAUTHENTICATED
    assert st.agents[1].last_seen == T0 + 1 and st.records == []
    assert st.stats["agent_errors"] == 1


def test_a_heartbeat_brings_an_unreachable_agent_back(monkeypatch: pytest.MonkeyPatch) -> None:
    st, a = registered()
    agents.check_liveness(st, 1, T0 + st.config.unreachable_after_s)
    agent = st.agents[1]
    assert agent.state == AGENT_UNREACHABLE
    hb = a.heartbeat_call()
    # Not the shortcut's business: the general path (`heard_from`) marks it reachable.
    assert agents.parse_steady_heartbeat_untrusted(hb) is not None
    st_copy = MasterState(st.config)
    st_copy.agents[1] = agent
    assert agents._steady_heartbeat(st_copy, hb, T0 + 40, "coap") is None
    st.records.clear()
    assert agents.agent_call(st, hb, T0 + 40, "coap", "").error == 0
    assert agent.state == AGENT_ACTIVE and agent.last_seen == T0 + 40
    assert rec.MarkAgentReachable(1) in st.records


def test_liveness_timers_walk_the_table() -> None:
    st, a = registered()
    window = st.config.unreachable_after_s
    agents.check_liveness(st, 1, T0 + window - 1)  # not yet: re-armed at the deadline
    assert (T0 + window, T_AGENT_CHECK, 1) in st.timers
    agents.check_lost(st, 1, T0 + window)  # only an UNREACHABLE agent becomes LOST
    assert st.agents[1].state == AGENT_ACTIVE
    agents.check_liveness(st, 1, T0 + window)
    assert st.agents[1].state == AGENT_UNREACHABLE
    assert (T0 + window + 60.0, T_AGENT_LOST, 1) in st.timers
    agents.check_lost(st, 1, T0 + window + 59)
    assert st.agents[1].state == AGENT_UNREACHABLE
    agents.check_lost(st, 1, T0 + window + 60)
    assert st.agents[1].state == AGENT_LOST and 1 not in st.allocator.agents()
    # Only a re-registration brings it back, ACTIVE.
    reply = decode(pb.AgentReply, agents.agent_call(st, a.register_call(), T0 + 200, "coap",
                                                    "").data)
    assert reply.HasField("registered") and st.agents[1].state == AGENT_ACTIVE
    assert 1 in st.allocator.agents()


def test_an_unsynced_agent_is_asked_to_reregister_and_nothing_else_applies() -> None:
    st, a = registered()
    agent = st.agents[1]
    agent.synced = False  # as after a master restart
    seq = agent.seq
    reply = decode(pb.AgentReply, agents.agent_call(st, a.heartbeat_call(), T0 + 1, "coap",
                                                    "").data)
    assert [c.WhichOneof("command") for c in reply.commands] == ["reregister"]
    assert agent.seq == seq and agent.last_seen == T0


def test_first_registration_refusals() -> None:
    st, _ = registered()
    stranger = ScriptedAgent(token="wrong")
    result = agents.agent_call(st, stranger.register_call(), T0, "coap", "")
    assert result.error == pb.UNAUTHENTICATED and len(st.agents) == 1
    copycat = ScriptedAgent()
    call = copycat.register_call()
    assert agents.agent_call(st, call, T0, "coap", "").error == 0
    assert agents.agent_call(st, call, T0, "coap", "").error == pb.UNAUTHENTICATED  # replay
    assert len(st.agents) == 2
