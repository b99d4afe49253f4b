"""End to end on loopback: a master process, an agent process, a framework over WebSocket;
WASM tasks launched, finished, failed, trapped, timed out, memory-capped and killed."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
import trio

from edgerm.wire import pb
from edgerm_agent.testing import AgentProcess
from edgerm_master.testing import wasm_spec
from edgerm_master.testing_io import MasterProcess, open_framework

TS = pb.TaskState


@pytest.fixture(params=["ws", "coap"])
def agent(request: pytest.FixtureRequest, tmp_path: Path, master: MasterProcess,
          wasm_modules: dict[str, bytes]):  # type: ignore[no-untyped-def]
    host, port = master.ws if request.param == "ws" else master.coap
    url = f"ws://{host}:{port}/agent" if request.param == "ws" else f"coap://{host}:{port}"
    a = AgentProcess(tmp_path / "agent", url).start()
    yield a
    a.stop()


async def test_wasm_tasks_from_launch_to_every_end(agent: AgentProcess, master: MasterProcess,
                                                   wasm_modules: dict[str, bytes]) -> None:
    async with trio.open_nursery() as nursery:
        f = await open_framework(nursery, master.ws)
        sha = {name: await f.upload(wasm_modules[name]) for name in
               ("hello", "sampler", "fail", "trap", "spin", "grow")}

        def spec(name: str, *args: str, **kw: object) -> pb.TaskSpec:
            return wasm_spec(sha[name], len(wasm_modules[name]), *args, **kw)  # type: ignore

        await f.launch("hello", spec("hello", "a", "bc"))
        st = await f.wait_state("hello", TS.FINISHED, TS.FAILED, TS.ERROR)
        assert st.state == TS.FINISHED, (st, agent.log())
        assert "hello from wasm" in st.message
        await f.wait_for(lambda: [o.data for o in f.fw.outputs if o.task_id == "hello"]
                         == [b"a", b"bc"])
        assert f.states("hello") == [TS.STARTING, TS.RUNNING, TS.FINISHED] or \
            f.states("hello")[-2:] == [TS.RUNNING, TS.FINISHED]

        await f.launch("sampler", spec("sampler", "temp", "4", devices=["temp"]))
        st = await f.wait_state("sampler", TS.FINISHED, TS.FAILED, TS.ERROR)
        assert st.state == TS.FINISHED, st
        readings = await f.wait_for(lambda: [o.data for o in f.fw.outputs
                                             if o.task_id == "sampler"] or None)
        await f.wait_for(lambda: len([o for o in f.fw.outputs if o.task_id == "sampler"]) == 4)
        readings = [struct.unpack("<d", o.data)[0] for o in f.fw.outputs
                    if o.task_id == "sampler"]
        assert readings == [21.5] * 4

        # Not holding the sensor: read_sensor answers -2 (denied) and the task exits 1.
        await f.launch("nosensor", spec("sampler", "temp", "1"))
        st = await f.wait_state("nosensor", TS.FAILED, TS.FINISHED)
        assert st.reason == pb.EXITED_NONZERO and "read_sensor failed: -2" in st.message

        await f.launch("fail", spec("fail"))
        st = await f.wait_state("fail", TS.FAILED, TS.FINISHED)
        assert (st.reason, st.exit_code) == (pb.EXITED_NONZERO, 3)
        assert "failing on purpose" in st.message

        await f.launch("trap", spec("trap"))
        st = await f.wait_state("trap", TS.FAILED, TS.FINISHED)
        assert st.reason == pb.TRAPPED and "unreachable" in st.message

        await f.launch("grow", spec("grow", mem_mb=2))
        st = await f.wait_state("grow", TS.FAILED, TS.FINISHED)
        assert st.reason == pb.MEMORY_LIMIT, st

        await f.launch("timeout", spec("spin", timeout_s=1))
        st = await f.wait_state("timeout", TS.FAILED, TS.FINISHED)
        assert st.reason == pb.TIMEOUT, st

        await f.launch("spin", spec("spin"))
        await f.wait_state("spin", TS.RUNNING)
        await f.send(f.fw.kill("spin"))
        st = await f.wait_state("spin", TS.KILLED)
        assert st.reason == pb.KILL_REQUESTED
        # A runaway task never froze the agent: it kept heartbeating and finished the others.
        assert agent.proc is not None and agent.proc.poll() is None
        nursery.cancel_scope.cancel()

