"""The etcd JSON-gateway client against a real three-member etcd: keys, transactions, leases,
watch, endpoints that do not answer; and TLS with a client certificate (a one-member etcd)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

from edgerm_master.etcd_client import (
    EtcdClient,
    EtcdError,
    cmp_create_revision,
    cmp_value,
    op_delete,
    op_put,
    op_range,
    prefix_end,
)
from edgerm_master.testing_etcd import EtcdCluster, etcd_cluster, make_tls_files, unique_prefix

__all__ = ["etcd_cluster"]


def dead_url() -> str:
    """A loopback URL nobody listens on."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


@pytest.fixture
async def client(etcd_cluster: EtcdCluster) -> AsyncIterator[EtcdClient]:
    c = EtcdClient(etcd_cluster.client_urls, timeout_s=2.0)
    yield c
    await c.aclose()


def test_prefix_end() -> None:
    assert prefix_end(b"/a/") == b"/a0"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff\xff") == b"\0"


async def test_keys_and_transactions(client: EtcdClient) -> None:
    p = unique_prefix("kv").encode()
    rev = await client.put(p + b"a", b"\x00\xffbinary")
    await client.put(p + b"b", b"2")
    got = await client.get(p + b"a")
    assert got is not None and got.value == b"\x00\xffbinary" and got.create_revision == rev
    assert await client.get(p + b"zz") is None
    page = await client.range(p, prefix_end(p), limit=1)
    assert [kv.key for kv in page.kvs] == [p + b"a"] and page.more and page.count == 2
    assert (await client.range(p, prefix_end(p), count_only=True)).count == 2
    ok = await client.txn([cmp_create_revision(p + b"a", rev), cmp_value(p + b"b", b"2")],
                          [op_put(p + b"c", b"3"), op_delete(p + b"b")], [op_range(p + b"a")])
    assert ok.succeeded and ok.revision > rev
    failed = await client.txn([cmp_create_revision(p + b"a", 0)], [op_put(p + b"d", b"4")],
                              [op_range(p + b"a")])
    assert not failed.succeeded and await client.get(p + b"d") is None
    assert "response_range" in failed.responses[0]
    assert [kv.key for kv in (await client.range(p, prefix_end(p))).kvs] == [p + b"a", p + b"c"]
    assert await client.delete(p, prefix_end(p)) == 2
    # A request etcd refuses (one key twice in a transaction) is no "unavailable".
    with pytest.raises(EtcdError, match="duplicate key") as refused:
        await client.txn([], [op_put(p + b"x", b"1"), op_put(p + b"x", b"2")])
    assert not refused.value.unavailable


async def test_leases(client: EtcdClient) -> None:
    p = unique_prefix("lease").encode()
    lease, ttl = await client.lease_grant(5)
    assert ttl == 5
    await client.put(p + b"k", b"v", lease)
    assert (await client.get(p + b"k")).lease == lease  # type: ignore[union-attr]
    assert await client.lease_keepalive(lease) == 5
    await client.lease_revoke(lease)
    assert await client.get(p + b"k") is None           # keys go with their lease
    assert await client.lease_keepalive(lease) == 0     # gone for good
    await client.lease_revoke(lease)                    # no error the second time


async def test_watch(client: EtcdClient) -> None:
    p = unique_prefix("watch").encode()
    first = await client.put(p + b"a", b"1")
    seen: list[tuple[str, bytes, bytes]] = []
    async with client.watch(p, prefix_end(p), start_revision=first) as watch:
        await client.put(p + b"b", b"2")
        await client.delete(p + b"a")
        with trio.fail_after(10):
            async for events, revision in watch:
                assert revision > 0
                seen += [(e.kind, e.kv.key, e.kv.value) for e in events]
                if len(seen) >= 3:
                    break
    assert seen == [("PUT", p + b"a", b"1"), ("PUT", p + b"b", b"2"), ("DELETE", p + b"a", b"")]


async def test_a_dead_endpoint_is_skipped_and_none_answering_is_unavailable(
        etcd_cluster: EtcdCluster) -> None:
    c = EtcdClient([dead_url(), *etcd_cluster.client_urls], timeout_s=2.0)
    try:
        await c.put(unique_prefix("skip").encode(), b"v")
        assert c.endpoint == etcd_cluster.client_urls[0]
    finally:
        await c.aclose()
    c = EtcdClient([dead_url(), dead_url()], timeout_s=2.0)
    try:
        with pytest.raises(EtcdError, match="no etcd endpoint answered") as failed:
            await c.range(b"k")
        assert failed.value.unavailable
    finally:
        await c.aclose()


async def test_member_status(etcd_cluster: EtcdCluster) -> None:
    c = EtcdClient(etcd_cluster.client_urls, timeout_s=2.0)
    try:
        status = await c.status()
        assert int(status["header"]["member_id"]) and status["version"]
        other = await c.status(etcd_cluster.client_urls[1])
        assert other["header"]["member_id"] != status["header"]["member_id"]
        with pytest.raises(EtcdError) as failed:
            await c.status(dead_url())
        assert failed.value.unavailable
    finally:
        await c.aclose()


def test_no_endpoints_is_an_error() -> None:
    with pytest.raises(ValueError, match="no endpoints"):
        EtcdClient([])
    with pytest.raises(ValueError, match="not an http:// or https:// URL"):
        EtcdClient(["127.0.0.1:2379"])


async def test_connections_are_kept_alive_and_replaced_when_the_member_restarts(
        etcd_cluster: EtcdCluster) -> None:
    """Calls reuse one connection; after the member restarts (closing it), the next call
    opens a new one without an error."""
    i = 2
    url = etcd_cluster.client_urls[i]
    key = unique_prefix("keepalive").encode()
    c = EtcdClient([url], timeout_s=5.0)
    try:
        await c.put(key, b"v")
        idle = c._pool._idle[url]
        assert len(idle) == 1
        first = idle[0]
        for _ in range(5):
            assert (await c.get(key)).value == b"v"  # type: ignore[union-attr]
        assert c._pool._idle[url] == [first]
        etcd_cluster.stop(i)
        etcd_cluster.start(i)
        etcd_cluster.wait_healthy()
        assert (await c.get(key)).value == b"v"  # type: ignore[union-attr]
        assert c._pool._idle[url] and c._pool._idle[url][0] is not first
    finally:
        await c.aclose()
    assert c._pool.closed and not c._pool._idle


async def stopped(cluster: EtcdCluster, i: int) -> None:
    """Wait until member `i`'s process is stopped (SIGSTOP takes effect asynchronously)."""
    proc = cluster.procs[i]
    assert proc is not None
    with trio.fail_after(10):
        while True:
            with open(f"/proc/{proc.pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("T", "t"):
                    return
            await trio.sleep(0.01)


async def test_a_timed_out_connection_is_not_reused(etcd_cluster: EtcdCluster) -> None:
    """A request that timed out on a hung member leaves its answer unread on its connection;
    that connection is closed, so a later call never reads the earlier call's answer."""
    i = 1
    url = etcd_cluster.client_urls[i]
    p = unique_prefix("timeout").encode()
    c = EtcdClient([url], timeout_s=1.0)
    try:
        await c.put(p + b"a", b"A")
        await c.put(p + b"b", b"B")
        etcd_cluster.pause(i)
        try:
            await stopped(etcd_cluster, i)
            with pytest.raises(EtcdError, match="no answer within 1 s") as failed:
                await c.get(p + b"a")
            assert failed.value.unavailable
        finally:
            etcd_cluster.resume(i)
        with trio.fail_after(20):
            while True:
                try:
                    kv = await c.get(p + b"b")
                    break
                except EtcdError:
                    await trio.sleep(0.2)  # the member catches up after SIGCONT
        assert kv is not None and kv.value == b"B"
    finally:
        await c.aclose()


async def test_tls_with_a_client_certificate(tmp_path: Any) -> None:
    """etcd serving https:// and requiring client certificates: the client with the CA and its
    certificate works; without its certificate etcd refuses it."""
    tls = make_tls_files(str(tmp_path))
    with EtcdCluster(1, tls=tls) as cluster:
        assert cluster.client_urls[0].startswith("https://")
        c = EtcdClient(cluster.client_urls, ca_file=tls.ca, cert_file=tls.client_cert,
                       key_file=tls.client_key)
        try:
            await c.put(b"/tls/k", b"v")
            assert (await c.get(b"/tls/k")).value == b"v"  # type: ignore[union-attr]
        finally:
            await c.aclose()
        anonymous = EtcdClient(cluster.client_urls, ca_file=tls.ca, timeout_s=2.0)
        try:
            with pytest.raises(EtcdError):
                await anonymous.get(b"/tls/k")
        finally:
            await anonymous.aclose()
