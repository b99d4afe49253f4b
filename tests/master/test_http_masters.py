"""The HTTP API with several masters (edgerm_master/http_masters.py): `/api/v1/masters`, a
standby's 503 naming the leader, and the role gauge on /metrics.

Two real masters as processes on a real three-member etcd cluster (`testing_ha.MasterSet`),
asked over real HTTP; `edgerm masters --json` against the same registry must give the same
document. The standby's refusal and the SQLite master's own entry with in-process services.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

import edgerm_cli.main as cli_main
from edgerm_cli.masters import masters_command
from edgerm_master.config import MasterConfig
from edgerm_master.members import MasterRow, MemberInfo, Role, masters_json, registry_rows
from edgerm_master.service import MasterService
from edgerm_master.testing_etcd import EtcdCluster, etcd_cluster, unique_prefix
from edgerm_master.testing_ha import MasterSet

from .http_client import get, get_json

__all__ = ["etcd_cluster"]  # the fixture, imported for these tests

TOKEN = "operator-token"


@pytest.fixture
def two_masters(tmp_path: Path, etcd_cluster: EtcdCluster) -> Iterator[MasterSet]:
    ms = MasterSet(str(tmp_path / "set"), etcd_cluster.client_urls, unique_prefix("http"), n=2)
    try:
        yield ms.start()
    finally:
        ms.close()


async def call(address: tuple[str, int], path: str, token: str | None = TOKEN
               ) -> tuple[int, Any]:
    return await trio.to_thread.run_sync(get_json, address, path, token)


def metric(text: bytes, name: str) -> float:
    for line in text.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


async def cli_masters(etcd: EtcdCluster, prefix: str) -> dict[str, Any]:
    argv = ["masters", "--etcd", ",".join(etcd.client_urls), "--etcd-prefix", prefix,
            "--operator-token", TOKEN, "--json"]
    out = io.StringIO()
    assert await masters_command(cli_main.build_parser().parse_args(argv), out) == 0
    doc: dict[str, Any] = json.loads(out.getvalue())
    return doc


async def test_leader_and_standby_list_the_masters_as_the_cli_does(
        two_masters: MasterSet, etcd_cluster: EtcdCluster) -> None:
    ms = two_masters
    lead = await ms.leader()
    standby = 1 - lead
    http = [m.http for m in ms.masters]
    assert http[0] is not None and http[1] is not None
    lurl = f"http://{http[lead][0]}:{http[lead][1]}"
    # The standby learns the leader from the election's watch: poll until it names it.
    with trio.fail_after(15):
        while True:
            status, body = await call(http[standby], "/api/v1/agents")
            assert status == 503, body
            if body["leader"]:
                break
            await trio.sleep(0.1)
    assert body["error"] == "not_leader" and body["leader"] == lurl
    assert body["leader_name"] == f"m{lead}" and lurl in body["message"]
    status, body = await call(http[standby], "/api/v1/state")
    assert status == 503 and body["leader"] == lurl
    status, _ = await call(http[lead], "/api/v1/agents")
    assert status == 200

    status, on_leader = await call(http[lead], "/api/v1/masters")
    assert status == 200
    status, on_standby = await call(http[standby], "/api/v1/masters")
    assert status == 200
    assert on_leader == on_standby == await cli_masters(etcd_cluster, ms.prefix)
    assert on_leader["leader"] == f"m{lead}"
    rows = {m["name"]: m for m in on_leader["masters"]}
    assert rows[f"m{lead}"]["role"] == "leader" and rows[f"m{standby}"]["role"] == "standby"
    assert all(r["leader"] == f"m{lead}" for r in rows.values())
    for i in (0, 1):
        h, p = http[i]  # type: ignore[misc]
        assert rows[f"m{i}"]["urls"]["http"] == f"http://{h}:{p}"
        assert rows[f"m{i}"]["urls"]["ws"] == f"ws://{ms.ws[i][0]}:{ms.ws[i][1]}"

    for i, role in ((lead, "leader"), (standby, "standby")):
        _, headers, _ = await trio.to_thread.run_sync(get, http[i], "/api/v1/masters", TOKEN)
        assert headers["x-edgerm-role"] == role  # which one answered (the dashboard's banner)

    # /metrics on both, open, with the role gauge.
    for i, want in ((lead, 1.0), (standby, 0.0)):
        status, _, text = await trio.to_thread.run_sync(get, http[i], "/metrics")
        assert status == 200 and metric(text, "edgerm_master_leader") == want

    # Tokens as on every other path: 401 before any 503, on the standby too.
    for i in (lead, standby):
        for path in ("/api/v1/masters", "/api/v1/agents"):
            for token in (None, "wrong"):
                status, body = await call(http[i], path, token)
                assert status == 401 and body["error"] == "unauthenticated", (i, path, body)
        status, body = await call(http[i], "/api/v1/masters?limit=1")
        assert status == 400 and "no parameters" in body["message"]


def service(path: Path) -> MasterService:
    return MasterService(MasterConfig(coap_port=0, ws_port=0, host="127.0.0.1", name="solo",
                                      data_dir=str(path), operator_tokens=["op"]))


async def test_a_standby_refuses_the_api_naming_the_leader_or_saying_none_is_known(
        tmp_path: Path) -> None:
    svc = service(tmp_path)
    async with trio.open_nursery() as nursery:
        await nursery.start(svc.run)
        assert svc.http_address is not None
        svc.set_role(Role.STANDBY, None)
        status, body = await call(svc.http_address, "/api/v1/tasks", "op")
        assert status == 503 and body["leader"] == "" and "no leader is known" in body["message"]
        svc.set_role(Role.STANDBY, MemberInfo("m1", {"ws": "ws://10.0.0.1:5690"}))
        status, body = await call(svc.http_address, "/api/v1/tasks/t1", "op")
        assert status == 503 and body["leader"] == "" and body["leader_name"] == "m1"
        assert "/api/v1/masters" in body["message"]
        svc.set_role(Role.STANDBY, MemberInfo("m1", {"http": "https://m1.example"}))
        status, headers, raw = await trio.to_thread.run_sync(
            get, svc.http_address, "/api/v1/events", "op")
        body = json.loads(raw)
        assert status == 503 and body["leader"] == "https://m1.example"
        assert headers["retry-after"] == "2"
        status, _, text = await trio.to_thread.run_sync(get, svc.http_address, "/metrics")
        assert status == 200 and metric(text, "edgerm_master_leader") == 0.0
        status, _, _ = await trio.to_thread.run_sync(get, svc.http_address, "/")
        assert status == 200  # the dashboard's page (it shows the standby banner)
        svc.set_role(Role.LEADER, None)
        status, _ = await call(svc.http_address, "/api/v1/tasks", "op")
        assert status == 200
        nursery.cancel_scope.cancel()


async def test_a_master_without_ha_lists_itself_leading(tmp_path: Path) -> None:
    svc = service(tmp_path)
    async with trio.open_nursery() as nursery:
        coap, ws = await nursery.start(svc.run)
        assert svc.http_address is not None
        status, body = await call(svc.http_address, "/api/v1/masters", "op")
        h, p = svc.http_address
        assert status == 200 and body == {"leader": "solo", "masters": [{
            "name": "solo", "role": "leader", "leader": "solo", "detail": "",
            "urls": {"coap": f"coap://{coap[0]}:{coap[1]}", "ws": f"ws://{ws[0]}:{ws[1]}",
                     "http": f"http://{h}:{p}"}}]}
        status, _, text = await trio.to_thread.run_sync(get, svc.http_address, "/metrics")
        assert metric(text, "edgerm_master_leader") == 1.0
        nursery.cancel_scope.cancel()


def test_registry_rows_mark_the_leader_and_name_it_on_every_row() -> None:
    a, b = MemberInfo("a", {"ws": "ws://a:1"}), MemberInfo("b", {"ws": "ws://b:1"})
    assert masters_json(registry_rows([a, b], b)) == {"leader": "b", "masters": [
        {"name": "a", "role": "standby", "urls": {"ws": "ws://a:1"}, "leader": "b",
         "detail": ""},
        {"name": "b", "role": "leader", "urls": {"ws": "ws://b:1"}, "leader": "b",
         "detail": ""}]}
    assert masters_json(registry_rows([a], None))["leader"] == ""
    # Probed rows without a name: the leader is named by its WebSocket URL.
    assert masters_json([MasterRow("", "leader", {"ws": "ws://x:1"})])["leader"] == "ws://x:1"
