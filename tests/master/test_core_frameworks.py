"""The framework side of the core with a fake clock: subscribe, offers (exclusive, decline,
expiry, rescind), accept validation, kill (also before launch), at-most-once launch, status
updates until acknowledged, reconcile, failover, teardown, DRF weights, the module store."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from edgerm.wire import encode, pb
from edgerm_master.testing import (
    Cluster,
    ScriptedAgent,
    ScriptedFramework,
    launch,
    number_of,
    offer_on,
    task_info,
    task_state,
    wasm_module,
)

E = pb.ErrorCode
TS = pb.TaskState


def agent_and_framework(c: Cluster, **fw: object) -> tuple[ScriptedAgent, ScriptedFramework]:
    a = c.add_agent(ScriptedAgent("a1"))
    f = c.subscribe(ScriptedFramework(**fw))  # type: ignore[arg-type]
    return a, f


# --- subscribe


def test_subscribe_needs_the_token(cluster: Cluster) -> None:
    f = ScriptedFramework(token="wrong")
    cluster.subscribe(f)
    assert f.errors[-1].code == E.UNAUTHENTICATED and f.closed
    assert not f.framework_id and cluster.master.frameworks == {}


def test_calls_before_subscribe_are_refused(cluster: Cluster) -> None:
    f = ScriptedFramework()
    cluster.call(f, f.kill("x"))
    assert f.errors[-1].code == E.UNAUTHENTICATED and f.closed


@pytest.mark.parametrize("first", [b"\xff\xff", b"", encode(pb.FrameworkCall(subscribe=pb.Subscribe(
    token="framework-token", failover_timeout_s=-1.0)))], ids=["garbage", "empty", "bad-subscribe"])
def test_a_refused_first_call_is_answered_then_the_connection_closed(
        cluster: Cluster, first: bytes) -> None:
    f = ScriptedFramework()
    conn = cluster.connect(f)
    cluster.master.framework_call(conn, first, cluster.now)
    cluster.flush()
    assert f.errors[-1].code == E.BAD_REQUEST and f.closed and conn in cluster.closed
    assert cluster.master.frameworks == {} and conn not in cluster.master.conns


def test_a_framework_id_is_taken_over_only_with_its_secret(new_cluster: Any) -> None:
    cluster = new_cluster(framework_tokens=["framework-token", "other-token"])
    a, f = agent_and_framework(cluster)
    assert len(f.framework_secret) == 16
    launch(cluster, f, a, "t1")
    updates, before = len(f.updates), cluster.committed
    attempts = [("other-token", b""), ("other-token", b"x" * 16),
                ("framework-token", b""), ("framework-token", f.framework_secret[:-1] + b"?")]
    for token, secret in attempts:
        thief = ScriptedFramework(token=token)
        thief.framework_id, thief.framework_secret = f.framework_id, secret
        cluster.subscribe(thief)
        assert thief.errors[-1].code == E.FORBIDDEN and thief.closed, (token, secret)
        assert thief.updates == [] and thief.offers == {}
        assert "framework_secret" in thief.errors[-1].message
        cluster.call(thief, thief.kill("t1"))   # a new connection: subscribe first
        assert thief.errors[-1].code == E.UNAUTHENTICATED and thief.closed
    # The owner's connection was not touched, nothing was recorded, the task runs on.
    assert not f.closed and cluster.master.frameworks[f.framework_id].conn == cluster.fw_conn[id(f)]
    assert len(f.updates) == updates and cluster.committed == before
    cluster.settle(a)
    assert task_state(cluster, f, "t1") == TS.RUNNING and a.tasks[1] == TS.RUNNING
    # The secret is what counts, not the token: the owner's process restarted with it takes over.
    heir = ScriptedFramework(token="other-token").posing_as(f)
    cluster.subscribe(heir)
    assert heir.errors == [] and heir.framework_id == f.framework_id and f.closed
    assert heir.events[0].subscribed.framework_secret == b""  # handed out once only


def test_framework_id_must_match_its_connection(cluster: Cluster) -> None:
    a, f1 = agent_and_framework(cluster)
    f2 = cluster.subscribe(ScriptedFramework("other"))
    launch(cluster, f1, a, "t1")
    # f2 claims to be f1 on its own connection.
    f2.framework_id, real = f1.framework_id, f2.framework_id
    cluster.call(f2, f2.kill("t1"))
    assert f2.errors[-1].code == E.FORBIDDEN
    f2.framework_id = real
    cluster.call(f2, f2.kill("t1"))  # its own id: f1's task is simply not there
    assert f2.errors[-1].code == E.NOT_FOUND
    cluster.call(f2, f2.reconcile(["t1"]))  # nor can it see it
    assert f2.updates[-1].state == TS.LOST and f2.updates[-1].reason == pb.TASK_UNKNOWN
    cluster.call(f2, f2.reconcile())
    assert all(u.task_id != "t1" or u.reason == pb.TASK_UNKNOWN for u in f2.updates)
    assert task_state(cluster, f1, "t1") == TS.RUNNING


def test_bad_frames_get_errors_and_change_nothing(cluster: Cluster) -> None:
    a, f = agent_and_framework(cluster)
    before = cluster.committed
    conn = cluster.fw_conn[id(f)]
    for junk in (b"", b"\xff\xff", b"\xa1\x01\x01", encode(pb.FrameworkCall(
            framework_id=f.framework_id))):
        cluster.master.framework_call(conn, junk, cluster.now)
        cluster.flush()
    assert [e.code for e in f.errors] == [E.BAD_REQUEST] * 4
    assert cluster.committed == before and not f.closed  # subscribed: it may go on


# --- offers


def test_offer_is_not_offered_to_another_framework(cluster: Cluster) -> None:
    """Prototype: one framework's offer locked the whole agent for everyone, and offers were
    reusable by other frameworks."""
    a, f1 = agent_and_framework(cluster)
    f2 = cluster.subscribe(ScriptedFramework("f2"))
    cluster.step(1.0)
    assert len(f1.offers) == 1 and not f2.offers
    o = offer_on(f1, a)
    # f2 cannot use f1's offer.
    cluster.call(f2, f2.accept([o.offer_id], [task_info("x")]))
    assert f2.errors[-1].code == E.INVALID_OFFER
    # f1 uses part of it; the rest goes back and is offered (to f2, which has the lower share).
    cluster.call(f1, f1.accept([o.offer_id], [task_info("t1", cpus=1)]))
    cluster.step(1.0)
    assert offer_on(f2, a).resources.cpus == 3


def test_decline_with_refuse_seconds(cluster: Cluster) -> None:
    a, f = agent_and_framework(cluster)
    o = offer_on(f, a)
    cluster.call(f, f.decline([o.offer_id], refuse_seconds=10))
    cluster.step(5)
    assert not f.offers
    cluster.step(6)
    assert offer_on(f, a).resources.cpus == 4


def test_offer_expires_and_is_rescinded(cluster: Cluster) -> None:
    a, f = agent_and_framework(cluster)
    o = offer_on(f, a)
    cluster.step(30.5)
    assert f.last("rescind").offer_id == o.offer_id or o.offer_id not in f.offers
    assert o.offer_id not in cluster.master.offers
    cluster.call(f, f.accept([o.offer_id], [task_info("late")]))
    assert f.errors[-1].code == E.INVALID_OFFER


def test_offer_cannot_be_used_twice(cluster: Cluster) -> None:
    a, f = agent_and_framework(cluster)
    o = offer_on(f, a)
    cluster.call(f, f.accept([o.offer_id], [task_info("t1")]))
    cluster.call(f, f.accept([o.offer_id], [task_info("t2")]))
    assert f.errors[-1].code == E.INVALID_OFFER
    assert "t2" not in cluster.master.frameworks[f.framework_id].tasks


def test_one_accept_cannot_launch_on_another_agent(cluster: Cluster) -> None:
    """Prototype: one offer launched tasks on other agents."""
    a, f = agent_and_framework(cluster)
    b = cluster.add_agent(ScriptedAgent("a2"))
    cluster.step(1.0)
    oa, ob = offer_on(f, a), offer_on(f, b)
    cluster.call(f, f.accept([oa.offer_id, ob.offer_id], [task_info("t1")]))
    assert f.errors[-1].code == E.INVALID_OFFER and "one agent" in f.errors[-1].message
    # Nothing changed: both offers are still usable.
    f.offers.update({oa.offer_id: oa, ob.offer_id: ob})
    cluster.call(f, f.accept([ob.offer_id], [task_info("t1")]))
    assert len(f.errors) == 1
    cluster.settle(b)
    assert b.running() and not a.running()


@pytest.mark.parametrize("tasks,code,words", [
    ([task_info("big", cpus=5)], E.INVALID_OFFER, "more than the offers hold"),
    ([task_info("p", ports=[pb.Range(begin=80, end=80)])], E.INVALID_OFFER, "ports"),
    ([task_info("d", devices=[pb.Device(name="camera")])], E.BAD_REQUEST, "camera"),
    ([task_info("same"), task_info("same")], E.CONFLICT, "already used"),
    ([task_info("")], E.BAD_REQUEST, "task_id"),
    ([pb.TaskInfo(task_id="nokind", spec=pb.TaskSpec(name="x"))], E.BAD_REQUEST, "docker"),
    ([pb.TaskInfo(task_id="w", spec=pb.TaskSpec(wasm=pb.WasmTask(sha256=b"\1" * 32)))],
     E.NOT_FOUND, "upload"),
])
def test_accept_validation(cluster: Cluster, tasks: list[pb.TaskInfo], code: int,
                           words: str) -> None:
    a, f = agent_and_framework(cluster)
    o = offer_on(f, a)
    before = cluster.committed
    cluster.call(f, f.accept([o.offer_id], tasks))
    assert f.errors[-1].code == code and words in f.errors[-1].message, f.errors[-1]
    assert cluster.committed == before
    assert o.offer_id in cluster.master.offers  # an invalid accept changes nothing


def test_task_id_unique_per_framework_not_globally(cluster: Cluster) -> None:
    a, f1 = agent_and_framework(cluster)
    launch(cluster, f1, a, "t1")
    cluster.step(1.0)
    cluster.call(f1, f1.accept([offer_on(f1, a).offer_id], [task_info("t1")]))
    assert f1.errors[-1].code == E.CONFLICT
    cluster.call(f1, f1.decline(cluster_offer_ids(cluster, f1), refuse_seconds=100))
    f2 = cluster.subscribe(ScriptedFramework("f2"))
    cluster.step(1.0)
    launch(cluster, f2, a, "t1")
    assert task_state(cluster, f2, "t1") == TS.RUNNING


def test_devices_exclusive_and_shared(cluster: Cluster) -> None:
    res = pb.Resources(cpus=4, mem_mb=1000, devices=[pb.Device(name="cam"),
                                                      pb.Device(name="temp", shares=2)])
    a = cluster.add_agent(ScriptedAgent("a1", resources=res))
    f = cluster.subscribe(ScriptedFramework())
    launch(cluster, f, a, "x")  # no device
    cluster.step(1.0)
    cluster.call(f, f.accept([offer_on(f, a).offer_id], [
        task_info("c1", devices=[pb.Device(name="cam")]),
        task_info("s1", devices=[pb.Device(name="temp", shares=1)])]))
    assert not f.errors
    cluster.step(1.0)
    left = offer_on(f, a).resources
    assert [(d.name, d.shares) for d in left.devices] == [("temp", 1)]
    cluster.call(f, f.accept([offer_on(f, a).offer_id], [
        task_info("c2", devices=[pb.Device(name="cam")])]))
    assert f.errors[-1].code == E.INVALID_OFFER


# --- tasks


def test_kill_before_the_agent_got_the_launch(cluster: Cluster) -> None:
    """Prototype: a kill of an unissued task sent both run and kill, and the task ran."""
    a, f = agent_and_framework(cluster)
    launch(cluster, f, a, "t1", settle=False)
    cluster.call(f, f.kill("t1"))
    assert task_state(cluster, f, "t1") == TS.KILLED
    assert f.updates[-1].reason == pb.KILLED_BEFORE_LAUNCH
    cluster.settle(a)
    assert not a.starts  # the launch never reached the agent
    cluster.ack_all(f)
    cluster.step(1.0)
    assert offer_on(f, a).resources.cpus == 4  # resources back


def test_kill_running_task(cluster: Cluster) -> None:
    a, f = agent_and_framework(cluster)
    launch(cluster, f, a, "t1")
    cluster.call(f, f.kill("t1"))
    assert task_state(cluster, f, "t1") == TS.KILLING
    cluster.settle(a)
    cluster.ack_all(f)
    assert f.states("t1")[-2:] == [TS.KILLING, TS.KILLED]
    assert not cluster.master.frameworks[f.framework_id].tasks  # acknowledged terminal: gone
    cluster.call(f, f.reconcile(["t1"]))
    assert f.updates[-1].state == TS.KILLED


def test_redelivered_launch_never_starts_a_second_copy(cluster: Cluster) -> None:
    """Prototype: ISSUED tasks were re-sent on every ping and the C agent launched them
    twice. The master re-sends a launch until it is acknowledged, with the same task number;
    the reply with the launch is lost here twice."""
    a, f = agent_and_framework(cluster)
    launch(cluster, f, a, "t1", settle=False)
    for _ in range(2):
        cluster.master.agent_call(a.heartbeat_call(), cluster.now)  # reply lost
        cluster.flush()
        cluster.step(1.0)
    cluster.settle(a)
    # The agent applied it, but its ack was lost too: re-sent once more, applied by number.
    a.applied = 0
    a.acked_applied = 0
    cluster.settle(a)
    assert a.starts[number_of(cluster, f, "t1")] == 1


def test_kill_race_with_a_launch_the_agent_already_has(cluster: Cluster) -> None:
    """The agent got the launch but its ack has not arrived: the kill goes to the agent."""
    a, f = agent_and_framework(cluster)
    launch(cluster, f, a, "t1", settle=False)
    cluster.master.agent_call(a.heartbeat_call(), cluster.now)  # reply lost in transit...
    cluster.flush()
    cluster.step(1.0)
    cluster.exchange(a)  # ...but the next one arrives: the agent starts the task
    cluster.call(f, f.kill("t1"))
    cluster.settle(a)
    cluster.ack_all(f)
    n = number_of(cluster, f, "t1")
    assert a.tasks[n] == TS.KILLED and task_state(cluster, f, "t1") == TS.KILLED


def test_status_updates_in_order_until_acknowledged(cluster: Cluster) -> None:
    a, f = agent_and_framework(cluster)
    launch(cluster, f, a, "t1", settle=False)
    cluster.settle(a)  # STARTING and RUNNING arrive at the master
    assert f.states("t1") == [TS.STARTING]  # RUNNING waits for the ack of STARTING
    cluster.step(10.5)
    assert f.states("t1") == [TS.STARTING, TS.STARTING]  # re-sent, same uuid
    assert f.updates[0].uuid == f.updates[1].uuid
    cluster.call(f, f.acknowledge(f.updates[0]))
    assert f.states("t1")[-1] == TS.RUNNING
    # Acknowledging out of order is refused.
    a.finish(number_of(cluster, f, "t1"))
    cluster.settle(a)
    task = cluster.master.frameworks[f.framework_id].tasks["t1"]
    assert task.updates is not None and len(task.updates) == 2
    cluster.call(f, f.acknowledge(task.updates[1]))
    assert f.errors[-1].code == E.CONFLICT


def test_reconcile_explicit_and_implicit(cluster: Cluster) -> None:
    a, f = agent_and_framework(cluster)
    launch(cluster, f, a, "t1", "t2", cpus=0.5)
    n = len(f.updates)
    cluster.call(f, f.reconcile(["t1", "nope"]))
    got = {u.task_id: (u.state, u.reason, u.uuid) for u in f.updates[n:]}
    assert got["t1"] == (TS.RUNNING, pb.RECONCILIATION, b"")
    assert got["nope"][:2] == (TS.LOST, pb.TASK_UNKNOWN)
    n = len(f.updates)
    cluster.call(f, f.reconcile())
    assert sorted(u.task_id for u in f.updates[n:]) == ["t1", "t2"]


def test_failover_within_timeout_keeps_tasks(cluster: Cluster) -> None:
    a, f = agent_and_framework(cluster, failover_timeout_s=20)
    launch(cluster, f, a, "t1")
    cluster.disconnect(f)
    a.finish(number_of(cluster, f, "t1"))
    cluster.settle(a)
    cluster.step(10)
    f2 = ScriptedFramework(failover_timeout_s=20)
    f2.framework_id = f.framework_id
    f2.framework_secret = f.framework_secret
    cluster.subscribe(f2)
    assert f2.framework_id == f.framework_id
    assert f2.states("t1") == [TS.FINISHED]  # the pending update is delivered on resubscribe


def test_failover_timeout_kills_tasks(cluster: Cluster) -> None:
    a, f = agent_and_framework(cluster, failover_timeout_s=20)
    launch(cluster, f, a, "t1")
    cluster.disconnect(f)
    cluster.settle(a)
    cluster.step(21)
    cluster.settle(a)
    assert a.tasks[1] == TS.KILLED
    cluster.step(0.1)
    assert f.framework_id not in cluster.master.frameworks
    f2 = ScriptedFramework()
    f2.framework_id = f.framework_id
    f2.framework_secret = f.framework_secret
    cluster.subscribe(f2)
    assert f2.errors[-1].code == E.NOT_FOUND


def test_teardown_kills_and_drops(cluster: Cluster) -> None:
    a, f = agent_and_framework(cluster)
    launch(cluster, f, a, "run")
    launch(cluster, f, a, "queued", settle=False)
    cluster.call(f, f.teardown())
    assert f.closed
    cluster.settle(a)
    cluster.step(0.1)
    assert a.tasks[number_of_any(cluster, f, "run")] == TS.KILLED
    assert a.starts[2] == 0  # the queued launch was dropped, never delivered
    assert f.framework_id not in cluster.master.frameworks
    assert cluster.master.allocator.frameworks() == []


def number_of_any(c: Cluster, f: ScriptedFramework, tid: str) -> int:
    # The framework is gone from the master; task numbers were given in launch order.
    return {"run": 1, "queued": 2}[tid]


def test_drf_with_weights(new_cluster: object) -> None:
    c = new_cluster(role_weights={"heavy": 3.0})  # type: ignore[operator]
    for i in range(8):
        c.add_agent(ScriptedAgent(f"a{i}", resources=pb.Resources(cpus=1, mem_mb=100)))
    light = c.subscribe(ScriptedFramework("light"))
    heavy = c.subscribe(ScriptedFramework("heavy", role="heavy"))
    light.offers.clear()
    heavy.offers.clear()
    for f in (light, heavy):
        for oid in list(cluster_offer_ids(c, f)):
            c.call(f, f.decline([oid], refuse_seconds=0.001))
    c.step(1.0)
    # Both hold offers; over rounds, heavy converges to 3x light's share: 6 vs 2 agents.
    assert len(heavy.offers) == 6 and len(light.offers) == 2


def cluster_offer_ids(c: Cluster, f: ScriptedFramework) -> list[str]:
    return [o.offer_id for o in c.master.offers.values() if o.framework_id == f.framework_id]


def test_suppress_and_revive(cluster: Cluster) -> None:
    a, f = agent_and_framework(cluster)
    cluster.call(f, f.suppress())
    cluster.call(f, f.decline(list(f.offers)))
    cluster.step(10)
    assert not f.offers
    cluster.call(f, f.revive())
    cluster.step(0.1)
    assert f.offers


# --- modules


def test_upload_and_launch_a_wasm_module(cluster: Cluster) -> None:
    a, f = agent_and_framework(cluster)
    mod = wasm_module(b"hello")
    cluster.call(f, f.upload(mod, name="hello.wasm"))
    stored = f.last("module_stored")
    assert stored.sha256 == hashlib.sha256(mod).digest() and stored.size == len(mod)
    spec = pb.TaskSpec(name="w", resources=pb.Resources(cpus=0.5),
                       wasm=pb.WasmTask(sha256=stored.sha256))
    cluster.call(f, f.accept([offer_on(f, a).offer_id], [pb.TaskInfo(task_id="w", spec=spec)]))
    assert not f.errors
    cluster.settle(a)
    assert a.specs[1].wasm.size == len(mod)  # the master fills in the size
    assert cluster.master.modules[stored.sha256].refs == 1


def test_module_limits_and_garbage_collection(new_cluster: object) -> None:
    c = new_cluster(module_max_bytes=100, modules_total_bytes=150,  # type: ignore[operator]
                    module_grace_s=5.0)
    a, f = agent_and_framework(c)
    c.call(f, f.upload(wasm_module(b"x" * 200)))
    assert f.errors[-1].code == E.TOO_LARGE
    c.call(f, f.upload(b"not wasm"))
    assert f.errors[-1].code == E.BAD_REQUEST
    c.call(f, f.upload(wasm_module(b"a" * 80)))
    c.call(f, f.upload(wasm_module(b"b" * 80)))
    assert f.errors[-1].code == E.TOO_LARGE and "full" in f.errors[-1].message
    c.step(6)
    assert c.master.modules == {}  # unreferenced: removed after the grace time
    assert c.store.rows("modules") == []
    c.call(f, f.upload(wasm_module(b"b" * 80)))
    assert len(c.master.modules) == 1


def test_custom_scalars_ranges_sets_held_until_terminal(cluster: Cluster) -> None:
    res = pb.Resources(cpus=2, mem_mb=100, custom=[
        pb.CustomResource(name="gpu_mem", scalar=8.0),
        pb.CustomResource(name="vlan", range=pb.Range(begin=100, end=109)),
        pb.CustomResource(name="zone", set=pb.Set(items=["a", "b"]))])
    a = cluster.add_agent(ScriptedAgent("a1", resources=res))
    f = cluster.subscribe(ScriptedFramework())
    claim = pb.Resources(cpus=1, mem_mb=10, custom=[
        pb.CustomResource(name="gpu_mem", scalar=3.0),
        pb.CustomResource(name="vlan", range=pb.Range(begin=100, end=104)),
        pb.CustomResource(name="zone", set=pb.Set(items=["a"]))])
    ti = pb.TaskInfo(task_id="c", spec=pb.TaskSpec(name="c", resources=claim,
                                                     docker=pb.DockerTask(image="x")))
    cluster.call(f, f.accept([offer_on(f, a).offer_id], [ti]))
    assert not f.errors
    cluster.settle(a)
    cluster.ack_all(f)
    cluster.step(1.0)
    left = {c.name: c for c in offer_on(f, a).resources.custom}
    assert left["gpu_mem"].scalar == 5.0
    assert (left["vlan"].range.begin, left["vlan"].range.end) == (105, 109)
    assert list(left["zone"].set.items) == ["b"]
    # Held while it runs, back when it is terminal.
    cluster.call(f, f.decline(list(f.offers), refuse_seconds=0.5))
    a.finish(1)
    cluster.settle(a)
    cluster.ack_all(f)
    cluster.step(2.0)  # past the refuse filter and the next allocation round
    back = {c.name: c for c in offer_on(f, a).resources.custom}
    assert back["gpu_mem"].scalar == 8.0 and list(back["zone"].set.items) == ["a", "b"]
