"""What a framework is told about a task: each status once, in a legal order of the task table,
never STAGING (as in Mesos). Covers the return from UNREACHABLE (the agent's own report decides,
not a heartbeat), an agent restarted while UNREACHABLE, and reconciliation while updates are
still unacknowledged."""

from __future__ import annotations

import random

import pytest

from edgerm.wire import pb
from edgerm_master.task_states import TERMINAL, TRANSITIONS
from edgerm_master.testing import (
    Cluster,
    ScriptedAgent,
    ScriptedFramework,
    launch,
    number_of,
    task_state,
)

TS = pb.TaskState


def seen(fw: ScriptedFramework, task_id: str) -> list[int]:
    """The states a framework sees for a task once re-sent updates (same uuid) are hidden, as
    the SDK hides them; and the sequence must be legal."""
    uuids: set[bytes] = set()
    states: list[int] = []
    for u in fw.updates:
        if u.task_id != task_id:
            continue
        if u.uuid:
            if u.uuid in uuids:
                continue
            uuids.add(u.uuid)
        states.append(u.state)
    assert TS.STAGING not in states, states
    for old, new in zip(states, states[1:], strict=False):
        assert new in TRANSITIONS[old], f"{old} -> {new} in {states}"
    return states


def go_unreachable(c: Cluster, fw: ScriptedFramework) -> None:
    c.step(31)  # three missed heartbeats of 10 s
    c.ack_all(fw)


def test_a_launch_still_queued_returns_without_a_staging_update(cluster: Cluster) -> None:
    a = cluster.add_agent(ScriptedAgent("a1"))
    fw = cluster.subscribe(ScriptedFramework())
    launch(cluster, fw, a, "t1", settle=False)  # the agent never fetched the launch
    go_unreachable(cluster, fw)
    assert seen(fw, "t1") == [TS.UNREACHABLE]
    cluster.settle(a)
    cluster.ack_all(fw)
    assert task_state(cluster, fw, "t1") == TS.RUNNING
    assert seen(fw, "t1") == [TS.UNREACHABLE, TS.RUNNING]
    assert a.starts[number_of(cluster, fw, "t1")] == 1


def test_a_starting_task_is_not_announced_starting_twice(cluster: Cluster) -> None:
    a = cluster.add_agent(ScriptedAgent("a1", auto_run=False))
    fw = cluster.subscribe(ScriptedFramework())
    launch(cluster, fw, a, "t1")
    go_unreachable(cluster, fw)
    cluster.settle(a)
    cluster.ack_all(fw)
    assert task_state(cluster, fw, "t1") == TS.STARTING
    a.run(number_of(cluster, fw, "t1"))
    cluster.settle(a)
    cluster.ack_all(fw)
    assert seen(fw, "t1") == [TS.STARTING, TS.UNREACHABLE, TS.RUNNING]


def test_back_from_unreachable_running_is_told_once(cluster: Cluster) -> None:
    a = cluster.add_agent(ScriptedAgent("a1"))
    fw = cluster.subscribe(ScriptedFramework())
    launch(cluster, fw, a, "t1")
    go_unreachable(cluster, fw)
    cluster.settle(a)
    cluster.ack_all(fw)
    a.finish(number_of(cluster, fw, "t1"))
    cluster.settle(a)
    cluster.ack_all(fw)
    assert seen(fw, "t1") == [TS.STARTING, TS.RUNNING, TS.UNREACHABLE, TS.RUNNING, TS.FINISHED]


def test_agent_restarted_while_unreachable_never_claims_its_dead_tasks(cluster: Cluster) -> None:
    """A restarted Linux agent keeps its seq: its first heartbeat (the Observe on `c`) is
    authentic and arrives before its registration. It must not make the dead task RUNNING."""
    a = cluster.add_agent(ScriptedAgent("a1"))
    fw = cluster.subscribe(ScriptedFramework())
    launch(cluster, fw, a, "t1")
    go_unreachable(cluster, fw)
    a.tasks.clear()          # the reboot lost the task; identity and seq survived
    a.need_register = True
    cluster.send(a, a.heartbeat_call())
    cluster.ack_all(fw)
    assert task_state(cluster, fw, "t1") == TS.UNREACHABLE
    cluster.settle(a)
    cluster.ack_all(fw)
    assert seen(fw, "t1") == [TS.STARTING, TS.RUNNING, TS.UNREACHABLE, TS.FAILED]
    assert fw.updates[-1].reason == pb.AGENT_RESTARTED


def test_a_heartbeat_after_unreachable_asks_for_the_task_report(cluster: Cluster) -> None:
    a = cluster.add_agent(ScriptedAgent("a1"))
    fw = cluster.subscribe(ScriptedFramework())
    launch(cluster, fw, a, "t1")
    go_unreachable(cluster, fw)
    reply = cluster.send(a, a.heartbeat_call())
    assert [cmd.WhichOneof("command") for cmd in reply.commands] == ["reregister"]
    assert cluster.master.agents[a.agent_id].state == 0   # reachable again
    assert task_state(cluster, fw, "t1") == TS.UNREACHABLE  # until the agent says


def test_reconcile_with_unacknowledged_updates_resends_the_oldest(cluster: Cluster) -> None:
    """Before: the answer was the current state (FINISHED/RECONCILIATION) ahead of the RUNNING
    and FINISHED still to come: FINISHED, RUNNING, FINISHED."""
    a = cluster.add_agent(ScriptedAgent("a1"))
    fw = cluster.subscribe(ScriptedFramework())
    launch(cluster, fw, a, "t1", settle=False)
    cluster.settle(a)
    a.finish(number_of(cluster, fw, "t1"))
    cluster.settle(a)
    assert [u.state for u in fw.updates] == [TS.STARTING]  # one outstanding update per task
    cluster.call(fw, fw.reconcile())
    cluster.call(fw, fw.reconcile(["t1"]))
    cluster.ack_all(fw)
    assert seen(fw, "t1") == [TS.STARTING, TS.RUNNING, TS.FINISHED]
    assert all(u.uuid for u in fw.updates)
    # Once everything is acknowledged, a reconciliation reports the state as it is.
    cluster.call(fw, fw.reconcile(["t1"]))
    assert fw.updates[-1].state == TS.FINISHED and fw.updates[-1].reason == pb.RECONCILIATION
    assert not fw.updates[-1].uuid


def test_failover_reconciliation_does_not_repeat_a_pending_end(cluster: Cluster) -> None:
    a = cluster.add_agent(ScriptedAgent("a1"))
    fw = cluster.subscribe(ScriptedFramework(failover_timeout_s=60))
    launch(cluster, fw, a, "t1")
    cluster.disconnect(fw)
    a.finish(number_of(cluster, fw, "t1"))
    cluster.settle(a)
    fw2 = ScriptedFramework(failover_timeout_s=60).posing_as(fw)
    cluster.subscribe(fw2)
    cluster.call(fw2, fw2.reconcile())   # what the SDK does after every failover
    assert [u.state for u in fw2.updates] == [TS.FINISHED, TS.FINISHED]
    assert fw2.updates[0].uuid == fw2.updates[1].uuid  # the same update: seen once
    cluster.ack_all(fw2)
    assert seen(fw2, "t1") == [TS.FINISHED]


def test_kill_of_an_ended_task_with_a_pending_update_resends_it(cluster: Cluster) -> None:
    a = cluster.add_agent(ScriptedAgent("a1"))
    fw = cluster.subscribe(ScriptedFramework())
    launch(cluster, fw, a, "t1")
    a.finish(number_of(cluster, fw, "t1"), TS.FAILED, exit_code=3)
    cluster.settle(a)
    cluster.call(fw, fw.kill("t1"))
    assert [u.state for u in fw.updates[-2:]] == [TS.FAILED, TS.FAILED]
    assert fw.updates[-1].uuid == fw.updates[-2].uuid and fw.updates[-1].exit_code == 3


def test_unreachable_twice_across_a_silent_return_is_told_once(cluster: Cluster) -> None:
    a = cluster.add_agent(ScriptedAgent("a1", auto_run=False))
    fw = cluster.subscribe(ScriptedFramework())
    launch(cluster, fw, a, "t1")
    go_unreachable(cluster, fw)
    cluster.settle(a)          # back, still STARTING: not told
    go_unreachable(cluster, fw)
    assert task_state(cluster, fw, "t1") == TS.UNREACHABLE
    cluster.settle(a)
    a.run(number_of(cluster, fw, "t1"))
    cluster.settle(a)
    cluster.ack_all(fw)
    assert seen(fw, "t1") == [TS.STARTING, TS.UNREACHABLE, TS.RUNNING]


def test_silent_again_before_the_report_keeps_the_task_unreachable(cluster: Cluster) -> None:
    a = cluster.add_agent(ScriptedAgent("a1"))
    fw = cluster.subscribe(ScriptedFramework())
    launch(cluster, fw, a, "t1")
    go_unreachable(cluster, fw)
    cluster.send(a, a.heartbeat_call())   # heard from; the ReRegister it got is not acted on
    a.need_register = False
    go_unreachable(cluster, fw)           # silent again: its task is still UNREACHABLE
    assert cluster.master.agents[a.agent_id].state == 1
    assert task_state(cluster, fw, "t1") == TS.UNREACHABLE
    a.need_register = True
    cluster.settle(a)
    cluster.ack_all(fw)
    assert seen(fw, "t1") == [TS.STARTING, TS.RUNNING, TS.UNREACHABLE, TS.RUNNING]


@pytest.mark.parametrize("seed", range(60))
def test_random_histories_keep_what_frameworks_see_legal(cluster: Cluster, seed: int) -> None:
    """Silence, returns, agent restarts (with the heartbeat first or not), ends, kills,
    reconciliations and framework reconnects in random order: every task's updates, as a
    framework sees them (by uuid), stay a path through the table with no STAGING, and nothing
    follows an end."""
    rng = random.Random(seed)
    a = cluster.add_agent(ScriptedAgent("a1", auto_run=False))
    fw = cluster.subscribe(ScriptedFramework(failover_timeout_s=600))
    ids = [f"t{i}" for i in range(4)]
    launch(cluster, fw, a, *ids, cpus=0.5, settle=False)
    connected = True
    for _ in range(40):
        action = rng.randrange(10)
        numbers = {number_of(cluster, fw, t): t for t in ids}
        live = [n for n in a.running() if n in numbers]
        if action == 0:
            cluster.step(rng.choice([5.0, 15.0, 31.0, 65.0]))
        elif action == 1:
            cluster.settle(a)
        elif action == 2 and live:
            n = rng.choice(live)
            if a.tasks[n] == TS.STARTING:
                a.run(n)
            else:
                a.finish(n, rng.choice([TS.FINISHED, TS.FAILED]))
            cluster.exchange(a)
        elif action == 3:
            a.restart(keep_tasks=rng.random() < 0.5)
        elif action == 4:
            if rng.random() < 0.5:
                a.tasks.clear()   # rebooted, seq kept: a heartbeat may come first
            a.need_register = True
            cluster.send(a, a.heartbeat_call())
        elif action == 5 and connected:
            cluster.call(fw, fw.kill(rng.choice(ids)))
        elif action == 6 and connected:
            cluster.call(fw, fw.reconcile())
        elif action == 7 and connected:
            cluster.ack_all(fw)
        elif action == 8:
            if connected:
                cluster.disconnect(fw)
            else:
                cluster.subscribe(fw)
            connected = not connected
        else:
            cluster.exchange(a)
    if not connected:
        cluster.subscribe(fw)
    cluster.settle(a)
    cluster.ack_all(fw)
    for t in ids:
        states = seen_updates(fw, t)
        ends = [i for i, s in enumerate(states) if s in TERMINAL]
        assert not ends or ends[0] == len(states) - 1, states


def seen_updates(fw: ScriptedFramework, task_id: str) -> list[int]:
    """Like `seen`, over the updates proper (reconciliation answers without uuid left out)."""
    only = ScriptedFramework()
    only.updates = [u for u in fw.updates if u.uuid]
    return seen(only, task_id)
