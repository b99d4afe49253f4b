"""Issue 12: the MicroPython agent (the .mpy build under the real micropython interpreter, 64 KB
heap) given several masters (config "master" a list) against real master processes on loopback.

* Started at a standby naming the leader, it registers with the leader and runs a task there.
* A standby naming a leader outside its list: that leader never hears from it.
* A failover with the store carried over (the leader SIGKILLed, a master started on its data
  directory at other ports): the agent moves after its calls go unanswered, keeps its identity
  and its running task (re-registered, not relaunched), and the new leader can kill the task.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import trio
from trio_websocket import open_websocket_url

from edgerm.wire import decode, encode, pb
from edgerm_master.testing import ScriptedFramework
from edgerm_master.testing_io import MasterProcess, WsFrameworkClient, standby_process

from .conftest import needs_micropython
from .test_master_e2e import SAMPLER, SLEEPER, _launch, _spec, _until, _upload

pytestmark = needs_micropython


def hp(m: MasterProcess) -> str:
    return "{}:{}".format(*m.coap)


def agent_config(masters: list[str]) -> dict[str, Any]:
    return {"master": masters, "token": "tok", "name": "mp-e2e", "heartbeat_ms": 300,
            "ack_timeout_ms": 200, "max_retransmit": 2, "log_level": 1, "block_szx": 3,
            "mem_mb": 0.0625, "sensors": [{"name": "temp", "unit": "Cel",
                                            "sim": [20.5, 21.0, 21.5]}]}


async def agent_names(m: MasterProcess) -> list[str]:
    async with open_websocket_url(f"ws://{m.ws[0]}:{m.ws[1]}/state") as ws:
        await ws.send_message(encode(pb.StateRequest(token="operator-token")))
        return [a.name for a in decode(pb.ClusterState, await ws.get_message()).agents]


async def test_started_at_a_standby_it_works_with_the_leader(agent_factory,  # type: ignore[no-untyped-def]
                                                             tmp_path: Path) -> None:
    leader = MasterProcess(str(tmp_path / "leader"), agent_token="tok", heartbeat_ms=300)
    outsider = MasterProcess(str(tmp_path / "outsider"), agent_token="tok", heartbeat_ms=300)
    await trio.to_thread.run_sync(leader.start)
    await trio.to_thread.run_sync(outsider.start)
    standby = await trio.to_thread.run_sync(standby_process, str(tmp_path / "s1"), leader)
    naming_outsider = await trio.to_thread.run_sync(standby_process, str(tmp_path / "s2"),
                                                    outsider)
    try:
        agent = agent_factory(agent_config([hp(standby), hp(leader)]))
        await agent.start()
        async with open_websocket_url(f"ws://{leader.ws[0]}:{leader.ws[1]}/framework") as ws:
            c = WsFrameworkClient(ws, ScriptedFramework(name="fw", token="framework-token"))
            await c.send(c.fw.subscribe())
            await c.until_kind("subscribed")
            sampler = await _upload(c, SAMPLER)
            await _launch(c, "s1", _spec(sampler, len(SAMPLER), "2", devices=("temp",)))
            await _until(c, lambda: pb.FINISHED in c.fw.states("s1"))
        await agent.stop()
        assert f"master {hp(leader)}" in agent.output()
        # The standby names `outsider`, which is not in the list: the agent goes to the next.
        other = agent_factory(agent_config([hp(naming_outsider), hp(leader)]))
        other.config["name"] = "mp-other"
        other.config["state"] = str(tmp_path / "other.cbor")
        other.write_config()
        await other.start()
        with trio.fail_after(30):
            while "mp-other" not in await agent_names(leader):
                await trio.sleep(0.2)
        assert await agent_names(outsider) == []
    finally:
        for m in (standby, naming_outsider, leader, outsider):
            await trio.to_thread.run_sync(m.stop)


def free_ports() -> tuple[int, int]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, \
            socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
        u.bind(("127.0.0.1", 0))
        t.bind(("127.0.0.1", 0))
        return u.getsockname()[1], t.getsockname()[1]


async def test_a_failover_keeps_its_identity_and_running_task(agent_factory,  # type: ignore[no-untyped-def]
                                                              tmp_path: Path) -> None:
    data = str(tmp_path / "store")
    m1 = MasterProcess(data, agent_token="tok", heartbeat_ms=300)
    m2 = MasterProcess(data, agent_token="tok", heartbeat_ms=300)
    m2.coap_port, m2.ws_port = free_ports()
    await trio.to_thread.run_sync(m1.start)
    try:
        agent = agent_factory(agent_config([hp(m1), f"127.0.0.1:{m2.coap_port}"]))
        await agent.start()
        async with open_websocket_url(f"ws://{m1.ws[0]}:{m1.ws[1]}/framework") as ws:
            c = WsFrameworkClient(ws, ScriptedFramework(name="fw", token="framework-token"))
            c.fw.failover_timeout_s = 120.0
            await c.send(c.fw.subscribe())
            await c.until_kind("subscribed")
            fw_id, fw_secret = c.fw.framework_id, c.fw.framework_secret
            sleeper = await _upload(c, SLEEPER)
            await _launch(c, "k1", _spec(sleeper, len(SLEEPER)))
            await _until(c, lambda: pb.RUNNING in c.fw.states("k1"))
            agent_id = next(u.agent_id for u in c.fw.updates if u.task_id == "k1")
        await trio.to_thread.run_sync(m1.kill)
        await trio.to_thread.run_sync(m2.start)
        async with open_websocket_url(f"ws://{m2.ws[0]}:{m2.ws[1]}/framework") as ws:
            fw = ScriptedFramework(name="fw", token="framework-token")
            fw.framework_id, fw.framework_secret = fw_id, fw_secret
            c = WsFrameworkClient(ws, fw)
            await c.send(fw.subscribe())
            await c.until_kind("subscribed")
            await c.send(fw.reconcile())
            # Back at the new leader with the same id; the task still RUNNING there.
            await _until(c, lambda: any(o.agent_name == "mp-e2e" for o in fw.offers.values()),
                         timeout=40)
            assert next(o for o in fw.offers.values()
                        if o.agent_name == "mp-e2e").agent_id == agent_id
            await _until(c, lambda: pb.RUNNING in fw.states("k1"))
            await c.send(fw.kill("k1"))
            await _until(c, lambda: pb.KILLED in fw.states("k1"))
        out = agent.output()
        assert f"master 127.0.0.1:{m2.coap_port}" in out, out[-3000:]
        assert out.count("registered %d" % agent_id) >= 2 and "registered" in out
        assert agent.alive(), out[-3000:]
    finally:
        await trio.to_thread.run_sync(m1.stop)
        await trio.to_thread.run_sync(m2.stop)
