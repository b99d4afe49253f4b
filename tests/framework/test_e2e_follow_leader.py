"""Issue 12 end to end on loopback: the SDK given several masters.

* Started at a standby (a real master process refusing with NOT_LEADER naming the leader), a
  framework subscribes at the leader and works there.
* A failover with the store carried over (the leader SIGKILLed, a second master started on its
  data directory at other ports, as a new leader would recover from etcd): the framework keeps
  its id and its task, the Linux agent (several masters too) keeps its identity and its running
  task — no relaunch, its outputs go on in order — and the new leader can kill it.
"""

from __future__ import annotations

import socket
from pathlib import Path

import trio

from edgerm.framework import (
    WASM,
    Constraints,
    Framework,
    OffersEvent,
    OutputEvent,
    Subscribed,
    UpdateEvent,
    wasm_task,
)
from edgerm.wire import pb
from edgerm_agent.testing import AgentProcess
from edgerm_cli.listing import fetch_state
from edgerm_master.testing_io import MasterProcess, standby_process

TOKEN = "framework-token"
WANT = Constraints(cpus=0.1, mem_mb=16, devices=["temp"], executors=[WASM])


def ws(m: MasterProcess) -> str:
    return f"ws://{m.ws[0]}:{m.ws[1]}"


def free_ports() -> tuple[int, int]:
    """A UDP and a TCP port free right now on loopback (for a master started later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, \
            socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
        u.bind(("127.0.0.1", 0))
        t.bind(("127.0.0.1", 0))
        return u.getsockname()[1], t.getsockname()[1]


async def test_a_framework_started_at_a_standby_subscribes_at_the_leader(
        tmp_path: Path, wasm_modules: dict[str, bytes]) -> None:
    with MasterProcess(str(tmp_path / "leader")) as leader:
        standby = standby_process(str(tmp_path / "standby"), leader)
        try:
            async with Framework.connect(f"{ws(standby)},{ws(leader)}", name="ha",
                                         token=TOKEN) as fw:
                assert fw.url == ws(leader) + "/framework"
                stored = await fw.upload(wasm_modules["hello"])
                assert stored.size == len(wasm_modules["hello"])
        finally:
            standby.stop()


async def test_a_leader_outside_the_list_is_not_followed(tmp_path: Path) -> None:
    with MasterProcess(str(tmp_path / "leader")) as leader, \
            MasterProcess(str(tmp_path / "outsider")) as outsider:
        standby = standby_process(str(tmp_path / "standby"), outsider)
        try:
            async with Framework.connect([ws(standby), ws(leader)], name="ha",
                                         token=TOKEN) as fw:
                assert fw.url == ws(leader) + "/framework"
            async with Framework.connect(ws(outsider), name="probe", token=TOKEN) as probe:
                assert probe.framework_id   # the outsider serves, but never saw "ha":
            state = await fetch_state(ws(outsider), "operator-token")
            assert [f.name for f in state.frameworks] == ["probe"]
        finally:
            standby.stop()


async def test_framework_and_agent_keep_ids_and_tasks_across_a_failover(
        tmp_path: Path, wasm_modules: dict[str, bytes]) -> None:
    data = str(tmp_path / "store")
    m1 = MasterProcess(data, heartbeat_ms=300).start()
    m2 = MasterProcess(data, heartbeat_ms=300)
    m2.coap_port, m2.ws_port = free_ports()
    m2_coap = f"coap://127.0.0.1:{m2.coap_port}"
    agent = AgentProcess(tmp_path / "agent", f"coap://{m1.coap[0]}:{m1.coap[1]}",
                         urls=[m2_coap]).start()
    try:
        masters = [ws(m1), f"ws://127.0.0.1:{m2.ws_port}"]
        async with Framework.connect(masters, name="ha", token=TOKEN,
                                     failover_timeout_s=60, connect_timeout_s=20) as fw:
            module = await fw.upload(wasm_modules["sampler"])
            with trio.fail_after(20):
                async for ev in fw.events():
                    if isinstance(ev, OffersEvent) and any(WANT.match(o) for o in ev.offers):
                        offer = next(o for o in ev.offers if WANT.match(o))
                        await fw.launch(offer, "s", wasm_task(
                            module, name="s", resources=WANT.resources(offer),
                            args=["temp", "100000", "50"]))
                        break
            seqs: list[int] = []
            states: list[int] = []

            async def collect(until: int) -> None:
                async for ev in fw.events():
                    if isinstance(ev, OutputEvent) and ev.task_id == "s":
                        seqs.append(ev.seq)
                        if len(seqs) >= until:
                            return
                    elif isinstance(ev, UpdateEvent) and ev.task_id == "s":
                        states.append(ev.state)

            with trio.fail_after(20):
                await collect(5)
            framework_id, agent_log_before = fw.framework_id, agent.log()
            m1.kill()
            m2.start()
            failed_over = False
            with trio.fail_after(40):
                async for ev in fw.events():
                    if isinstance(ev, Subscribed) and ev.failover:
                        failed_over = True
                        break
            assert failed_over and fw.framework_id == framework_id
            assert fw.url == f"ws://127.0.0.1:{m2.ws_port}/framework"
            count = len(seqs)
            with trio.fail_after(40):
                await collect(count + 10)   # the same task goes on publishing via m2
            assert seqs == sorted(set(seqs)), seqs   # in order, none twice
            await fw.kill("s")
            with trio.fail_after(20):
                async for ev in fw.events():
                    if isinstance(ev, UpdateEvent) and ev.task_id == "s" and ev.terminal:
                        assert ev.state == pb.KILLED, ev.status
                        break
            log = agent.log_path.read_text()
            assert log.count("task 1: RUNNING") == 1, log[-3000:]   # never relaunched
            assert f"trying {m2_coap}" in log and agent_log_before
            assert "(new)" not in log.split(f"trying {m2_coap}", 1)[1]   # same identity
    finally:
        agent.stop()
        m1.stop()
        m2.stop()
