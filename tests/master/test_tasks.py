"""Tasks: every move on the task table, agents' status updates, kills, returns from
UNREACHABLE and what a terminal task gives back."""

from __future__ import annotations

import pytest

from edgerm.wire import decode, pb
from edgerm_master import records as rec
from edgerm_master import tasks
from edgerm_master.state import Task
from edgerm_master.task_states import IllegalTransition
from edgerm_master.testing import Cluster, ScriptedAgent, ScriptedFramework, launch, number_of

TS = pb.TaskState
R = pb.Reason


def running(c: Cluster) -> tuple[ScriptedFramework, ScriptedAgent, Task]:
    a = c.add_agent(ScriptedAgent())
    f = c.subscribe(ScriptedFramework())
    launch(c, f, a, "t1")
    return f, a, c.master.frameworks[f.framework_id].tasks["t1"]


def test_an_illegal_move_is_refused_and_changes_nothing(cluster: Cluster) -> None:
    f, _, task = running(cluster)
    st = cluster.master.state
    updates = len(f.updates)
    with pytest.raises(IllegalTransition):
        tasks.set_state(st, task, TS.STAGING, 0, "", 0, cluster.now)
    assert task.state == TS.RUNNING and st.records == []
    cluster.flush()
    assert len(f.updates) == updates


def test_a_move_is_durable_and_told_once(cluster: Cluster) -> None:
    f, _, task = running(cluster)
    st = cluster.master.state
    tasks.set_state(st, task, TS.KILLING, R.KILL_REQUESTED, "", 0, cluster.now)
    assert st.records[0] == rec.UpdateTaskState(f.framework_id, "t1", TS.KILLING, 0,
                                                R.KILL_REQUESTED, "", 0)
    assert isinstance(st.records[1], rec.AddStatusUpdate)
    cluster.flush()
    assert f.updates[-1].state == TS.KILLING


def test_agent_status_in_order_once_and_only_what_an_agent_may_report(cluster: Cluster) -> None:
    f, a, task = running(cluster)
    st = cluster.master.state
    agent = st.agents[a.agent_id]
    ack = agent.update_ack
    n = task.number
    # A gap: ignored (the agent sends the missing one first).
    tasks.agent_status(st, agent, pb.StatusUpdate(update_id=ack + 2, task=n,
                                                  state=TS.FINISHED), cluster.now)
    assert agent.update_ack == ack and task.state == TS.RUNNING
    # The master's own states are not the agent's to report: acknowledged, ignored, counted.
    ignored = st.stats["updates_ignored"]
    tasks.agent_status(st, agent, pb.StatusUpdate(update_id=ack + 1, task=n, state=TS.LOST),
                       cluster.now)
    assert agent.update_ack == ack + 1 and task.state == TS.RUNNING
    assert st.stats["updates_ignored"] == ignored + 1
    # A move the table refuses (RUNNING -> STARTING): the same.
    tasks.agent_status(st, agent, pb.StatusUpdate(update_id=ack + 2, task=n,
                                                  state=TS.STARTING), cluster.now)
    assert task.state == TS.RUNNING and st.stats["updates_ignored"] == ignored + 2
    tasks.agent_status(st, agent, pb.StatusUpdate(update_id=ack + 3, task=n, state=TS.FINISHED,
                                                  message="x" * 10_000), cluster.now)
    assert task.state == TS.FINISHED
    assert len(task.message) == st.config.max_message_text
    # Again (a retransmission): already applied, nothing happens.
    records = len(st.records)
    tasks.agent_status(st, agent, pb.StatusUpdate(update_id=ack + 3, task=n,
                                                  state=TS.FAILED), cluster.now)
    assert task.state == TS.FINISHED and len(st.records) == records


def test_a_running_task_the_master_does_not_have_is_killed(cluster: Cluster) -> None:
    a = cluster.add_agent(ScriptedAgent())
    st = cluster.master.state
    agent = st.agents[a.agent_id]
    tasks.agent_status(st, agent, pb.StatusUpdate(update_id=agent.update_ack + 1, task=42,
                                                  state=TS.RUNNING), cluster.now)
    (body,) = (agent.commands or {}).values()
    assert decode(pb.Command, body).kill.task == 42


@pytest.mark.parametrize("removing,state,reason", [
    (False, TS.KILLED, R.KILLED_BEFORE_LAUNCH), (True, TS.DROPPED, R.FRAMEWORK_REMOVED)])
def test_killing_a_launch_still_queued_cancels_it(cluster: Cluster, removing: bool, state: int,
                                                  reason: int) -> None:
    a = cluster.add_agent(ScriptedAgent())
    f = cluster.subscribe(ScriptedFramework())
    launch(cluster, f, a, "t1", settle=False)
    st = cluster.master.state
    task = st.frameworks[f.framework_id].tasks["t1"]
    agent = st.agents[a.agent_id]
    assert task.launch_cid in (agent.commands or {})
    held = st.allocator.allocated(f.framework_id, a.agent_id)
    tasks.kill_task(st, task, cluster.now, removing=removing)
    assert (task.state, task.reason) == (state, reason)
    assert not agent.commands  # the launch is withdrawn, no Kill is sent
    assert a.agent_id and number_of(cluster, f, "t1") not in (agent.tasks or {})
    # Terminal: its resources are free again.
    assert st.allocator.allocated(f.framework_id, a.agent_id) == held - task.res


def test_killing_a_running_task_sends_one_kill(cluster: Cluster) -> None:
    _, a, task = running(cluster)
    st = cluster.master.state
    tasks.kill_task(st, task, cluster.now)
    tasks.kill_task(st, task, cluster.now)  # already KILLING: nothing more
    assert task.state == TS.KILLING
    kills = [decode(pb.Command, b) for b in (st.agents[a.agent_id].commands or {}).values()]
    assert [k.kill.task for k in kills] == [task.number]


@pytest.mark.parametrize("prev,reported,target,told", [
    (TS.RUNNING, TS.RUNNING, TS.RUNNING, True),
    (TS.RUNNING, 0, TS.RUNNING, False),          # not reported: recorded, not told
    (TS.STAGING, TS.RUNNING, TS.RUNNING, True),  # it started meanwhile
    (TS.STARTING, 0, TS.STARTING, False),
    (TS.KILLING, TS.RUNNING, TS.KILLING, False),
])
def test_restore_tells_only_a_reported_return_to_running(
        cluster: Cluster, prev: int, reported: int, target: int, told: bool) -> None:
    f, _, task = running(cluster)
    st = cluster.master.state
    task.state, task.prev_state, task.told = TS.UNREACHABLE, prev, TS.UNREACHABLE
    tasks.restore(st, task, cluster.now, reported=reported)
    assert task.state == target
    assert any(isinstance(r, rec.AddStatusUpdate) for r in st.records) == told
