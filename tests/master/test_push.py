"""The master's push channels (edgerm_master/push.py) on real Trio memory channels and a real
master core: the outbox reaches the right queue, a consumer that does not read is closed, a
standby ends every channel with its refusal, and the core learns which agents can be pushed to."""

from __future__ import annotations

from pathlib import Path

import trio

from edgerm.transport.websocket import CLOSE_POLICY
from edgerm.wire import decode, encode, pb
from edgerm_master.config import MasterConfig
from edgerm_master.core import CloseFramework, Master, ToAgent, ToFramework
from edgerm_master.push import CLOSE, NOT_LEADER_CLOSE, Close, PushChannels
from edgerm_master.refusals import not_leader, store_unavailable
from edgerm_master.testing import ScriptedAgent

Queue = tuple[trio.MemorySendChannel[bytes | Close], trio.MemoryReceiveChannel[bytes | Close]]


def core(tmp_path: Path) -> Master:
    return Master(MasterConfig(coap_port=0, ws_port=0, http_listen="off",
                               data_dir=str(tmp_path), agent_tokens=["agent-token"],
                               framework_tokens=["framework-token"]))


def drain(receive: trio.MemoryReceiveChannel[bytes | Close]) -> list[bytes | Close]:
    items: list[bytes | Close] = []
    while True:
        try:
            items.append(receive.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            return items


def channels(tmp_path: Path) -> tuple[PushChannels, list[int]]:
    woken: list[int] = []
    return PushChannels(core(tmp_path), lambda: woken.append(1)), woken


def test_framework_events_go_to_their_connections_queue(tmp_path: Path) -> None:
    push, _ = channels(tmp_path)
    send, receive = trio.open_memory_channel[bytes | Close](10)
    push.fw_queues[3] = send
    event = pb.FrameworkEvent(call_id=9)
    push.dispatch(ToFramework(3, event))
    push.dispatch(ToFramework(4, event))          # an unknown connection: nothing happens
    push.dispatch(CloseFramework(3, "bye"))
    assert drain(receive) == [encode(event), Close(1000, "bye")]
    assert 3 not in push.fw_queues


def test_a_refused_framework_is_closed_as_a_policy_violation(tmp_path: Path) -> None:
    push, _ = channels(tmp_path)
    send, receive = trio.open_memory_channel[bytes | Close](10)
    push.fw_queues[1] = send
    push.dispatch(CloseFramework(1, "bad token", refused=True))
    assert drain(receive) == [Close(CLOSE_POLICY, "bad token")]


def test_a_framework_that_does_not_read_is_closed(tmp_path: Path) -> None:
    push, _ = channels(tmp_path)
    send, receive = trio.open_memory_channel[bytes | Close](1)
    push.fw_queues[1] = send
    push.dispatch(ToFramework(1, pb.FrameworkEvent(call_id=1)))
    push.dispatch(ToFramework(1, pb.FrameworkEvent(call_id=2)))   # the queue is full
    assert 1 not in push.fw_queues
    assert drain(receive) == [encode(pb.FrameworkEvent(call_id=1))]   # the close did not fit
    push.close_fw(1)                                                   # already gone: no-op


def test_refuse_framework_answers_the_call_and_closes_only_if_asked(tmp_path: Path) -> None:
    push, _ = channels(tmp_path)
    send, receive = trio.open_memory_channel[bytes | Close](10)
    push.fw_queues[1] = send
    call = encode(pb.FrameworkCall(call_id=5))
    down = store_unavailable("no quorum")
    push.refuse_framework(1, call, down)
    assert 1 in push.fw_queues
    standby = not_leader(None, "ws")
    push.refuse_framework(1, call, standby, close=True)
    push.refuse_framework(2, call, standby, close=True)   # unknown: nothing happens
    assert drain(receive) == [encode(pb.FrameworkEvent(call_id=5, error=down)),
                              encode(pb.FrameworkEvent(call_id=5, error=standby)),
                              NOT_LEADER_CLOSE]
    assert push.fw_queues == {}


async def test_agent_channels_tell_the_core_and_receive_pushes(tmp_path: Path) -> None:
    push, woken = channels(tmp_path)
    async with trio.open_nursery() as nursery:
        push.nursery = nursery   # where an Observe's notifications would run
        await check_agent_channels(push, woken)


async def check_agent_channels(push: PushChannels, woken: list[int]) -> None:
    agent = ScriptedAgent("pi")
    result = push.core.agent_call(agent.register_call(), 1000.0, "websocket")
    assert result.error == 0 and result.agent_id
    aid = result.agent_id
    send, receive = trio.open_memory_channel[bytes](10)
    push.set_agent(aid, send)
    assert push.core.state.agents[aid].pushable and woken == [1]
    push.set_agent(aid, send)                     # the same channel again: nothing new
    assert woken == [1]
    push.dispatch(ToAgent(aid, b"commands"))
    push.dispatch(ToAgent(aid + 1, b"nobody"))
    assert receive.receive_nowait() == b"commands"
    other, _ = trio.open_memory_channel[bytes](1)
    push.drop_agent(aid, other)                   # not its channel: kept
    assert push.agents[aid] is send
    push.drop_agent(aid, send)
    assert aid not in push.agents and not push.core.state.agents[aid].pushable


def test_drop_all_refuses_and_closes_every_websocket(tmp_path: Path) -> None:
    push, _ = channels(tmp_path)
    fw_send, fw_receive = trio.open_memory_channel[bytes | Close](10)
    push.fw_queues[1] = fw_send
    agent_send, agent_receive = trio.open_memory_channel[bytes](10)
    push.agents[7] = agent_send
    error = not_leader(None, "ws")
    push.drop_all(error)
    assert drain(fw_receive) == [encode(pb.FrameworkEvent(error=error)), NOT_LEADER_CLOSE]
    assert decode(pb.AgentReply, agent_receive.receive_nowait()).error == error
    assert push.fw_queues == {} and push.agents == {}
    assert CLOSE == Close(1000, "")
