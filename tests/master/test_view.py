"""The operator's view: only with an operator token, and it shows what the master holds."""

from __future__ import annotations

from edgerm.wire import decode, encode, pb
from edgerm_master import view
from edgerm_master.testing import Cluster, ScriptedAgent, ScriptedFramework, launch


def ask(c: Cluster, token: str) -> tuple[int, bytes]:
    return view.cluster_state(c.master.state, encode(pb.StateRequest(token=token)), c.now, "p")


def test_refused_without_the_operator_token(cluster: Cluster) -> None:
    for token in ("", "framework-token"):
        code, data = ask(cluster, token)
        assert code == pb.UNAUTHENTICATED
        assert "operator_tokens" in decode(pb.Error, data).message
    code, data = view.cluster_state(cluster.master.state, b"\xff\x00", cluster.now, "p")
    assert code == pb.BAD_REQUEST


def test_the_view_shows_agents_frameworks_tasks_and_offers(cluster: Cluster) -> None:
    a = cluster.add_agent(ScriptedAgent("edge-1"))
    cluster.add_agent(ScriptedAgent("edge-2"))
    f = cluster.subscribe(ScriptedFramework("fw", role="prod"))
    launch(cluster, f, a, "t1", cpus=1.0)
    cluster.step(1.0)
    code, data = ask(cluster, "operator-token")
    assert code == 0
    cs = decode(pb.ClusterState, data)
    assert cs.version == view.VERSION and cs.now == cluster.now
    assert [(v.name, v.state) for v in cs.agents] == [("edge-1", "active"), ("edge-2", "active")]
    assert cs.agents[0].used.cpus == 1.0 and cs.agents[1].used.cpus == 0
    (fv,) = cs.frameworks
    assert (fv.framework_id, fv.role, fv.connected, fv.tasks) == (f.framework_id, "prod", True, 1)
    (tv,) = cs.tasks
    assert (tv.task_id, tv.state, tv.agent_id, tv.executor) == ("t1", pb.RUNNING, a.agent_id,
                                                                pb.DOCKER)
    assert {o.agent_id for o in cs.offers} == {1, 2}
