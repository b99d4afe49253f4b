"""etcd_layout (sans-IO): records into key writes, the mirror a standby rebuilds from those
writes, and the cutting of a batch into transactions within etcd's limits."""

from __future__ import annotations

import random

import cbor2
import pytest

from edgerm_master import records as R
from edgerm_master.etcd_layout import (
    CHUNK_BYTES,
    MAX_TXN_BYTES,
    MAX_TXN_OPS,
    Mirror,
    RecordTooLarge,
    plan_transactions,
    translate,
)


def random_batches(rng: random.Random, n: int) -> list[list[R.Record]]:
    """Batches of records a master could emit: agents, frameworks (ids with "/" and "%"),
    tasks, commands and their acks, updates and their acks, outputs, modules, removals."""
    fws = ["fw/1", "fw%2", "fw 3"]
    batches: list[list[R.Record]] = [[R.AdmitAgent(a, b"s%d" % a, b"i", 1.0) for a in (1, 2, 3)]
                                     + [R.AddFramework(f, f, "*", 5.0, b"d", f"p{i}")
                                        for i, f in enumerate(fws)]]
    tasks: list[tuple[str, str, int]] = []
    cmd = {1: 0, 2: 0, 3: 0}
    for b in range(n):
        batch: list[R.Record] = []
        for _ in range(rng.randint(1, 30)):
            kind = rng.randrange(12)
            fw, agent = rng.choice(fws), rng.randint(1, 3)
            if kind == 0 or not tasks:
                t = (fw, f"t/{b}-{len(tasks)}", agent)
                tasks.append(t)
                batch.append(R.AddTask(t[0], t[1], agent, len(tasks), b"spec", b"res", 1))
            elif kind == 1:
                cmd[agent] += 1
                batch.append(R.EnqueueCommand(agent, cmd[agent], b"c%d" % cmd[agent]))
            elif kind == 2:
                batch.append(R.AckCommands(agent, rng.randint(0, cmd[agent])))
            elif kind == 3:
                batch.append(R.DropCommand(agent, rng.randint(0, cmd[agent] + 1)))
            elif kind == 4:
                t = rng.choice(tasks)
                batch.append(R.AddStatusUpdate(t[0], t[1], rng.randbytes(4), b"u"))
            elif kind == 5:
                batch.append(R.AckStatusUpdate(fw, "", rng.randbytes(4)))   # mostly unknown
            elif kind == 6:
                t = rng.choice(tasks)
                batch.append(R.UpdateTaskState(t[0], t[1], rng.randint(1, 6), 0, 0, "m", 0))
            elif kind == 7:
                t = rng.choice(tasks)
                batch.append(R.AddOutput(t[0], t[1], rng.randint(1, 5), b"o", "x"))
            elif kind == 8:
                t = rng.choice(tasks)
                batch.append(R.ReleaseOutputs(t[0], t[1], rng.randint(0, 5)))
            elif kind == 9:
                t = rng.choice(tasks)
                batch.append(R.RemoveTask(t[0], t[1]))
            elif kind == 10:
                batch += [R.AckAgentUpdates(agent, b), R.MarkAgentUnreachable(agent, 3.5),
                          R.ReregisterAgent(agent, b)]
            else:
                sha = bytes([rng.randrange(4)]) * 32
                batch.append(rng.choice([R.StoreModule(sha, 1, "m", b"x" * 10, 2.0),
                                         R.RemoveModule(sha)]))
        if b == n // 2:
            batch.append(R.RemoveFramework("fw 3"))
        batches.append(batch)
    return batches


def test_a_standby_rebuilds_the_leaders_mirror_from_the_key_writes() -> None:
    rng = random.Random(12)
    leader, standby = Mirror(), Mirror()
    for batch in random_batches(rng, 60):
        for txn in plan_transactions([translate(leader, rec) for rec in batch]):
            for key, value in txn.items():   # what a watch delivers, key by key
                if not key.startswith("data/"):
                    continue
                if value is None:
                    standby.drop(key)
                else:
                    standby.load(key, value)
        assert standby.snapshot(1) == leader.snapshot(1)
    snap = leader.snapshot(1)
    assert snap.tasks and snap.commands and snap.updates and snap.outputs
    assert "fw 3" not in {f.framework_id for f in snap.frameworks}


def test_a_framework_row_from_before_principals_is_principal_default() -> None:
    m = Mirror()
    m.load("data/frameworks/fw-old", cbor2.dumps(["old", "*", 60.0, False, b""]))
    m.load("data/frameworks/fw-new", cbor2.dumps(["new", "*", 60.0, False, b"", "ops"]))
    assert {f.framework_id: f.principal for f in m.snapshot(1).frameworks} == {
        "fw-old": "default", "fw-new": "ops"}


def test_records_on_rows_that_are_not_there_write_nothing() -> None:
    m = Mirror()
    for rec in [R.ReregisterAgent(9, 1), R.UpdateTaskState("f", "t", 2, 0, 0, "", 0),
                R.AckStatusUpdate("f", "t", b"u"), R.RemoveModule(b"\0" * 32),
                R.DropCommand(9, 1), R.RemoveTask("f", "t"), R.MarkFrameworkRemoving("f")]:
        assert translate(m, rec) == []


def test_an_update_stored_already_is_not_stored_again() -> None:
    m = Mirror()
    first = translate(m, R.AddStatusUpdate("f", "t", b"u", b"b"))
    assert [k for k, _ in first] == ["data/updates/0000000000000001"]
    assert translate(m, R.AddStatusUpdate("f", "t", b"u", b"b")) == []
    assert [k for k, _ in translate(m, R.AddStatusUpdate("f", "t", b"v", b"b"))] == [
        "data/updates/0000000000000002"]


def test_a_module_is_chunked_bytes_first() -> None:
    m = Mirror()
    writes = translate(m, R.StoreModule(b"\x01" * 32, 1, "m", bytes(2 * CHUNK_BYTES + 1), 1.0))
    sha = "01" * 32
    assert [k for k, _ in writes] == [f"blobs/{sha}/0000000{n}" for n in range(3)] + [
        f"data/modules/{sha}"]
    assert translate(m, R.RemoveModule(b"\x01" * 32))[0] == (f"data/modules/{'01' * 32}", None)


def test_a_record_too_large_for_a_request() -> None:
    with pytest.raises(RecordTooLarge, match="data/tasks/f/t"):
        plan_transactions([translate(Mirror(), R.AddTask("f", "t", 1, 1, bytes(MAX_TXN_BYTES),
                                                          b"", 1))])


def test_plan_transactions_keeps_limits_order_and_record_boundaries() -> None:
    groups = [[(f"k{i}", b"v")] * 1 + [("agent", b"a%d" % i)] for i in range(300)]
    txns = plan_transactions(groups)
    assert all(len(t) <= MAX_TXN_OPS for t in txns)
    # Each record's two writes land in one transaction (the agent key is written by every
    # record: one op per transaction, its last value wins).
    flat = [k for t in txns for k in t if k != "agent"]
    assert flat == [f"k{i}" for i in range(300)]
    for t in txns:
        ks = [int(k[1:]) for k in t if k != "agent"]
        assert t["agent"] == b"a%d" % ks[-1]
    # A record bigger than one transaction (a module) is cut between its own writes.
    big = [(f"blob/{n}", bytes(CHUNK_BYTES)) for n in range(10)] + [("row", b"r")]
    txns = plan_transactions([[("before", b"b")], big])
    assert all(sum(len(k) + len(v or b"") for k, v in t.items()) <= MAX_TXN_BYTES
               for t in txns)
    assert [k for t in txns for k in t] == ["before"] + [k for k, _ in big]
    # A key deleted after it was written in the same transaction: one op, the delete.
    assert plan_transactions([[("a", b"1")], [("a", None)]]) == [{"a": None}]


