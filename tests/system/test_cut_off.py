"""The edge is cut off (the router drops everything coming from it) long enough for the master
to declare both agents UNREACHABLE; the framework is told; when the link is back the tasks are
RUNNING again without a relaunch: each agent still shows one execution, and the counters the
tasks publish go on from where they were, every value delivered once and in order."""

from __future__ import annotations

from pathlib import Path

import trio

from edgerm.wire import pb

from .edge import (
    EdgeProcess,
    Observer,
    linux_agent,
    micro_agent,
    micropython_spec,
    open_framework,
    wasm_spec,
)
from .netns import Topology

TS = pb.TaskState
TASKS = ("wasm-counter", "mp-counter")


def _consecutive(f: Observer, task: str) -> list[bytes]:
    data = f.data(task)
    assert data == [str(i).encode() for i in range(len(data))], (task, data)
    return data


async def test_cut_off_edge_goes_unreachable_and_comes_back_running(
        core_sockets: Topology, masters, edge_processes: list[EdgeProcess],  # type: ignore[no-untyped-def]
        counter_wasm: bytes, mpy_tasks: dict[str, bytes], mpy_build: Path,
        tmp_path: Path) -> None:
    net = core_sockets
    master = await masters(300, "--unreachable-after-missed", "2", "--lost-after-s", "120")
    host, port = master.coap
    linux = linux_agent(net, tmp_path / "linux", f"coap://{host}:{port}", "linux-cut",
                        call_timeout_s=1.5, backoff_max_s=0.5).start()
    edge_processes.append(linux)
    micro = micro_agent(net, tmp_path / "micro", mpy_build, master.coap, "micro-cut",
                        ack_timeout_ms=300, max_retransmit=2).start()
    edge_processes.append(micro)

    async with open_framework(master) as f:
        linux_offer = await f.offer("linux-cut", 30)
        micro_offer = await f.offer("micro-cut", 30)
        wasm = await f.fw.upload(counter_wasm)
        py = await f.fw.upload(mpy_tasks["counter"], pb.MICROPYTHON_MPY)
        await f.fw.launch(linux_offer, "wasm-counter", wasm_spec(wasm, "200"))
        await f.fw.launch(micro_offer, "mp-counter", micropython_spec(py, "200"))
        for task in TASKS:
            await f.wait_state(task, [TS.RUNNING], 30)
        await f.wait_for(lambda: all(len(f.data(t)) >= 3 for t in TASKS), 30, "first outputs")

        net.cut_off_edge()
        for task in TASKS:
            st = await f.wait_state(task, [TS.UNREACHABLE], 20)
            assert st.reason == pb.AGENT_UNREACHABLE, st
        # While cut off nothing from the edge gets through (the cut is real).
        await trio.sleep(0.5)
        during = {t: len(f.data(t)) for t in TASKS}
        await trio.sleep(1.5)
        assert {t: len(f.data(t)) for t in TASKS} == during
        assert net.forward_drops() > 0

        net.clear()
        for task in TASKS:
            await f.wait_state(task, [TS.RUNNING], 30)
        await f.wait_for(lambda: all(len(f.data(t)) >= during[t] + 5 for t in TASKS), 30,
                         lambda: f"outputs after the cut (had {during})")

        for task in TASKS:
            assert f.states(task) == [TS.STARTING, TS.RUNNING, TS.UNREACHABLE, TS.RUNNING], \
                (task, f.state_names(task))
            _consecutive(f, task)     # one execution, nothing lost or repeated across the cut

        # Each agent ran its task once (a relaunch would log a second start).
        assert linux.log(tail=10**7).count("task 1: RUNNING") == 1, linux.log()
        assert micro.log(tail=10**7).count("task 1 state 3 ") == 1, micro.log()

        for task in TASKS:
            await f.fw.kill(task)
        for task in TASKS:
            st = await f.wait_state(task, [TS.KILLED], 20)
            assert st.reason == pb.KILL_REQUESTED, st
        for task in TASKS:
            _consecutive(f, task)
    assert linux.alive() and micro.alive()
