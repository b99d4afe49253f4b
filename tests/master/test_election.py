"""Election on a real three-member etcd: one leader among several, the members registry,
resignation, losing the lead (lease revoked, key deleted, process stopped past its lease), and
a takeover after a leader process is SIGKILLed (its lease expires)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
import trio

from edgerm_master.election import Election
from edgerm_master.etcd_client import EtcdClient
from edgerm_master.members import MemberInfo
from edgerm_master.testing_etcd import EtcdCluster, etcd_cluster, unique_prefix
from edgerm_master.testing_io import end_process

__all__ = ["etcd_cluster"]

TTL = 2


@pytest.fixture
async def client(etcd_cluster: EtcdCluster) -> AsyncIterator[EtcdClient]:
    c = EtcdClient(etcd_cluster.client_urls, timeout_s=2.0)
    yield c
    await c.aclose()


def member(name: str) -> MemberInfo:
    return MemberInfo(name, {"ws": f"ws://{name}:5690", "coap": f"coap://{name}:5683"})


async def until(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.02)


async def test_one_leader_among_several_and_the_registry(client: EtcdClient) -> None:
    prefix = unique_prefix("elect")
    elections = [Election(client, prefix, TTL, member(f"m{i}")) for i in range(3)]
    async with trio.open_nursery() as nursery:
        for e in elections:
            await nursery.start(e.run)
        won: list[Election] = []

        async def campaign(e: Election) -> None:
            await e.campaign()
            won.append(e)

        for e in elections:
            nursery.start_soon(campaign, e)
        await until(lambda: len(won) == 1)
        await trio.sleep(0.5)                        # nobody else wins meanwhile
        assert len(won) == 1 and [e.leading for e in elections].count(True) == 1
        first = won[0]
        await until(lambda: all(e.leader() == first.member for e in elections))
        listed = await first.members()
        assert sorted((m.name, leads) for m, leads in listed) == sorted(
            (e.member.name, e is first) for e in elections)
        assert next(m for m, _ in listed if m.name == first.member.name) == first.member

        await first.resign()                         # hand over at once
        assert first.lost.is_set() and not first.leading
        await until(lambda: len(won) == 2)
        second = won[1]
        assert second is not first and second.fence is not None
        assert first.fence is None
        await until(lambda: first.leader() == second.member)
        nursery.cancel_scope.cancel()


async def test_lost_lead_is_noticed(client: EtcdClient) -> None:
    prefix = unique_prefix("lost")
    e = Election(client, prefix, TTL, member("m"))
    async with trio.open_nursery() as nursery:
        await nursery.start(e.run)
        await e.campaign()
        # Someone deletes the election key (an operator, a bug): noticed through the watch.
        await client.delete(e.leader_key)
        with trio.fail_after(10):
            await e.lost.wait()
        assert not e.leading
        # It campaigns again and wins; then its lease is revoked behind its back.
        with trio.fail_after(10):
            await e.campaign()
        lost = e.lost
        await client.lease_revoke(e.lease)
        with trio.fail_after(10):
            await lost.wait()
        # The registry entry comes back under a new lease.
        with trio.fail_after(10):
            while not [m for m, _ in await e.members()]:
                await trio.sleep(0.05)
        nursery.cancel_scope.cancel()


_CHILD = """
import sys, trio
from edgerm_master.election import Election
from edgerm_master.etcd_client import EtcdClient
from edgerm_master.members import MemberInfo

async def main(urls, prefix):
    client = EtcdClient(urls.split(","), timeout_s=2.0)
    e = Election(client, prefix, TTL, MemberInfo("child", {"ws": "ws://child"}))
    async with trio.open_nursery() as nursery:
        await nursery.start(e.run)
        await e.campaign()
        print("leading", flush=True)
        await e.lost.wait()
        print("lost", flush=True)
        nursery.cancel_scope.cancel()

trio.run(main, sys.argv[1], sys.argv[2])
""".replace("TTL", str(TTL))


def start_child(cluster: EtcdCluster, prefix: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", _CHILD, ",".join(cluster.client_urls),
                             prefix], stdout=subprocess.PIPE, text=True,
                            env={**os.environ})


async def read_line(proc: subprocess.Popen[str], timeout: float = 20.0) -> str:
    assert proc.stdout is not None
    with trio.fail_after(timeout):
        return await trio.to_thread.run_sync(proc.stdout.readline)


@asynccontextmanager
async def leading_child(cluster: EtcdCluster,
                        name: str) -> AsyncIterator[tuple[str, subprocess.Popen[str]]]:
    """A child process that leads the election at a fresh prefix (`name`-…), and that prefix;
    killed on the way out (woken first, should the test have stopped it)."""
    prefix = unique_prefix(name)
    child = start_child(cluster, prefix)
    try:
        assert (await read_line(child)).strip() == "leading"
        yield prefix, child
    finally:
        child.send_signal(signal.SIGCONT)    # a no-op once it has been reaped
        end_process(child, signal.SIGKILL)


async def test_takeover_after_the_leader_dies(etcd_cluster: EtcdCluster,
                                              client: EtcdClient) -> None:
    async with leading_child(etcd_cluster, "takeover") as (prefix, child):
        e = Election(client, prefix, TTL, member("standby"))
        async with trio.open_nursery() as nursery:
            await nursery.start(e.run)
            await until(lambda: e.leader() is not None)
            assert e.leader() == MemberInfo("child", {"ws": "ws://child"})
            end_process(child, signal.SIGKILL)     # no resignation: the lease must expire
            with trio.fail_after(TTL * 5 + 10):
                await e.campaign()
            assert e.leading and e.leader() == e.member
            nursery.cancel_scope.cancel()


async def test_a_leader_stopped_past_its_lease_learns_it_lost(etcd_cluster: EtcdCluster,
                                                              client: EtcdClient) -> None:
    async with leading_child(etcd_cluster, "stopped") as (prefix, child):
        e = Election(client, prefix, TTL, member("standby"))
        async with trio.open_nursery() as nursery:
            await nursery.start(e.run)
            os.kill(child.pid, signal.SIGSTOP)
            with trio.fail_after(TTL * 5 + 10):
                await e.campaign()                 # its lease expired: we lead
            os.kill(child.pid, signal.SIGCONT)
            assert (await read_line(child)).strip() == "lost"
            assert e.leading
            nursery.cancel_scope.cancel()


async def test_a_hung_etcd_member_does_not_cost_the_lead(etcd_cluster: EtcdCluster) -> None:
    """The member the leader's client talks to stops answering (SIGSTOP): renewals move to
    another member within the lease, and the lead is kept. (The member is an etcd follower:
    stopping etcd's own raft leader adds an etcd election, which under a loaded machine can
    itself take most of this test's 2 s lease.)"""
    statuses = [etcd_cluster.member_status(i) for i in range(3)]
    raft_leader = next(s["leader"] for s in statuses if s)
    follower = next(i for i, s in enumerate(statuses) if s and s["header"]["member_id"]
                    != raft_leader)
    urls = etcd_cluster.client_urls
    # A long timeout for everything else: the renewals set their own.
    client = EtcdClient(urls[follower:] + urls[:follower], timeout_s=30.0)
    prefix = unique_prefix("hung")
    e = Election(client, prefix, TTL, member("m"))
    hung = etcd_cluster.client_urls.index(client.endpoint)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(e.run)
            await e.campaign()
            fence = e.fence
            etcd_cluster.pause(hung)
            await trio.sleep(TTL * 3)
            assert not e.lost.is_set() and e.fence == fence
            assert client.endpoint != etcd_cluster.client_urls[hung]
            nursery.cancel_scope.cancel()
    finally:
        etcd_cluster.resume(hung)
        await client.aclose()
    await trio.to_thread.run_sync(etcd_cluster.wait_healthy)
