"""Issue 12 end to end on loopback: a Linux agent configured with several masters starts at a
standby (a real master process that refuses with NOT_LEADER naming the leader) and ends up
registered with the leader, over CoAP and over WebSocket, running a task launched there; a
leader named by a standby but absent from the agent's list is never contacted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from trio_websocket import open_websocket_url

from edgerm.wire import decode, encode, pb
from edgerm_agent.testing import AgentProcess
from edgerm_master.testing import wasm_spec
from edgerm_master.testing_io import MasterProcess, open_framework, standby_process

TS = pb.TaskState


def agent_url(m: MasterProcess, kind: str) -> str:
    host, port = m.ws if kind == "ws" else m.coap
    return f"ws://{host}:{port}/agent" if kind == "ws" else f"coap://{host}:{port}"


async def agent_names(m: MasterProcess) -> list[str]:
    """The agents a (leading) master knows, by its operator state."""
    async with open_websocket_url(f"ws://{m.ws[0]}:{m.ws[1]}/state") as ws:
        await ws.send_message(encode(pb.StateRequest(token="operator-token")))
        state = decode(pb.ClusterState, await ws.get_message())
    return [a.name for a in state.agents]


@pytest.fixture
def standby(tmp_path: Path, master: MasterProcess) -> Iterator[MasterProcess]:
    s = standby_process(str(tmp_path / "standby"), master)
    yield s
    s.stop()


@pytest.mark.parametrize("kind", ["coap", "ws"])
async def test_an_agent_started_at_a_standby_works_with_the_leader(
        tmp_path: Path, master: MasterProcess, standby: MasterProcess, kind: str,
        wasm_modules: dict[str, bytes]) -> None:
    agent = AgentProcess(tmp_path / "agent", agent_url(standby, kind),
                         urls=[agent_url(master, kind)]).start()
    try:
        async with trio.open_nursery() as nursery:
            f = await open_framework(nursery, master.ws)
            sha = await f.upload(wasm_modules["hello"])
            await f.launch("hello", wasm_spec(sha, len(wasm_modules["hello"]), "x"))
            st = await f.wait_state("hello", TS.FINISHED, TS.FAILED, TS.ERROR)
            assert st.state == TS.FINISHED, (st, agent.log())
            nursery.cancel_scope.cancel()
        log = agent.log()
        assert "is a standby" in log and f"moving to {agent_url(master, kind)}" in log, log
    finally:
        agent.stop()


async def test_a_leader_outside_the_list_is_not_followed(
        tmp_path: Path, master: MasterProcess) -> None:
    # The standby names `outsider`, a real leading master the agent was not configured with.
    outsider = MasterProcess(str(tmp_path / "outsider"), heartbeat_ms=200).start()
    standby = standby_process(str(tmp_path / "standby"), outsider)
    agent = AgentProcess(tmp_path / "agent", agent_url(standby, "coap"),
                         urls=[agent_url(master, "coap")]).start()
    try:
        with trio.fail_after(20):
            while "agent-1" not in await agent_names(master):
                await trio.sleep(0.1)
        await trio.sleep(1.0)   # heartbeats go on, to the configured leader only
        assert await agent_names(outsider) == []
        assert "which is not among this agent's masters" in agent.log()
    finally:
        agent.stop()
        standby.stop()
        outsider.stop()
