"""Actuators through the master's offers and accepts: one task at a time holds an actuator,
whatever shares its agent announced for it, across frameworks and within one accept."""

from __future__ import annotations

from edgerm.wire import pb
from edgerm_master.testing import (
    Cluster,
    ScriptedAgent,
    ScriptedFramework,
    number_of,
    offer_on,
    task_info,
    task_state,
)

E = pb.ErrorCode
TS = pb.TaskState


def _relay(task_id: str, shares: int = 0) -> pb.TaskInfo:
    return task_info(task_id, cpus=0.5, mem_mb=10,
                     devices=[pb.Device(name="relay", shares=shares)])


def _offered_devices(c: Cluster, f: ScriptedFramework, a: ScriptedAgent) -> list[tuple[str, int]]:
    c.step(1.0)
    return [(d.name, d.shares) for d in offer_on(f, a).resources.devices]


def test_an_actuator_is_held_by_one_task_at_a_time(cluster: Cluster) -> None:
    # A misconfigured agent announces shares for its relay; the master still lets one task in.
    res = pb.Resources(cpus=4, mem_mb=1000, devices=[
        pb.Device(name="relay", kind=pb.ACTUATOR, shares=3),
        pb.Device(name="temp", kind=pb.SENSOR, shares=2)])
    a = cluster.add_agent(ScriptedAgent("a1", resources=res))
    f1 = cluster.subscribe(ScriptedFramework("f1"))
    f2 = cluster.subscribe(ScriptedFramework("f2"))
    assert _offered_devices(cluster, f1, a) == [("relay", 0), ("temp", 2)]

    # Two tasks of one accept, and a task asking for two shares of it: refused, nothing taken.
    o = offer_on(f1, a)
    cluster.call(f1, f1.accept([o.offer_id], [_relay("r1"), _relay("r2", shares=1)]))
    assert f1.errors[-1].code == E.INVALID_OFFER and "relay" in f1.errors[-1].message
    cluster.call(f1, f1.accept([o.offer_id], [_relay("r3", shares=2)]))
    assert f1.errors[-1].code == E.INVALID_OFFER
    assert o.offer_id in cluster.master.offers

    errors = len(f1.errors)
    cluster.call(f1, f1.accept([o.offer_id], [_relay("r1", shares=1)]))
    assert len(f1.errors) == errors
    cluster.settle(a)
    cluster.ack_all(f1)
    assert task_state(cluster, f1, "r1") == TS.RUNNING

    # While r1 holds it, no framework is offered the relay, and an accept naming it fails.
    cluster.call(f1, f1.decline([o.offer_id for o in f1.offers.values()], refuse_seconds=100))
    assert ("relay", 0) not in _offered_devices(cluster, f2, a)
    cluster.call(f2, f2.accept([offer_on(f2, a).offer_id], [_relay("x")]))
    assert f2.errors[-1].code == E.INVALID_OFFER and "relay" in f2.errors[-1].message

    # Once r1 ends, the relay is offered again (to whichever framework comes first) and a
    # new task can take it.
    a.finish(number_of(cluster, f1, "r1"))
    cluster.settle(a)
    cluster.ack_all(f1)
    cluster.step(1.0)
    back = [(f, o) for f in (f1, f2) for o in f.offers.values()
            if any(d.name == "relay" for d in o.resources.devices)]
    assert len(back) == 1
    f, o = back[0]
    errors = len(f.errors)
    cluster.call(f, f.accept([o.offer_id], [_relay("again")]))
    assert len(f.errors) == errors
    cluster.settle(a)
    assert task_state(cluster, f, "again") == TS.RUNNING
