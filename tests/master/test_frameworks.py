"""Frameworks: the call dispatch, subscription, removal and the delivery of updates (at least
once, in order, until acknowledged) and outputs (kept until surely delivered)."""

from __future__ import annotations

from edgerm.wire import pb
from edgerm_master import frameworks
from edgerm_master import records as rec
from edgerm_master.events import CloseFramework
from edgerm_master.state import T_RELEASE, T_RETRY
from edgerm_master.testing import Cluster, ScriptedAgent, ScriptedFramework, launch, number_of

E = pb.ErrorCode
TS = pb.TaskState


def test_every_call_but_subscribe_has_a_handler(cluster: Cluster) -> None:
    f = cluster.subscribe(ScriptedFramework())
    cluster.call(f, f.revive())  # the first call fills the table
    kinds = {fd.name for fd in pb.FrameworkCall.DESCRIPTOR.oneofs_by_name["call"].fields}
    assert set(frameworks.FRAMEWORK_CALLS) == kinds - {"subscribe"}


def test_a_refused_subscribe_closes_the_connection_and_changes_nothing(cluster: Cluster) -> None:
    st = cluster.master.state
    f = ScriptedFramework(token="wrong")
    frameworks.framework_call(st, 5, f.subscribe(), cluster.now, "peer")
    error, close = st.outbox
    assert error.event.error.code == E.UNAUTHENTICATED  # type: ignore[union-attr]
    assert close == CloseFramework(5, "the first call must be a valid Subscribe", refused=True)
    assert st.frameworks == {} and st.conns == {} and st.records == []
    assert st.stats["framework_errors"] == 1


def test_updates_go_one_at_a_time_and_are_retried_until_acknowledged(cluster: Cluster) -> None:
    a = cluster.add_agent(ScriptedAgent())
    f = cluster.subscribe(ScriptedFramework())
    launch(cluster, f, a, "t1")
    st = cluster.master.state
    fw = st.frameworks[f.framework_id]
    task = fw.tasks["t1"]
    sent = len(f.updates)
    a.finish(number_of(cluster, f, "t1"))
    cluster.settle(a)
    assert f.updates[-1].state == TS.FINISHED and len(f.updates) == sent + 1
    assert fw.retry_at and (fw.retry_at, T_RETRY, fw.framework_id) in st.timers
    frameworks.retry(st, fw.framework_id, fw.retry_at)
    cluster.flush()
    assert f.updates[-1].uuid == f.updates[-2].uuid  # the same update again
    cluster.call(f, f.acknowledge(f.updates[-1]))
    # Acknowledged and terminal: the task is forgotten, kept only among the completed.
    assert "t1" not in fw.tasks and fw.completed["t1"] is task and not fw.pending


def test_outputs_are_kept_until_the_connection_outlived_them(cluster: Cluster) -> None:
    a = cluster.add_agent(ScriptedAgent())
    f = cluster.subscribe(ScriptedFramework())
    launch(cluster, f, a, "t1")
    st = cluster.master.state
    fw = st.frameworks[f.framework_id]
    a.publish(number_of(cluster, f, "t1"), b"hello")
    cluster.settle(a)
    assert [o.data for o in f.outputs] == [b"hello"]  # type: ignore[attr-defined]
    assert fw.outputs_held == {"t1"} and (fw.release_at, T_RELEASE, fw.framework_id) in st.timers
    frameworks.release_outputs(st, fw.framework_id, fw.release_at - 1)  # too soon
    assert fw.outputs_held == {"t1"}
    frameworks.release_outputs(st, fw.framework_id, fw.release_at)
    assert not fw.outputs_held and fw.tasks["t1"].outputs is None
    assert rec.ReleaseOutputs(fw.framework_id, "t1", 1) in st.records


def test_removal_kills_the_tasks_and_forgets_the_framework_after_them(cluster: Cluster) -> None:
    a = cluster.add_agent(ScriptedAgent())
    f = cluster.subscribe(ScriptedFramework())
    launch(cluster, f, a, "t1")
    st = cluster.master.state
    fw = st.frameworks[f.framework_id]
    frameworks.remove(st, fw, cluster.now)
    assert fw.removing and fw.conn is None and fw.framework_id in st.frameworks
    assert fw.tasks["t1"].state == TS.KILLING
    cluster.flush()
    cluster.settle(a)  # the agent kills it
    assert f.framework_id not in st.frameworks
    assert f.framework_id not in st.allocator.frameworks()


def test_failover_expiry_only_removes_a_framework_still_away(cluster: Cluster) -> None:
    f = cluster.subscribe(ScriptedFramework(failover_timeout_s=20))
    st = cluster.master.state
    frameworks.failover_expired(st, f.framework_id, cluster.now + 100)
    assert not st.frameworks[f.framework_id].removing  # connected: nothing happens
    cluster.disconnect(f)
    frameworks.failover_expired(st, f.framework_id, cluster.now + 19)
    assert f.framework_id in st.frameworks
    frameworks.failover_expired(st, f.framework_id, cluster.now + 20)
    assert f.framework_id not in st.frameworks  # no tasks: forgotten at once
