"""Persist, then act: a master core rebuilt from its SQLite store (as after kill -9) keeps
everything it acknowledged; agents and frameworks reconnect and reconcile; running tasks keep
running and are never launched twice."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgerm.wire import pb
from edgerm_master.records import ReregisterAgent
from edgerm_master.store import Store
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

from .conftest import make_config

TS = pb.TaskState
NewCluster = Callable[..., Cluster]


def resubscribe(c: Cluster, f: ScriptedFramework) -> ScriptedFramework:
    f2 = ScriptedFramework(f.name)
    f2.framework_id = f.framework_id
    f2.framework_secret = f.framework_secret
    return c.subscribe(f2)


def test_running_tasks_survive_a_master_restart(new_cluster: NewCluster) -> None:
    c = new_cluster()
    a = c.add_agent(ScriptedAgent("a1"))
    f = c.subscribe(ScriptedFramework())
    launch(c, f, a, "t1", "t2", cpus=0.5)
    c = new_cluster()  # kill -9 and restart
    # The first call after the restart is answered with ReRegister; nothing of it is applied.
    reply = c.exchange(a)
    assert [cmd.WhichOneof("command") for cmd in reply.commands] == ["reregister"]
    c.settle(a)
    assert a.agent_id == 1 and len(c.master.agents) == 1
    f2 = resubscribe(c, f)
    assert f2.framework_id == f.framework_id
    assert {t: task_state(c, f2, t) for t in ("t1", "t2")} == {"t1": TS.RUNNING,
                                                                 "t2": TS.RUNNING}
    assert sorted(a.starts.values()) == [1, 1]
    # New tasks get new numbers: numbering survived too.
    c.step(1.0)
    launch(c, f2, a, "t3", cpus=0.5)
    assert number_of(c, f2, "t3") == 3 and a.starts[3] == 1


def test_queued_launch_survives_and_runs_once(new_cluster: NewCluster) -> None:
    c = new_cluster()
    a = c.add_agent(ScriptedAgent("a1"))
    f = c.subscribe(ScriptedFramework())
    launch(c, f, a, "t1", settle=False)
    assert f.last("accepted").task_ids == ["t1"]  # acknowledged to the framework...
    c = new_cluster()  # ...so it must survive the crash
    c.settle(a)
    c.settle(a)
    assert a.starts[1] == 1 and a.tasks[1] == TS.RUNNING
    f2 = resubscribe(c, f)
    c.ack_all(f2)
    assert task_state(c, f2, "t1") == TS.RUNNING


def test_unacknowledged_updates_are_redelivered_after_restart(new_cluster: NewCluster) -> None:
    c = new_cluster()
    a = c.add_agent(ScriptedAgent("a1"))
    f = c.subscribe(ScriptedFramework())
    launch(c, f, a, "t1", settle=False)
    c.settle(a)
    first = f.updates[0]
    assert first.state == TS.STARTING  # not acknowledged
    c = new_cluster()
    f2 = resubscribe(c, f)
    assert f2.updates[0].uuid == first.uuid
    c.ack_all(f2)
    assert f2.states("t1") == [TS.STARTING, TS.RUNNING]


def test_acknowledged_agent_updates_are_not_reapplied(new_cluster: NewCluster) -> None:
    c = new_cluster()
    a = c.add_agent(ScriptedAgent("a1"))
    f = c.subscribe(ScriptedFramework())
    launch(c, f, a, "t1")
    a.finish(1)
    c.settle(a)
    c.ack_all(f)
    c = new_cluster()
    # The agent re-sends an old update (it lost the ack): the durable update_ack covers it.
    a.queue.append(pb.AgentCall(status=pb.StatusUpdate(update_id=1, task=1, state=TS.RUNNING)))
    c.settle(a)
    f2 = resubscribe(c, f)
    assert f2.updates == []
    c.call(f2, f2.reconcile(["t1"]))
    assert f2.updates[-1].state == TS.LOST and f2.updates[-1].reason == pb.TASK_UNKNOWN


def test_offers_are_not_persisted_but_nothing_is_double_offered(new_cluster: NewCluster) -> None:
    c = new_cluster()
    a = c.add_agent(ScriptedAgent("a1"))
    f = c.subscribe(ScriptedFramework())
    launch(c, f, a, "t1", cpus=3)
    old = offer_on(f, a) if f.offers else None
    c = new_cluster()
    c.settle(a)
    f2 = resubscribe(c, f)
    c.step(1.0)
    o = offer_on(f2, a)
    assert o.resources.cpus == 1  # t1 still holds its 3 cpus
    if old is not None:
        c.call(f2, f2.accept([old.offer_id], [task_info("x")]))
        assert f2.errors[-1].code == pb.INVALID_OFFER


def test_modules_survive_restart(new_cluster: NewCluster) -> None:
    c = new_cluster()
    f = c.subscribe(ScriptedFramework())
    mod = wasm_module(b"keep")
    c.call(f, f.upload(mod))
    sha = f.last("module_stored").sha256
    c = new_cluster()
    assert c.master.module_size(sha) == len(mod)
    assert c.store.read_module(sha) == mod


def test_replayed_call_after_restart_changes_nothing(new_cluster: NewCluster) -> None:
    c = new_cluster()
    a = c.add_agent(ScriptedAgent("a1"))
    f = c.subscribe(ScriptedFramework())
    launch(c, f, a, "t1", settle=False)
    a.finish(1, TS.FAILED)  # not sent yet; capture a signed status call
    status_call = a.next_call()
    c = new_cluster()
    before = c.committed
    result = c.master.agent_call(status_call, c.now)
    c.flush()
    # Only the ReRegister command is queued (durably); the status is not applied.
    assert result.error == 0
    f2 = resubscribe(c, f)
    assert task_state(c, f2, "t1") == TS.STAGING
    assert c.committed - before >= 1


def test_the_framework_secret_survives_a_restart_as_a_digest(new_cluster: NewCluster,
                                                              tmp_path: Path) -> None:
    c = new_cluster()
    f = c.subscribe(ScriptedFramework())
    secret = f.framework_secret
    c = new_cluster()  # kill -9 and restart
    thief = ScriptedFramework()
    thief.framework_id = f.framework_id
    c.subscribe(thief)
    assert thief.errors[-1].code == pb.FORBIDDEN and thief.closed
    f2 = resubscribe(c, f)
    assert f2.errors == [] and f2.framework_id == f.framework_id
    # Only its SHA-256 is stored: a copy of the store does not let anyone take it over.
    with sqlite3.connect(tmp_path / "data" / "master.sqlite3") as db:
        [(stored,)] = db.execute("SELECT secret_digest FROM frameworks").fetchall()
    assert stored == hashlib.sha256(secret).digest()
    assert secret not in (tmp_path / "data" / "master.sqlite3").read_bytes()


def test_frameworks_from_a_store_without_secrets_cannot_be_taken_over(tmp_path: Path) -> None:
    data = tmp_path / "old"
    data.mkdir()
    with sqlite3.connect(data / "master.sqlite3") as db:  # the frameworks table before secrets
        db.execute("CREATE TABLE frameworks (id TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT"
                   " NOT NULL, failover_s REAL NOT NULL, removing INTEGER NOT NULL DEFAULT 0)")
        db.execute("INSERT INTO frameworks VALUES ('fw-old', 'old', '*', 60.0, 0)")
    store = Store(str(data), "NORMAL")
    try:
        c = Cluster(config=make_config(), store=store, now=1_000_000.0)
        assert "fw-old" in c.master.frameworks
        for secret in (b"", b"\0" * 16):
            f = ScriptedFramework()
            f.framework_id, f.framework_secret = "fw-old", secret
            c.subscribe(f)
            assert f.errors[-1].code == pb.FORBIDDEN and f.closed
        assert c.subscribe(ScriptedFramework()).framework_secret  # new ones get one
    finally:
        store.close()


def test_replayed_reregistration_is_refused_after_a_master_restart(
        new_cluster: NewCluster) -> None:
    """(issue 10) The master keeps the seq of each agent's last registration in its store, so a
    restart does not reopen the replay of an older one (which would fail the running task)."""
    c = new_cluster()
    a = c.add_agent(ScriptedAgent("a1"))
    a.restart()
    old = a.next_call()  # a signed re-registration listing no tasks, recorded
    c.settle(a)
    f = c.subscribe(ScriptedFramework())
    launch(c, f, a, "t1")
    c = new_cluster()  # kill -9 and restart
    c.settle(a)  # the real agent re-registers with its task
    f2 = resubscribe(c, f)
    assert task_state(c, f2, "t1") == TS.RUNNING
    c = new_cluster()  # again: now the replay comes before the agent's own re-registration
    before = c.committed
    result = c.master.agent_call(old, c.now)
    c.flush()
    assert result.error == pb.UNAUTHENTICATED
    assert c.committed == before
    c.settle(a)
    f3 = resubscribe(c, f2)
    assert task_state(c, f3, "t1") == TS.RUNNING and a.starts[1] == 1


def test_a_store_from_before_the_seq_column_is_upgraded(tmp_path: Path) -> None:
    """An older master's store has no agents.seq: opening it adds the column (0: the first
    re-registration after the upgrade is taken at any seq, then seq must move forward)."""
    data = tmp_path / "data"
    data.mkdir()
    db = sqlite3.connect(data / "master.sqlite3")
    db.execute("CREATE TABLE agents (id INTEGER PRIMARY KEY, secret BLOB NOT NULL, info BLOB NOT"
               " NULL, state INTEGER NOT NULL DEFAULT 0, unreachable_since REAL NOT NULL DEFAULT"
               " 0, update_ack INTEGER NOT NULL DEFAULT 0, command_ack INTEGER NOT NULL DEFAULT"
               " 0, next_command INTEGER NOT NULL DEFAULT 1, next_task INTEGER NOT NULL DEFAULT"
               " 1, admitted REAL NOT NULL DEFAULT 0)")
    db.execute("INSERT INTO agents (id, secret, info) VALUES (1, x'00', x'')")
    db.commit()
    db.close()
    store = Store(str(data), "NORMAL")
    try:
        assert [a.seq for a in store.recover().agents] == [0]
        store.apply([ReregisterAgent(1, 70), ReregisterAgent(1, 69)])
        assert [a.seq for a in store.recover().agents] == [70]
    finally:
        store.close()


# --- published outputs across a restart


def publish(c: Cluster, a: ScriptedAgent, f: ScriptedFramework, task_id: str,
            *data: bytes) -> None:
    n = number_of(c, f, task_id)
    for d in data:
        a.publish(n, d)
    c.settle(a)


def delivered(f: ScriptedFramework, task_id: str) -> list[tuple[int, bytes]]:
    """What the SDK hands its user: in seq order, repeats (seq already seen) dropped."""
    last = 0
    out = []
    for o in f.outputs:
        if o.task_id == task_id and o.seq > last:
            last = o.seq
            out.append((o.seq, o.data))
    return out


def test_output_numbering_goes_on_after_a_restart(new_cluster: NewCluster) -> None:
    """Before: numbering restarted at 1 and the SDK dropped the new outputs as repeats."""
    c = new_cluster()
    a = c.add_agent(ScriptedAgent("a1"))
    f = c.subscribe(ScriptedFramework(failover_timeout_s=600))
    launch(c, f, a, "t1")
    publish(c, a, f, "t1", b"a", b"b")
    c = new_cluster()
    c.settle(a)
    f2 = resubscribe(c, f)
    f2.outputs[:0] = f.outputs   # one framework across both connections
    publish(c, a, f2, "t1", b"c")
    assert delivered(f2, "t1") == [(1, b"a"), (2, b"b"), (3, b"c")]


def test_outputs_accepted_while_the_framework_was_away_survive_a_crash(
        new_cluster: NewCluster) -> None:
    c = new_cluster()
    a = c.add_agent(ScriptedAgent("a1"))
    f = c.subscribe(ScriptedFramework(failover_timeout_s=600))
    launch(c, f, a, "t1")
    c.disconnect(f)
    publish(c, a, f, "t1", b"x", b"y")
    assert not a.queue   # the agent was told they are accepted...
    c = new_cluster()    # ...so the crash must not lose them
    f2 = resubscribe(c, f)
    assert delivered(f2, "t1") == [(1, b"x"), (2, b"y")]


def test_an_output_committed_but_not_sent_before_the_crash_is_delivered(
        new_cluster: NewCluster) -> None:
    c = new_cluster()
    a = c.add_agent(ScriptedAgent("a1"))
    f = c.subscribe(ScriptedFramework(failover_timeout_s=600))
    launch(c, f, a, "t1")
    a.publish(number_of(c, f, "t1"), b"z")
    c.master.agent_call(a.next_call(), c.now)
    c.store.apply(c.master.take_records())   # durable; the kill comes before the send
    c = new_cluster()
    c.settle(a)
    f2 = resubscribe(c, f)
    assert delivered(f2, "t1") == [(1, b"z")]
    assert f.outputs == []


def test_outputs_are_kept_only_until_they_surely_arrived(new_cluster: NewCluster) -> None:
    c = new_cluster()
    a = c.add_agent(ScriptedAgent("a1"))
    f = c.subscribe(ScriptedFramework(failover_timeout_s=600))
    launch(c, f, a, "t1", "t2", cpus=0.5)
    publish(c, a, f, "t1", b"1", b"2")
    publish(c, a, f, "t2", b"1")
    assert len(c.store.rows("outputs")) == 3
    # A connection that stayed open status_retry_s after them delivered them.
    c.step(c.master.config.status_retry_s + 1)
    assert c.store.rows("outputs") == []
    publish(c, a, f, "t1", b"3")
    # A task whose end was acknowledged takes its outputs along (the end came after them).
    a.finish(number_of(c, f, "t1"))
    c.settle(a)
    c.ack_all(f)
    assert c.store.rows("outputs") == []
    c = new_cluster()
    f2 = resubscribe(c, f)
    assert f2.outputs == []   # nothing to re-send after the restart


def test_a_connection_that_drops_gets_its_outputs_again(new_cluster: NewCluster) -> None:
    c = new_cluster()
    a = c.add_agent(ScriptedAgent("a1"))
    f = c.subscribe(ScriptedFramework(failover_timeout_s=600))
    launch(c, f, a, "t1")
    publish(c, a, f, "t1", b"p")
    c.disconnect(f)     # before status_retry_s: the output may have been lost with it
    c.step(c.master.config.status_retry_s + 1)
    f2 = resubscribe(c, f)
    assert delivered(f2, "t1") == [(1, b"p")]


def test_outputs_past_outputs_kept_leave_a_gap_and_are_counted(new_cluster: NewCluster) -> None:
    c = new_cluster(outputs_kept=3)
    a = c.add_agent(ScriptedAgent("a1"))
    f = c.subscribe(ScriptedFramework(failover_timeout_s=600))
    launch(c, f, a, "t1")
    c.disconnect(f)
    publish(c, a, f, "t1", *[b"%d" % i for i in range(5)])
    assert c.master.stats["outputs_dropped"] == 2
    c = new_cluster()
    f2 = resubscribe(c, f)
    assert [o.seq for o in f2.outputs] == [3, 4, 5]


def test_a_store_from_before_output_numbering_is_migrated(tmp_path: Any) -> None:
    import sqlite3

    from edgerm_master.store import SCHEMA_VERSION, Store

    data = tmp_path / "old"
    data.mkdir()
    db = sqlite3.connect(str(data / "master.sqlite3"))
    db.executescript("""
        CREATE TABLE tasks (framework_id TEXT NOT NULL, task_id TEXT NOT NULL,
            agent_id INTEGER NOT NULL, number INTEGER NOT NULL, spec BLOB NOT NULL,
            resources BLOB NOT NULL, state INTEGER NOT NULL,
            prev_state INTEGER NOT NULL DEFAULT 0, reason INTEGER NOT NULL DEFAULT 0,
            message TEXT NOT NULL DEFAULT '', exit_code INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (framework_id, task_id));
        INSERT INTO tasks (framework_id, task_id, agent_id, number, spec, resources, state)
            VALUES ('fw-1', 't1', 1, 1, x'', x'', 3);
    """)
    db.commit()
    db.close()
    store = Store(str(data), "NORMAL")
    try:
        snap = store.recover()
        assert [(t.task_id, t.output_seq) for t in snap.tasks] == [("t1", 0)]
        assert dict(store.rows("meta"))["schema"] == SCHEMA_VERSION
    finally:
        store.close()


def test_recover_rebuilds_each_agent_state_with_its_timer(new_cluster: NewCluster,
                                                          tmp_path: Path) -> None:
    """`recovery.recover` on its own: agents unsynced, each state's liveness timer armed from
    the stored facts, frameworks disconnected on their failover clocks, an allocation due."""
    from edgerm_master import recovery
    from edgerm_master.agent_states import AGENT_ACTIVE, AGENT_LOST, AGENT_UNREACHABLE
    from edgerm_master.state import (
        T_AGENT_CHECK,
        T_AGENT_LOST,
        T_FAILOVER,
        MasterState,
    )

    c = new_cluster()
    active, away, gone = (c.add_agent(ScriptedAgent(n)) for n in ("a", "b", "c"))
    f = c.subscribe(ScriptedFramework(failover_timeout_s=30))
    window = c.master.config.unreachable_after_s
    for _ in range(3):  # only `active` keeps calling
        c.step(window / 2)
        c.exchange(active)
    c.step(c.master.config.lost_after_s - window)  # `gone` (and `away`) LOST by now
    c.exchange(active)
    states = {a.agent_id: c.master.agents[a.agent_id].state for a in (active, away, gone)}
    assert states[active.agent_id] == AGENT_ACTIVE
    # Bring `away` back from LOST and then let it miss its heartbeats once more.
    c.exchange(away)
    c.settle(away)
    c.step(window)
    c.exchange(active)
    assert c.master.agents[away.agent_id].state == AGENT_UNREACHABLE
    since = c.master.agents[away.agent_id].unreachable_since
    assert c.master.agents[gone.agent_id].state == AGENT_LOST
    c.store.close()
    st = MasterState(c.master.config)
    now = c.now + 5
    store = Store(str(tmp_path / "data"))
    snap = store.recover()
    store.close()
    recovery.recover(st, snap, now)
    assert all(not a.synced and a.last_seen == now for a in st.agents.values())
    assert [st.agents[a.agent_id].state for a in (active, away, gone)] == [
        AGENT_ACTIVE, AGENT_UNREACHABLE, AGENT_LOST]
    assert (now + window, T_AGENT_CHECK, active.agent_id) in st.timers
    assert (since + c.master.config.lost_after_s, T_AGENT_LOST, away.agent_id) in st.timers
    assert not any(key == gone.agent_id for _, _, key in st.timers)
    assert sorted(st.allocator.agents()) == sorted([active.agent_id, away.agent_id])
    fw = st.frameworks[f.framework_id]
    assert fw.conn is None and (now + 30, T_FAILOVER, f.framework_id) in st.timers
    assert st.alloc_due == now
