"""An agent's command queue: numbering, de-duplication, acknowledgement, what a reply carries,
pushes."""

from __future__ import annotations

from edgerm.wire import decode, pb, verify
from edgerm_master import agents, commands
from edgerm_master import records as rec
from edgerm_master.agent_states import AGENT_UNREACHABLE
from edgerm_master.config import MasterConfig
from edgerm_master.events import ToAgent
from edgerm_master.state import Agent, MasterState
from edgerm_master.testing import ScriptedAgent


def registered(max_payload: int = 0) -> tuple[MasterState, ScriptedAgent, Agent]:
    st = MasterState(MasterConfig(agent_tokens=["agent-token"]), random_bytes=bytes)
    a = ScriptedAgent(max_payload=max_payload)
    a.handle_reply(agents.agent_call(st, a.register_call(), 1000.0, "coap", "").data)
    st.records.clear()
    return st, a, st.agents[a.agent_id]


def kill(number: int) -> pb.Command:
    return pb.Command(kill=pb.Kill(task=number))


def test_ids_count_up_and_each_command_is_durable() -> None:
    st, _, agent = registered()
    assert commands.enqueue(st, agent, kill(5)) == 1
    assert commands.enqueue(st, agent, kill(6)) == 2
    assert agent.next_command == 3 and list(agent.commands or {}) == [1, 2]
    assert [type(r) for r in st.records] == [rec.EnqueueCommand, rec.EnqueueCommand]
    assert decode(pb.Command, st.records[1].body).kill.task == 6  # type: ignore[attr-defined]


def test_kill_and_reregister_are_queued_once() -> None:
    st, _, agent = registered()
    commands.enqueue_kill(st, agent, 5)
    commands.enqueue_kill(st, agent, 5)
    commands.ask_reregister(st, agent)
    commands.ask_reregister(st, agent)
    assert len(agent.commands or {}) == 2 and agent.rereg_cid == 2


def test_push_only_on_an_open_channel_of_an_active_synced_agent() -> None:
    st, _, agent = registered()
    commands.enqueue(st, agent, kill(1))
    assert not st.push  # no channel open
    agent.pushable = True
    commands.enqueue(st, agent, kill(2), push=False)
    assert not st.push
    agent.state = AGENT_UNREACHABLE
    commands.enqueue(st, agent, kill(3))
    assert not st.push
    agent.state = 0
    commands.enqueue(st, agent, kill(4))
    assert st.push == {agent.agent_id}
    commands.take_pushes(st)
    (push,) = st.outbox
    assert isinstance(push, ToAgent) and push.agent_id == agent.agent_id
    reply = decode(pb.AgentReply, push.data)
    # Registered over CoAP: the push is an Observe notification, which OSCORE protects
    # (the shell), so it is not signed; over a WebSocket it is.
    assert agent.transport == "coap" and reply.seq == 0 and not reply.mac
    assert [c.id for c in reply.commands] == [1, 2, 3, 4]
    assert not st.push
    agent.transport = "websocket"
    commands.enqueue(st, agent, kill(5))
    commands.take_pushes(st)
    reply = decode(pb.AgentReply, st.outbox[-1].data)  # type: ignore[union-attr]
    assert reply.seq == 0 and verify(reply, agent.secret)


def test_ack_drops_up_to_it_and_never_past_the_last_queued() -> None:
    st, _, agent = registered()
    for n in range(3):
        commands.enqueue(st, agent, kill(n))
    st.records.clear()
    commands.take_ack(st, agent, 2)
    assert list(agent.commands or {}) == [3] and agent.command_ack == 2
    commands.take_ack(st, agent, 2)  # nothing new: nothing recorded
    commands.take_ack(st, agent, 99)  # an ack of what was never queued counts up to 3
    assert agent.commands is None and agent.command_ack == 3
    assert st.records == [rec.AckCommands(agent.agent_id, 2), rec.AckCommands(agent.agent_id, 3)]


def test_a_reply_carries_a_prefix_and_repeats_only_after_the_resend_gap() -> None:
    st, _, agent = registered()
    for n in range(3):
        commands.enqueue(st, agent, kill(n))
    st.now = 10.0
    assert len(commands.commands_for(st, agent)) == 3
    st.now = 10.5
    assert commands.commands_for(st, agent) == []  # all sent just now
    commands.enqueue(st, agent, kill(3))
    assert len(commands.commands_for(st, agent)) == 4  # a new one: the whole prefix again
    st.now = 10.5 + st.config.command_resend_s
    assert len(commands.commands_for(st, agent)) == 4


def test_a_reply_fits_the_agents_payload() -> None:
    st, _, agent = registered(max_payload=64)
    for n in range(10):
        commands.enqueue(st, agent, kill(n))
    out = commands.commands_for(st, agent)
    assert 1 <= len(out) < 10
    assert sum(map(len, out)) <= 64 - commands.REPLY_OVERHEAD


def test_drop_and_drop_all() -> None:
    st, _, agent = registered()
    for n in range(3):
        commands.enqueue(st, agent, kill(n))
    commands.ask_reregister(st, agent)
    st.records.clear()
    commands.drop(st, agent, 2)
    assert list(agent.commands or {}) == [1, 3, 4]
    commands.drop_all(st, agent)
    assert agent.commands is None and agent.rereg_cid == 0
    assert st.records == [rec.DropCommand(agent.agent_id, c) for c in (2, 1, 3, 4)]


def test_error_reply_is_signed_only_for_an_authenticated_caller() -> None:
    _, _, agent = registered()
    signed = commands.error_reply(pb.BAD_REQUEST, "no", 9, agent)
    plain = commands.error_reply(pb.UNAUTHENTICATED, "who?", 0, None)
    assert (signed.error, signed.agent_id, plain.agent_id) == (pb.BAD_REQUEST, agent.agent_id, 0)
    reply = decode(pb.AgentReply, signed.data)
    assert verify(reply, agent.secret) and reply.seq == 9 and reply.error.message == "no"
    assert not decode(pb.AgentReply, plain.data).mac
