"""Framework principals in the core (sans-IO, a real SQLite store): a token names its principal,
a framework is bound to the principal that created it, so another principal cannot subscribe as
it, kill its tasks, acknowledge or reconcile its updates or read them (each refusal FORBIDDEN,
changing nothing); the binding survives a restart; a reload revokes tokens, closing the
connections that used them while their tasks run on."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from edgerm.wire import pb
from edgerm_master import view
from edgerm_master.principals import Principals, reload
from edgerm_master.reload import apply
from edgerm_master.store import Store
from edgerm_master.testing import (
    Cluster,
    ScriptedAgent,
    ScriptedFramework,
    launch,
    task_state,
)

from .conftest import make_config

E = pb.ErrorCode
TS = pb.TaskState
NewCluster = Callable[..., Cluster]

TWO = {"analytics": ["a-token"], "ops": ["o-token", "o-token-2"]}


def two_principals(new_cluster: NewCluster) -> tuple[Cluster, ScriptedAgent, ScriptedFramework,
                                                     ScriptedFramework]:
    c = new_cluster(framework_tokens=[], framework_principals=TWO)
    agent = c.add_agent(ScriptedAgent("a1"))
    mine = c.subscribe(ScriptedFramework("mine", token="a-token", failover_timeout_s=600))
    theirs = c.subscribe(ScriptedFramework("theirs", token="o-token"))
    assert mine.errors == [] and theirs.errors == []
    launch(c, mine, agent, "t1")
    return c, agent, mine, theirs


def test_principals_identify_tokens_and_nothing_else() -> None:
    p = Principals({"a": ["x", "y"], "b": ["z"], "c": [""]})
    assert p.identify("x")[0] == "a" and p.identify("y")[0] == "a"  # type: ignore[index]
    assert p.identify("z")[0] == "b"  # type: ignore[index]
    assert p.identify("") is None and p.identify("xy") is None
    assert p.names == {"a", "b"}   # a principal without a token is none
    found = p.identify("x")
    assert found is not None and p.holds("a", found[1]) and not p.holds("b", found[1])
    ch = p.changes(Principals({"a": ["x"], "b": ["z"], "d": ["w"]}))
    assert (ch.added, ch.removed, ch.changed) == (["d"], [], ["a"])
    assert "added d" in ch.describe() and "x" not in ch.describe()


def test_a_framework_is_bound_to_the_principal_that_created_it(new_cluster: NewCluster) -> None:
    c, agent, mine, theirs = two_principals(new_cluster)
    fw = c.master.frameworks[mine.framework_id]
    assert fw.principal == "analytics"
    assert c.master.frameworks[theirs.framework_id].principal == "ops"
    updates, committed = len(mine.updates), c.committed
    # ops holding the secret too (leaked): still not theirs to take over.
    for token in ("o-token", "o-token-2"):
        thief = ScriptedFramework(token=token).posing_as(mine)
        c.subscribe(thief)
        assert thief.errors[-1].code == E.FORBIDDEN and thief.closed
        assert "bound to another principal" in thief.errors[-1].message
        assert thief.updates == [] and thief.outputs == [] and thief.offers == {}
    assert not mine.closed and fw.conn == c.fw_conn[id(mine)]
    assert c.committed == committed and len(mine.updates) == updates
    # The owner's principal with the secret may (a framework restarted elsewhere).
    heir = ScriptedFramework("mine", token="a-token").posing_as(mine)
    c.subscribe(heir)
    assert heir.errors == [] and mine.closed and fw.conn == c.fw_conn[id(heir)]


def test_another_principal_cannot_act_for_a_framework(new_cluster: NewCluster) -> None:
    c, agent, mine, theirs = two_principals(new_cluster)
    agent.finish(1)   # an update for `mine` to acknowledge
    c.exchange(agent)
    [pending] = [u for u in mine.updates if u.state == TS.FINISHED]
    committed, mine_events = c.committed, len(mine.events)
    own_id = theirs.framework_id
    theirs.framework_id = mine.framework_id    # ops names analytics' framework on its own link
    for call in (theirs.kill("t1"), theirs.acknowledge(pending), theirs.reconcile(["t1"]),
                 theirs.reconcile(), theirs.teardown(), theirs.revive()):
        c.call(theirs, call)
        err = theirs.errors[-1]
        assert err.code == E.FORBIDDEN and "belongs to another principal" in err.message
        assert "'ops'" in err.message and not theirs.closed
    assert theirs.updates == [] and theirs.outputs == []
    # Nothing changed: no record, nothing told to the owner, the task's end still unacknowledged.
    assert c.committed == committed and len(mine.events) == mine_events
    task = c.master.frameworks[mine.framework_id].tasks["t1"]
    assert task.updates and task.updates[0].uuid == pending.uuid
    theirs.framework_id = own_id
    c.call(theirs, theirs.kill("t1"))   # its own namespace: it has no such task
    assert theirs.errors[-1].code == E.NOT_FOUND
    assert task_state(c, mine, "t1") == TS.FINISHED
    c.call(mine, mine.acknowledge(pending))
    assert mine.errors == [] and not c.master.frameworks[mine.framework_id].pending


def test_views_show_the_principal(new_cluster: NewCluster) -> None:
    c, _, mine, theirs = two_principals(new_cluster)
    state = view.state_view(c.master.state, c.now)
    assert {f.framework_id: f.principal for f in state.frameworks} == {
        mine.framework_id: "analytics", theirs.framework_id: "ops"}


def test_the_binding_survives_a_restart(new_cluster: NewCluster, tmp_path: Path) -> None:
    c, agent, mine, _ = two_principals(new_cluster)
    with sqlite3.connect(tmp_path / "data" / "master.sqlite3") as db:
        assert dict(db.execute("SELECT id, principal FROM frameworks").fetchall())[
            mine.framework_id] == "analytics"
        assert b"a-token" not in b"".join(
            bytes(str(row), "utf-8") for row in db.execute("SELECT * FROM frameworks"))
    c = new_cluster()   # kill -9 and start again on the same store
    assert c.master.frameworks[mine.framework_id].principal == "analytics"
    thief = ScriptedFramework(token="o-token").posing_as(mine)
    c.subscribe(thief)
    assert thief.errors[-1].code == E.FORBIDDEN
    again = ScriptedFramework("mine", token="a-token").posing_as(mine)
    c.subscribe(again)
    assert again.errors == []


def test_a_store_from_before_principals_is_principal_default(tmp_path: Path) -> None:
    data = tmp_path / "old"
    data.mkdir()
    with sqlite3.connect(data / "master.sqlite3") as db:  # the frameworks table of schema 2
        db.execute("CREATE TABLE frameworks (id TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT"
                   " NOT NULL, failover_s REAL NOT NULL, removing INTEGER NOT NULL DEFAULT 0,"
                   " secret_digest BLOB NOT NULL DEFAULT x'')")
        db.execute("INSERT INTO frameworks VALUES ('fw-old', 'old', '*', 60.0, 0, x'')")
    store = Store(str(data), "NORMAL")
    try:
        c = Cluster(config=make_config(), store=store, now=1_000_000.0)
        assert c.master.frameworks["fw-old"].principal == "default"
    finally:
        store.close()


def test_a_revoked_token_closes_its_connections_and_the_tasks_run_on(
        new_cluster: NewCluster) -> None:
    c, agent, mine, theirs = two_principals(new_cluster)
    second = c.subscribe(ScriptedFramework("second", token="o-token-2"))
    new = make_config(framework_tokens=[],
                      framework_principals={"analytics": ["a-token-new"], "ops": ["o-token"]})
    committed = c.committed
    done = apply(c.master.state, new, c.now)
    c.flush()
    assert done.principals.changed == ["analytics", "ops"] and not done.principals.added
    assert sorted(done.closed) == sorted([mine.framework_id, second.framework_id])
    assert not done.agent_tokens and not done.operator_tokens and done.not_reloaded == []
    for fw in (mine, second):
        assert fw.closed and fw.errors[-1].code == E.UNAUTHENTICATED
        assert fw.errors[-1].message == "token revoked"
        assert c.master.frameworks[fw.framework_id].conn is None
    assert not theirs.closed and theirs.errors == []   # its token stays
    assert c.committed == committed   # the framework record is untouched: only its connection
    # Like any disconnect: its task runs on for the failover timeout ...
    for _ in range(10):   # 100 s, the agent heartbeating
        c.step(10)
        c.exchange(agent)
    assert task_state(c, mine, "t1") == TS.RUNNING and agent.tasks[1] == TS.RUNNING
    # ... the old token is refused, the new one (same principal) takes it back.
    old = ScriptedFramework("mine", token="a-token").posing_as(mine)
    c.subscribe(old)
    assert old.errors[-1].code == E.UNAUTHENTICATED
    back = ScriptedFramework("mine", token="a-token-new").posing_as(mine)
    c.subscribe(back)
    assert back.errors == [] and task_state(c, mine, "t1") == TS.RUNNING


def test_a_removed_principal_cannot_subscribe_and_its_frameworks_fail_over(
        new_cluster: NewCluster) -> None:
    c, agent, mine, theirs = two_principals(new_cluster)
    changes, closed = reload(c.master.state, Principals({"ops": ["o-token"]}), c.now)
    c.flush()
    assert changes.removed == ["analytics"] and closed == [mine.framework_id] and mine.closed
    f = ScriptedFramework(token="a-token")
    c.subscribe(f)
    assert f.errors[-1].code == E.UNAUTHENTICATED and not f.framework_id
    # Still away after its failover timeout: removed, its task killed, as any other.
    for _ in range(61):   # 610 s, the agent heartbeating
        c.step(10)
        c.settle(agent)
    assert mine.framework_id not in c.master.frameworks
    assert agent.tasks[1] == TS.KILLED and theirs.framework_id in c.master.frameworks


def test_an_added_principal_can_subscribe_at_once(new_cluster: NewCluster) -> None:
    c, _, _, _ = two_principals(new_cluster)
    late = ScriptedFramework(token="new-token")
    c.subscribe(late)
    assert late.errors[-1].code == E.UNAUTHENTICATED
    changes, closed = reload(c.master.state, Principals({**TWO, "late": ["new-token"]}), c.now)
    assert changes.added == ["late"] and closed == []
    late = c.subscribe(ScriptedFramework(token="new-token"))
    assert late.errors == [] and c.master.frameworks[late.framework_id].principal == "late"


def test_apply_names_what_a_reload_does_not_change(new_cluster: NewCluster) -> None:
    c = new_cluster()
    cfg = c.master.config
    new = make_config(agent_tokens=["agent-token", "agent-2"], operator_tokens=["op-2"],
                      heartbeat_ms=5000, offer_timeout_s=10.0)
    done = apply(c.master.state, new, c.now)
    assert done.agent_tokens and done.operator_tokens
    assert done.not_reloaded == ["heartbeat_ms", "offer_timeout_s"]
    assert cfg.heartbeat_ms == 10_000 and cfg.operator_tokens == ["op-2"]
    assert [t for t, _ in c.master.state.token_keys] == ["agent-token", "agent-2"]
    # A new agent may register with the added agent token.
    a = c.add_agent(ScriptedAgent("a2", token="agent-2"))
    assert a.agent_id
