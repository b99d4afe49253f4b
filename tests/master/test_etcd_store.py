"""EtcdStore beyond the shared contract (test_store_contract.py), on a real three-member etcd:
fencing, batches cut within etcd's limits (the cutting itself: test_etcd_layout.py), module
chunks and their size limit, the warm standby's follow(), idempotent re-application, and etcd
members killed under it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

from edgerm_master import records as R
from edgerm_master.etcd_client import EtcdClient, prefix_end
from edgerm_master.etcd_store import (
    CHUNK_BYTES,
    MAX_TXN_BYTES,
    MODULE_MAX_BYTES,
    EtcdStore,
    RecordTooLarge,
)
from edgerm_master.store_api import ModuleTooLarge, NotLeader, StoreUnavailable
from edgerm_master.testing_etcd import EtcdCluster, etcd_cluster, take_lead, unique_prefix

__all__ = ["etcd_cluster"]


@pytest.fixture
async def client(etcd_cluster: EtcdCluster) -> AsyncIterator[EtcdClient]:
    c = EtcdClient(etcd_cluster.client_urls, timeout_s=2.0)
    yield c
    await c.aclose()


async def data_keys(client: EtcdClient, prefix: str) -> list[bytes]:
    start = (prefix + "data/").encode()
    return [kv.key for kv in (await client.range(start, prefix_end(start), keys_only=True)).kvs]


async def leading_store(client: EtcdClient, prefix: str) -> EtcdStore:
    store = EtcdStore(client, prefix)
    store.set_fence(await take_lead(client, prefix))
    await store.recover()
    return store


async def test_a_deposed_leader_writes_nothing(client: EtcdClient) -> None:
    prefix = unique_prefix("fence")
    old = await leading_store(client, prefix)
    await old.apply([R.AdmitAgent(1, b"s", b"i", 0.0)])
    new = await leading_store(client, prefix)        # a new term: another election key
    before = await data_keys(client, prefix)
    # A batch big enough to take several transactions: the first one is refused already.
    batch: list[R.Record] = [R.EnqueueCommand(1, n, b"x" * 100) for n in range(1, 400)]
    with pytest.raises(NotLeader):
        await old.apply(batch)
    assert await data_keys(client, prefix) == before
    assert old.fence is None
    with pytest.raises(NotLeader):                     # and it stays deposed
        await old.apply([R.AdmitAgent(2, b"s", b"i", 0.0)])
    with pytest.raises(NotLeader):
        await EtcdStore(client, prefix).apply([R.AdmitAgent(3, b"s", b"i", 0.0)])  # no fence
    await new.apply([R.AdmitAgent(2, b"s", b"i", 0.0)])
    snap = await (await _reopen(client, prefix)).recover()
    assert [a.agent_id for a in snap.agents] == [1, 2]
    assert snap.commands == []


async def _reopen(client: EtcdClient, prefix: str) -> EtcdStore:
    store = EtcdStore(client, prefix)
    store.set_fence(await take_lead(client, prefix))
    return store


async def test_a_batch_over_etcds_limits_is_split_and_all_durable(client: EtcdClient) -> None:
    prefix = unique_prefix("split")
    store = await leading_store(client, prefix)
    before = store.transactions
    batch: list[R.Record] = [R.AdmitAgent(1, b"s", b"i", 0.0)]
    batch += [R.EnqueueCommand(1, n, b"c" * 50) for n in range(1, 301)]       # > 128 ops
    batch += [R.StoreModule(b"\x05" * 32, 1, "m", bytes(5 * CHUNK_BYTES), 1.0)]  # > 1 MiB
    await store.apply(batch)
    assert store.transactions - before >= 4
    snap = await (await _reopen(client, prefix)).recover()
    assert len(snap.commands) == 300 and snap.agents[0].next_command == 301
    assert snap.modules[0].size == 5 * CHUNK_BYTES


async def test_module_size_limit(client: EtcdClient) -> None:
    prefix = unique_prefix("modmax")
    store = await leading_store(client, prefix)
    with pytest.raises(ModuleTooLarge, match="up to"):
        await store.apply([R.AdmitAgent(1, b"s", b"i", 0.0),
                           R.StoreModule(b"\x06" * 32, 1, "m", bytes(MODULE_MAX_BYTES + 1), 1.0)])
    assert await data_keys(client, prefix) == [f"{prefix}data/meta/epoch".encode(),
                                                f"{prefix}data/meta/schema".encode()]


async def test_a_record_larger_than_an_etcd_request_is_refused(client: EtcdClient) -> None:
    prefix = unique_prefix("huge")
    store = await leading_store(client, prefix)
    before = await data_keys(client, prefix)
    with pytest.raises(RecordTooLarge, match="more than one etcd request"):
        await store.apply([R.AddFramework("f", "n", "r", 1.0, b""),
                           R.AddTask("f", "t", 1, 1, bytes(MAX_TXN_BYTES), b"", 1)])
    assert await data_keys(client, prefix) == before
    await store.apply([R.AdmitAgent(1, b"s", b"i", 0.0)])   # and the store goes on
    snap = await (await _reopen(client, prefix)).recover()
    assert [a.agent_id for a in snap.agents] == [1] and snap.frameworks == []


async def test_orphan_module_chunks_are_removed_on_recover(client: EtcdClient) -> None:
    prefix = unique_prefix("orphan")
    await client.put(f"{prefix}blobs/{'07' * 32}/00000000".encode(), b"left over")
    await leading_store(client, prefix)
    start = (prefix + "blobs/").encode()
    assert (await client.range(start, prefix_end(start))).kvs == []


async def test_applying_a_batch_again_changes_nothing(client: EtcdClient) -> None:
    """After a timeout the same batch may be applied twice (the first may have committed)."""
    prefix = unique_prefix("again")
    store = await leading_store(client, prefix)
    batch: list[R.Record] = [
        R.AdmitAgent(1, b"s", b"i", 0.0), R.AddFramework("f", "n", "r", 1.0, b"d"),
        R.AddTask("f", "t", 1, 1, b"s", b"r", 1), R.AddStatusUpdate("f", "t", b"u1", b"b"),
        R.EnqueueCommand(1, 1, b"c"), R.AddOutput("f", "t", 1, b"o", "")]
    await store.apply(batch)
    store._mirror_ok = False          # as after a failed commit: read back from etcd
    await store.apply(batch)
    snap = await (await _reopen(client, prefix)).recover()
    assert [u.uuid for u in snap.updates] == [b"u1"]
    assert len(snap.commands) == 1 and len(snap.outputs) == 1 and len(snap.tasks) == 1


async def test_follow_keeps_a_standby_warm(client: EtcdClient) -> None:
    prefix = unique_prefix("follow")
    leader = await leading_store(client, prefix)
    await leader.apply([R.AdmitAgent(1, b"s", b"i", 0.0), R.AddFramework("f", "n", "r", 1., b"")])
    standby = EtcdStore(client, prefix)
    async with trio.open_nursery() as nursery:
        await nursery.start(standby.follow)
        assert standby.loads == 1
        await leader.apply([R.AdmitAgent(2, b"s2", b"i2", 0.0),
                            R.AddStatusUpdate("f", "t", b"u", b"b"),
                            R.EnqueueCommand(1, 1, b"c"), R.EnqueueCommand(1, 2, b"c")])
        await leader.apply([R.AckCommands(1, 1), R.RemoveModule(b"\0" * 32)])
        await leader.apply([R.StoreModule(b"\x08" * 32, 1, "m", b"mod", 2.0)])
        # The standby wins: it reads only the events up to its own election key.
        standby.set_fence(await take_lead(client, prefix))
        with trio.fail_after(10):
            snap = await standby.recover()
    assert standby.loads == 1
    assert [a.agent_id for a in snap.agents] == [1, 2]
    assert snap.commands == [(1, 2, b"c")] and [u.uuid for u in snap.updates] == [b"u"]
    assert [m.sha256 for m in snap.modules] == [b"\x08" * 32]
    assert await standby.read_module(b"\x08" * 32) == b"mod"
    # and it leads: its writes go through, the old leader's do not
    await standby.apply([R.AdmitAgent(3, b"s", b"i", 0.0)])
    with pytest.raises(NotLeader):
        await leader.apply([R.AdmitAgent(4, b"s", b"i", 0.0)])
    assert (await (await _reopen(client, prefix)).recover()).next_agent_id == 4


async def test_etcd_members_killed(etcd_cluster: EtcdCluster, client: EtcdClient) -> None:
    prefix = unique_prefix("kill")
    store = await leading_store(client, prefix)
    await store.apply([R.AdmitAgent(1, b"s", b"i", 0.0)])
    first = etcd_cluster.client_urls.index(client.endpoint)
    others = [i for i in range(3) if i != first]
    try:
        etcd_cluster.kill(first)                   # the member this client talks to
        with trio.fail_after(30):
            await store.apply([R.EnqueueCommand(1, 1, b"one member down")])
        etcd_cluster.kill(others[0])               # no quorum now
        batch: list[R.Record] = [R.EnqueueCommand(1, 2, b"no quorum"),
                                 R.AddFramework("f", "n", "r", 1.0, b"")]
        with trio.fail_after(60), pytest.raises(StoreUnavailable) as failed:
            await store.apply(batch)
        assert "majority of the etcd members" in str(failed.value)
    finally:
        etcd_cluster.start(first)
        etcd_cluster.start(others[0])
        await trio.to_thread.run_sync(etcd_cluster.wait_healthy)
    with trio.fail_after(30):
        while True:   # the members may need a moment to elect a leader among themselves
            try:
                await store.apply(batch)           # the shell applies the batch again
                break
            except StoreUnavailable:
                await trio.sleep(0.2)
    snap = await (await _reopen(client, prefix)).recover()
    assert snap.commands == [(1, 1, b"one member down"), (1, 2, b"no quorum")]
    assert [f.framework_id for f in snap.frameworks] == ["f"]


async def test_follow_goes_on_through_another_member(etcd_cluster: EtcdCluster) -> None:
    """The member a standby watches through dies: the watch resumes on another member from
    the last revision it saw, and nothing written meanwhile is missed."""
    prefix = unique_prefix("follow-kill")
    leader_client = EtcdClient(etcd_cluster.client_urls, timeout_s=2.0)
    standby_client = EtcdClient(etcd_cluster.client_urls[1:] + etcd_cluster.client_urls[:1],
                                timeout_s=2.0)
    watched = etcd_cluster.client_urls.index(standby_client.endpoint)
    try:
        leader = await leading_store(leader_client, prefix)
        standby = EtcdStore(standby_client, prefix)
        async with trio.open_nursery() as nursery:
            await nursery.start(standby.follow)
            await leader.apply([R.AdmitAgent(1, b"s", b"i", 0.0)])
            etcd_cluster.kill(watched)
            with trio.fail_after(30):
                await leader.apply([R.AdmitAgent(2, b"s", b"i", 0.0),
                                    R.EnqueueCommand(1, 1, b"while one member is down")])
            with trio.fail_after(30):
                while len(standby.mirror.agents) < 2 or not standby.mirror.commands:
                    await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
        assert standby.loads == 1                     # caught up from the watch, no reload
        assert standby.mirror.commands == {1: {1: b"while one member is down"}}
    finally:
        etcd_cluster.start(watched)
        await leader_client.aclose()
        await standby_client.aclose()
        await trio.to_thread.run_sync(etcd_cluster.wait_healthy)
