"""Issue 12's failover scenarios with real parts: a three-member etcd cluster
(`testing_etcd.EtcdCluster`), masters as real processes (`testing_ha.MasterSet`, restarted by a
supervisor like systemd's), agents over real CoAP and frameworks over real WebSocket that follow
the leader and count every launch they execute and every update they receive
(`testing_ha.HaAgent`, `HaFramework`).

1. SIGKILL the leading master at random points while four frameworks launch 500 tasks on four
   agents: no acknowledged launch lost, none run twice, every task's updates in order.
2. SIGSTOP the leader past its lease, let a standby take over, SIGCONT it: it writes and
   launches nothing. Its own lease-loss detection is switched off (testing_fencing), so only the
   store's conditioned writes stop it; with the condition off too, the same test fails
   (`test_without_the_compare_the_woken_leader_acts`: the scenario can fail).
3. One etcd member killed: work goes on; two: the leader refuses with UNAVAILABLE, and when the
   quorum is back work resumes with nothing lost.
"""

from __future__ import annotations

import io
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionClosed, connect_websocket_url

import edgerm_cli.main as cli_main
from edgerm.transport.coap import open_coap_client
from edgerm.wire import pb
from edgerm_cli.masters import masters_command
from edgerm_master.roles import EXIT_DEPOSED
from edgerm_master.testing import ScriptedFramework
from edgerm_master.testing_etcd import EtcdCluster, etcd_cluster, unique_prefix
from edgerm_master.testing_ha import (
    TASK_MODULE,
    HaAgent,
    HaFramework,
    MasterSet,
    check_no_loss,
    task_spec,
)

__all__ = ["etcd_cluster"]  # the fixture, imported for these tests

TS = pb.TaskState
LEASE_S = 2.0
# The fencing tests pause the leader for longer than its lease: its agent must not count as
# UNREACHABLE when it wakes (that would rescind the offer it is about to accept, and the test
# would pass without any write being refused).
AWAKE = ("--unreachable-after-missed", "100")


@pytest.fixture
def masters(tmp_path: Path, etcd_cluster: EtcdCluster) -> Iterator[Any]:
    """make(n, module, extra) -> a started MasterSet on the cluster; stopped afterwards."""
    made: list[MasterSet] = []

    def make(n: int = 3, module: str = "edgerm_master", extra: tuple[str, ...] = ()
             ) -> MasterSet:
        ms = MasterSet(str(tmp_path / f"set{len(made)}"), etcd_cluster.client_urls,
                       unique_prefix("ha"), n=n, lease_ttl_s=LEASE_S, module=module,
                       extra=extra)
        made.append(ms)
        return ms.start()

    yield make
    for ms in made:
        ms.close()


def total(fws: list[HaFramework], what: str) -> int:
    return sum(len(getattr(f, what)) for f in fws)


async def test_sigkill_the_leader_during_500_launches(masters: Any) -> None:
    ms: MasterSet = masters(3)
    rng = random.Random(12)
    async with open_coap_client() as coap, trio.open_nursery() as nursery:
        nursery.start_soon(ms.supervise)
        await ms.leader()
        agents = [HaAgent(coap, ms.coap, f"agent-{i}") for i in range(4)]
        fws = [HaFramework(ms.ws, f"fw-{i}", [f"f{i}-t{j:03d}" for j in range(125)])
               for i in range(4)]
        for a in agents:
            nursery.start_soon(a.run)
        for f in fws:
            nursery.start_soon(f.run)
        kills = []
        with trio.fail_after(150):
            for mark in sorted(rng.sample(range(40, 420), 3)):
                # Kill at a random point: after `mark` acknowledged launches, plus a little.
                while total(fws, "accepted") < mark:
                    await trio.sleep(0.02)
                await trio.sleep(rng.uniform(0.0, 0.3))
                leader = await ms.leader()
                ms.kill(leader)
                kills.append((mark, leader))
            for f in fws:
                await f.finished.wait()
        nursery.cancel_scope.cancel()
    assert len(kills) == 3
    check_no_loss(fws, agents)
    assert total(fws, "accepted") == 500
    assert all(sum(a.executions.values()) > 0 for a in agents)  # every agent took work
    assert sum(f.connections for f in fws) >= 4 * 2  # they did move
    assert ms.restarts >= 3


async def test_a_paused_leader_woken_after_its_lease_writes_and_launches_nothing(
        masters: Any) -> None:
    await _paused_leader(masters(2, "edgerm_master.testing_fencing", AWAKE), fenced=True)


async def test_without_the_compare_the_woken_leader_acts(masters: Any) -> None:
    """The same scenario with the store's compare switched off: the woken leader commits the
    launch and the agent runs it -- the check above is what fencing makes pass."""
    await _paused_leader(masters(2, "edgerm_master.testing_fencing", ("--unfenced", *AWAKE)),
                         fenced=False)


async def _paused_leader(ms: MasterSet, fenced: bool) -> None:
    old = await ms.leader()
    async with open_coap_client() as coap, trio.open_nursery() as nursery:
        # An agent that only ever talks to the old leader, and a framework connection to it
        # holding an offer on that agent: what a woken leader could act on.
        pinned = HaAgent(coap, [ms.coap[old]], "pinned")
        nursery.start_soon(pinned.run)
        host, port = ms.ws[old]
        conn = await connect_websocket_url(nursery, f"ws://{host}:{port}/framework")
        fw = ScriptedFramework("old-conn", failover_timeout_s=60)
        await conn.send_message(fw.subscribe())
        with trio.fail_after(15):
            while not fw.framework_id:
                fw.handle_event(await conn.get_message())
            await conn.send_message(fw.upload(TASK_MODULE, pb.WASM_MODULE))
            while not (fw.offers and any(e.WhichOneof("event") == "module_stored"
                                         for e in fw.events)):
                fw.handle_event(await conn.get_message())
        offer = next(iter(fw.offers.values()))
        ms.pause(old)
        await trio.sleep(LEASE_S + 1.0)
        new = await ms.leader(not_=old)
        ms.resume(old)
        await conn.send_message(fw.accept([offer.offer_id], [pb.TaskInfo(
            task_id="fenced", spec=task_spec("fenced"))]))
        accepted = False
        with trio.move_on_after(5):
            try:
                while True:
                    ev = fw.handle_event(await conn.get_message())
                    if ev.WhichOneof("event") == "accepted":
                        accepted = True
                        break
            except ConnectionClosed:
                pass
        await trio.sleep(1.0)  # time for a launch to reach the pinned agent, if one were sent
        nursery.cancel_scope.cancel()
    if not fenced:
        assert accepted or pinned.executions["fenced"], "the unfenced leader did not act"
        return
    assert not accepted, "the deposed leader acknowledged a launch"
    assert pinned.executions["fenced"] == 0, "the deposed leader launched a task"
    with trio.fail_after(10):
        while ms.alive(old):
            await trio.sleep(0.1)
    assert ms.masters[old].proc is not None and ms.masters[old].proc.returncode == EXIT_DEPOSED
    assert "NotLeader" in ms.log(old) or "no longer this master's" in ms.log(old)
    # The new leader never heard of the task (nothing was written).
    async with trio.open_nursery() as nursery:
        host, port = ms.ws[new]
        conn = await connect_websocket_url(nursery, f"ws://{host}:{port}/framework")
        await conn.send_message(fw.subscribe())
        await conn.send_message(fw.reconcile(["fenced"]))
        with trio.fail_after(10):
            while True:
                ev = fw.handle_event(await conn.get_message())
                if ev.WhichOneof("event") == "update" and ev.update.task_id == "fenced":
                    assert (ev.update.state, ev.update.reason) == (TS.LOST, pb.TASK_UNKNOWN)
                    break
        nursery.cancel_scope.cancel()


async def test_etcd_losing_one_then_two_members(masters: Any,
                                                etcd_cluster: EtcdCluster) -> None:
    ms: MasterSet = masters(2)
    try:
        async with open_coap_client() as coap, trio.open_nursery() as nursery:
            nursery.start_soon(ms.supervise)
            await ms.leader()
            agents = [HaAgent(coap, ms.coap, f"agent-{i}") for i in range(2)]
            for a in agents:
                nursery.start_soon(a.run)
            # One member down: 40 launches go through.
            etcd_cluster.kill(2)
            first = HaFramework(ms.ws, "one-down", [f"a{j}" for j in range(40)])
            with trio.fail_after(40):
                await first.run()
            # Two down: launches are refused with a clear error, none acknowledged (the
            # leader refuses with UNAVAILABLE for as long as etcd has no quorum, even when
            # its lease ran out meanwhile: no other master could lead either).
            etcd_cluster.kill(1)
            second = HaFramework(ms.ws, "two-down", [f"b{j}" for j in range(40)])
            nursery.start_soon(second.run)
            with trio.fail_after(20):
                while not any(e.code == pb.UNAVAILABLE for e in second.errors):
                    await trio.sleep(0.05)
            await trio.sleep(LEASE_S + 1.0)
            outage = len(second.accepted)
            refusal = next(e for e in second.errors if e.code == pb.UNAVAILABLE)
            assert "etcd" in refusal.message and "try again" in refusal.message
            # Quorum back: the same launches go through, nothing lost.
            etcd_cluster.start(1)
            etcd_cluster.start(2)
            with trio.fail_after(60):
                await second.finished.wait()
            nursery.cancel_scope.cancel()
        assert outage == 0, "a launch was acknowledged without a quorum"
        check_no_loss([first, second], agents)
    finally:
        etcd_cluster.start(1)
        etcd_cluster.start(2)
        await trio.to_thread.run_sync(etcd_cluster.wait_healthy)


async def test_edgerm_masters_names_every_master_and_the_leader(
        masters: Any, etcd_cluster: EtcdCluster) -> None:
    ms: MasterSet = masters(2)
    leader = await ms.leader()
    urls = [f"ws://{h}:{p}" for h, p in ms.ws]
    argv = ["masters", "--master", ",".join(urls), "--operator-token", "operator-token",
            "--etcd", ",".join(etcd_cluster.client_urls), "--etcd-prefix", ms.prefix, "--json"]
    out = io.StringIO()
    assert await masters_command(cli_main.build_parser().parse_args(argv), out) == 0
    doc = json.loads(out.getvalue())
    assert doc["leader"] == f"m{leader}"
    rows = {m["name"]: m for m in doc["masters"]}
    assert set(rows) == {"m0", "m1"}
    assert rows[f"m{leader}"]["role"] == "leader"
    assert rows[f"m{1 - leader}"]["role"] == "standby"
    assert rows["m0"]["urls"]["ws"] == urls[0] and rows["m1"]["urls"]["coap"].startswith("coap://")
    ms.kill(leader)  # a dead master leaves the registry when its lease ends
    with trio.fail_after(15):
        while True:
            out = io.StringIO()
            await masters_command(cli_main.build_parser().parse_args(argv), out)
            doc = json.loads(out.getvalue())
            if doc["leader"] == f"m{1 - leader}":
                break
            await trio.sleep(0.2)
    assert [m["name"] for m in doc["masters"]] == [f"m{1 - leader}"] or any(
        m["role"] == "unreachable" for m in doc["masters"])
