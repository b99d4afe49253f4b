"""End to end: the master restarts under a running agent; the agent is cut off (a UDP relay
in front of the master's CoAP port stops forwarding), goes UNREACHABLE and comes back RUNNING
without a relaunch."""

from __future__ import annotations

from pathlib import Path

import trio

from edgerm.wire import pb
from edgerm_master.testing import MasterProcess, UdpRelay

from .cluster import AgentProcess, open_framework, wasm_spec

TS = pb.TaskState


async def test_cut_off_agent_goes_unreachable_and_comes_back_running(
        tmp_path: Path, master: MasterProcess, wasm_modules: dict[str, bytes]) -> None:
    relay = UdpRelay(master.coap)
    port = await relay.bind()
    agent = AgentProcess(tmp_path / "agent", f"coap://127.0.0.1:{port}").start()
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(relay.run)
            f = await open_framework(nursery, master.ws)
            sha = await f.upload(wasm_modules["spin"])
            await f.launch("spin", wasm_spec(sha, len(wasm_modules["spin"])))
            await f.wait_state("spin", TS.RUNNING)
            relay.forwarding = False
            st = await f.wait_state("spin", TS.UNREACHABLE, timeout=10)
            assert st.reason == pb.AGENT_UNREACHABLE
            await trio.sleep(1.0)
            relay.forwarding = True
            await f.wait_state("spin", TS.RUNNING, timeout=20)
            after = f.states("spin")[f.states("spin").index(TS.UNREACHABLE):]
            assert TS.STARTING not in after, f.states("spin")  # not relaunched
            assert agent.log().count("task 1: STARTING") == 0  # reported via the launch only
            await f.send(f.fw.kill("spin"))
            await f.wait_state("spin", TS.KILLED)
            nursery.cancel_scope.cancel()
    finally:
        agent.stop()


async def test_master_restart_keeps_tasks_running(
        tmp_path: Path, master: MasterProcess, wasm_modules: dict[str, bytes]) -> None:
    host, port = master.ws
    agent = AgentProcess(tmp_path / "agent", f"ws://{host}:{port}/agent").start()
    try:
        async with trio.open_nursery() as nursery:
            f = await open_framework(nursery, master.ws)
            sha = await f.upload(wasm_modules["spin"])
            await f.launch("spin", wasm_spec(sha, len(wasm_modules["spin"])))
            await f.wait_state("spin", TS.RUNNING)
            framework_id, secret = f.fw.framework_id, f.fw.framework_secret
            nursery.cancel_scope.cancel()
        master.kill()
        master.restart()
        async with trio.open_nursery() as nursery:
            f = await open_framework(nursery, master.ws, framework_id, secret)
            await f.send(f.fw.reconcile(["spin"]))
            await f.wait_state("spin", TS.RUNNING)
            await f.send(f.fw.kill("spin"))
            st = await f.wait_state("spin", TS.KILLED)
            assert st.reason == pb.KILL_REQUESTED, agent.log()
            nursery.cancel_scope.cancel()
    finally:
        agent.stop()
