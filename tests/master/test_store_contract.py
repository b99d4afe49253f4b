"""The store contract (store_api.MasterStore), the same test functions on both backends: the
embedded SQLite store and the etcd store on a real three-member etcd cluster.

Each test writes records, "restarts" (a new store object on the same data, as a new master
process would open it) and checks what `recover()` gives back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from edgerm_master import records as R
from edgerm_master.agent_states import AGENT_ACTIVE, AGENT_LOST, AGENT_UNREACHABLE
from edgerm_master.etcd_client import EtcdClient
from edgerm_master.etcd_store import CHUNK_BYTES, EtcdStore
from edgerm_master.store import Snapshot
from edgerm_master.store_api import MasterStore, SqliteStore
from edgerm_master.testing_etcd import EtcdCluster, etcd_cluster, take_lead, unique_prefix

__all__ = ["etcd_cluster"]  # the fixture, imported for pytest

Opener = Callable[[], Awaitable[MasterStore]]


@pytest.fixture(params=["sqlite", "etcd"])
async def open_store(request: Any, tmp_path: Any) -> AsyncIterator[Opener]:
    """open_store() -> a store on this test's data; each call closes the previous one first
    (a master restart)."""
    opened: list[MasterStore] = []
    clients: list[EtcdClient] = []
    prefix = unique_prefix("contract")

    async def make() -> MasterStore:
        if opened:
            await opened[-1].aclose()
        store: MasterStore
        if request.param == "sqlite":
            store = await SqliteStore.open(str(tmp_path / "data"), "NORMAL")
        else:
            cluster: EtcdCluster = request.getfixturevalue("etcd_cluster")
            client = EtcdClient(cluster.client_urls)
            clients.append(client)
            etcd = EtcdStore(client, prefix)
            etcd.set_fence(await take_lead(client, prefix))
            store = etcd
        opened.append(store)
        return store

    yield make
    if opened:
        await opened[-1].aclose()
    for client in clients:
        await client.aclose()


async def restart(open_store: Opener) -> Snapshot:
    return await (await open_store()).recover()


async def test_empty_store_and_boot_epochs(open_store: Opener) -> None:
    store = await open_store()
    snap = await store.recover()
    assert (snap.epoch, snap.next_agent_id, snap.agents, snap.tasks) == (1, 1, [], [])
    await store.apply([])
    assert (await restart(open_store)).epoch == 2
    assert (await restart(open_store)).epoch == 3


async def test_agents(open_store: Opener) -> None:
    store = await open_store()
    await store.recover()
    await store.apply([R.AdmitAgent(1, b"s1", b"info1", 10.0), R.AdmitAgent(7, b"s7", b"i7", 11.0)])
    await store.apply([
        R.ReregisterAgent(1, 70), R.ReregisterAgent(1, 69),       # the seq only moves forward
        R.UpdateAgentInfo(7, b"i7b"),
        R.MarkAgentUnreachable(1, 12.5), R.AckAgentUpdates(7, 4),
        R.MarkAgentLost(7), R.MarkAgentReachable(7),
        R.ReregisterAgent(99, 1), R.MarkAgentLost(99),            # no such agent: no change
    ])
    snap = await restart(open_store)
    assert snap.next_agent_id == 8
    a1, a7 = snap.agents
    assert (a1.agent_id, a1.secret, a1.info, a1.state, a1.unreachable_since, a1.seq) == (
        1, b"s1", b"info1", AGENT_UNREACHABLE, 12.5, 70)
    assert (a7.agent_id, a7.info, a7.state, a7.update_ack, a7.seq) == (7, b"i7b", AGENT_ACTIVE,
                                                                       4, 0)
    await (await open_store()).apply([R.MarkAgentLost(1)])
    assert (await restart(open_store)).agents[0].state == AGENT_LOST


async def test_the_master_oscore_seq_bound_only_moves_forward(open_store: Opener) -> None:
    store = await open_store()
    assert (await store.recover()).oscore_seq_bound == 0
    await store.apply([R.SetOscoreSeqBound(65_537)])
    await store.apply([R.SetOscoreSeqBound(131_073), R.SetOscoreSeqBound(100)])
    assert (await restart(open_store)).oscore_seq_bound == 131_073


async def test_commands(open_store: Opener) -> None:
    store = await open_store()
    await store.recover()
    await store.apply([R.AdmitAgent(1, b"s", b"i", 0.0)] +
                      [R.EnqueueCommand(1, n, b"c%d" % n) for n in range(1, 6)])
    await store.apply([R.AckCommands(1, 2), R.DropCommand(1, 4), R.DropCommand(1, 40)])
    snap = await restart(open_store)
    assert snap.commands == [(1, 3, b"c3"), (1, 5, b"c5")]
    assert (snap.agents[0].command_ack, snap.agents[0].next_command) == (2, 6)


async def test_frameworks_tasks_updates_outputs(open_store: Opener) -> None:
    store = await open_store()
    await store.recover()
    await store.apply([
        R.AdmitAgent(1, b"s", b"i", 0.0),
        R.AddFramework("fw/1", "one", "prod", 60.0, b"d1"),
        R.AddFramework("fw-2", "two", "*", 5.0, b"d2"),
        R.AddTask("fw/1", "t/a", 1, 3, b"spec", b"res", 1),
        R.AddTask("fw-2", "t", 1, 4, b"spec2", b"res2", 1),
        R.AddStatusUpdate("fw/1", "t/a", b"u1", b"b1"),
        R.AddStatusUpdate("fw-2", "t", b"u2", b"b2"),
        R.AddStatusUpdate("fw/1", "t/a", b"u3", b"b3"),
        R.AddOutput("fw/1", "t/a", 1, b"o1", "x"), R.AddOutput("fw/1", "t/a", 2, b"o2", "y"),
        R.AddOutput("fw/1", "t/a", 3, b"o3", ""),
    ])
    await store.apply([
        R.UpdateFramework("fw/1", "uno", 30.0), R.MarkFrameworkRemoving("fw-2"),
        R.UpdateTaskState("fw/1", "t/a", 2, 0, 5, "running", 0),
        R.MarkTaskLost("fw/1", "nope", 7, 0, 0, "", 0),                # no such task
        R.AckStatusUpdate("fw/1", "t/a", b"u1"),
        R.ReleaseOutputs("fw/1", "t/a", 2),
    ])
    snap = await restart(open_store)
    assert {(f.framework_id, f.name, f.role, f.failover_s, f.removing, f.secret_digest)
            for f in snap.frameworks} == {("fw/1", "uno", "prod", 30.0, False, b"d1"),
                                          ("fw-2", "two", "*", 5.0, True, b"d2")}
    tasks = {(t.framework_id, t.task_id): t for t in snap.tasks}
    ta = tasks["fw/1", "t/a"]
    assert (ta.agent_id, ta.number, ta.spec, ta.resources, ta.state, ta.reason, ta.message,
            ta.output_seq) == (1, 3, b"spec", b"res", 2, 5, "running", 3)
    assert [(u.framework_id, u.uuid, u.body) for u in snap.updates] == [
        ("fw-2", b"u2", b"b2"), ("fw/1", b"u3", b"b3")]            # oldest first
    assert [(o.seq, o.data, o.topic) for o in snap.outputs] == [(3, b"o3", "")]
    assert snap.agents[0].next_task == 5

    await (await open_store()).apply([R.RemoveTask("fw/1", "t/a"), R.RemoveFramework("fw-2")])
    snap = await restart(open_store)
    assert [f.framework_id for f in snap.frameworks] == ["fw/1"]
    assert snap.tasks == [] and snap.outputs == []
    assert [u.uuid for u in snap.updates] == [b"u3"]


async def test_modules(open_store: Opener) -> None:
    store = await open_store()
    await store.recover()
    small = b"\0asm" + bytes(range(256)) * 4
    big = bytes((i * 7) % 251 for i in range(2 * CHUNK_BYTES + 1000))  # three etcd chunks
    sha_small, sha_big = b"\x01" * 32, b"\x02" * 32
    await store.apply([R.StoreModule(sha_small, 1, "small", small, 5.0),
                       R.StoreModule(sha_big, 2, "big", big, 6.0)])
    store = await open_store()
    snap = await store.recover()
    assert {(m.sha256, m.size, m.fmt, m.name, m.created) for m in snap.modules} == {
        (sha_small, len(small), 1, "small", 5.0), (sha_big, len(big), 2, "big", 6.0)}
    assert await store.read_module(sha_small) == small
    assert await store.read_module(sha_big) == big
    for offset, length in [(0, 10), (CHUNK_BYTES - 5, 10), (CHUNK_BYTES * 2, 2000),
                           (len(big) - 3, 100), (len(big), 10), (100, -1)]:
        want = big[offset:] if length < 0 else big[offset:offset + length]
        assert await store.read_module(sha_big, offset, length) == want, (offset, length)
    await store.apply([R.RemoveModule(sha_big)])
    store = await open_store()
    snap = await store.recover()
    assert [m.sha256 for m in snap.modules] == [sha_small]
    with pytest.raises(OSError):
        await store.read_module(sha_big)


async def test_open_store_picks_the_backend(tmp_path: Any, etcd_cluster: EtcdCluster) -> None:
    from edgerm_master.config import load_config
    from edgerm_master.store_api import open_store as open_backend

    sqlite = await open_backend(load_config(f'data_dir = "{tmp_path}"'))
    assert isinstance(sqlite, SqliteStore)
    await sqlite.aclose()
    endpoints = ", ".join(f'"{u}"' for u in etcd_cluster.client_urls)
    cfg = load_config(f'[store]\nbackend = "etcd"\nendpoints = [{endpoints}]\n'
                      f'prefix = "{unique_prefix("factory")}"')
    etcd = await open_backend(cfg)
    assert isinstance(etcd, EtcdStore) and etcd.prefix == cfg.store_prefix
    assert etcd.client.endpoints == etcd_cluster.client_urls
    await etcd.aclose()                         # closes the client it made
    assert etcd.client._http.is_closed
