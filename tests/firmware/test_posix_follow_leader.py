"""Issue 12: the Zephyr agent's C core as a Linux program (port/posix) given several masters
(`--master` repeated or a comma list) against real master processes on loopback: started at a
standby that refuses with NOT_LEADER naming the leader, it registers with the leader and runs a
WASM task there; a standby naming a leader outside its list sends it to the next master on its
list, never to that leader."""

from __future__ import annotations

import subprocess
from pathlib import Path

import trio
from trio_websocket import open_websocket_url

from edgerm.wire import decode, encode, pb
from edgerm_master.testing import ScriptedFramework
from edgerm_master.testing_io import (
    MasterProcess,
    WsFrameworkClient,
    end_process,
    standby_process,
)

from .test_posix_agent import NAME, TOKEN, _launch, _spec, _until, _upload, _wasm


def hp(m: MasterProcess) -> str:
    return "{}:{}".format(*m.coap)


def start_agent(binary: Path, workdir: Path, *master_flags: str) -> subprocess.Popen[bytes]:
    args = [str(binary)]
    for flag in master_flags:
        args += ["--master", flag]
    with open(workdir / "agent.log", "ab") as out:
        return subprocess.Popen(
            [*args, "--token", TOKEN, "--state", str(workdir / "agent.state"), "--name", NAME,
             "--sensor", "temp=21.5:Cel"], stdout=out, stderr=subprocess.STDOUT)


async def agent_names(m: MasterProcess) -> list[str]:
    async with open_websocket_url(f"ws://{m.ws[0]}:{m.ws[1]}/state") as ws:
        await ws.send_message(encode(pb.StateRequest(token="operator-token")))
        return [a.name for a in decode(pb.ClusterState, await ws.get_message()).agents]


async def test_started_at_a_standby_it_works_with_the_leader(posix_agent: Path,
                                                             tmp_path: Path) -> None:
    leader = MasterProcess(str(tmp_path / "leader"), agent_token=TOKEN, heartbeat_ms=300)
    await trio.to_thread.run_sync(leader.start)
    standby = await trio.to_thread.run_sync(standby_process, str(tmp_path / "standby"), leader)
    agent = start_agent(posix_agent, tmp_path, f"{hp(standby)},{hp(leader)}")
    try:
        async with open_websocket_url(f"ws://{leader.ws[0]}:{leader.ws[1]}/framework") as ws:
            c = WsFrameworkClient(ws, ScriptedFramework(name="fw", token="framework-token"))
            await c.send(c.fw.subscribe())
            await c.until_kind("subscribed")
            hello = _wasm("hello")
            sha = await _upload(c, hello)
            await _launch(c, "h1", _spec(hello, sha, "ha"))
            await _until(c, lambda: pb.FINISHED in c.fw.states("h1"))
            assert [o.data for o in c.fw.outputs if o.task_id == "h1"] == [b"ha"]
        log = (tmp_path / "agent.log").read_text()
        assert f'"master": "{hp(leader)}", "named": "coap://{hp(leader)}"' in log, log[-2000:]
    finally:
        end_process(agent)
        await trio.to_thread.run_sync(standby.stop)
        await trio.to_thread.run_sync(leader.stop)


async def test_a_leader_outside_the_list_is_not_followed(posix_agent: Path,
                                                         tmp_path: Path) -> None:
    leader = MasterProcess(str(tmp_path / "leader"), agent_token=TOKEN, heartbeat_ms=300)
    outsider = MasterProcess(str(tmp_path / "outsider"), agent_token=TOKEN, heartbeat_ms=300)
    await trio.to_thread.run_sync(leader.start)
    await trio.to_thread.run_sync(outsider.start)
    standby = await trio.to_thread.run_sync(standby_process, str(tmp_path / "standby"),
                                            outsider)
    agent = start_agent(posix_agent, tmp_path, hp(standby), hp(leader))   # repeated flag
    try:
        with trio.fail_after(30):
            while NAME not in await agent_names(leader):
                await trio.sleep(0.2)
        await trio.sleep(1.0)
        assert await agent_names(outsider) == []
        log = (tmp_path / "agent.log").read_text()
        assert f'"master": "{hp(leader)}", "named": "coap://{hp(outsider)}"' in log, log[-2000:]
    finally:
        end_process(agent)
        for m in (standby, outsider, leader):
            await trio.to_thread.run_sync(m.stop)
