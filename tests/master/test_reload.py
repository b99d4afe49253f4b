"""Framework principals end to end against `python -m edgerm_master` (real WebSocket, CoAP,
SQLite or etcd): two principals cannot act for each other's frameworks; SIGHUP reloads the
tokens (a principal added, a token revoked with its live connection closed, the task running
on), a broken file on SIGHUP keeps the config in use; a restart keeps the binding; `edgerm
frameworks` shows the principal."""

from __future__ import annotations

import json
import signal
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import trio
from trio_websocket import open_websocket_url

from edgerm.framework import ErrorEvent, Framework, FrameworkError
from edgerm.transport.coap import open_coap_client
from edgerm.wire import decode, pb
from edgerm_master.testing import ScriptedAgent, ScriptedFramework
from edgerm_master.testing_etcd import EtcdCluster, unique_prefix
from edgerm_master.testing_io import CoapAgentClient, MasterProcess, WsFrameworkClient

from .test_e2e_ws_guard import closed_with, launch_one, subscribed, url

TS = pb.TaskState
TOKENS = ("a-token-1", "a-token-2", "o-token-1", "l-token-1")


def write_config(path: Path, principals: dict[str, str]) -> None:
    path.write_text("[frameworks.principals]\n" + "".join(
        f'{name} = "{token}"\n' for name, token in principals.items()))


def log_text(m: MasterProcess) -> str:
    return Path(m.log_path).read_text(errors="replace")


async def until_logged(m: MasterProcess, text: str, count: int = 1, timeout: float = 10.0
                       ) -> None:
    with trio.fail_after(timeout):
        while log_text(m).count(text) < count:
            await trio.sleep(0.05)


def sighup(m: MasterProcess) -> None:
    assert m.proc is not None
    m.proc.send_signal(signal.SIGHUP)


def taker(of: WsFrameworkClient, token: str) -> ScriptedFramework:
    """A framework that tries to subscribe as `of`'s framework, with its secret."""
    return ScriptedFramework(token=token).posing_as(of.fw)


async def refused_subscribe(m: MasterProcess, fw: ScriptedFramework) -> pb.Error:
    """Subscribe `fw` on a new connection: the master answers one error and closes (1008)."""
    async with open_websocket_url(url(m, "/framework")) as ws:
        await ws.send_message(fw.subscribe())
        closed = await closed_with(ws)
    [event] = [decode(pb.FrameworkEvent, d) for d in closed.messages]
    assert closed.code == 1008 or event.error.code == pb.NOT_LEADER
    return event.error


async def frameworks_listing(m: MasterProcess) -> list[list[str]]:
    done = await trio.run_process(
        [sys.executable, "-m", "edgerm_cli", "frameworks", "--master", url(m, ""),
         "--operator-token", "operator-token"], capture_stdout=True, capture_stderr=True,
        check=False)
    assert done.returncode == 0, done.stderr.decode()
    return [line.split() for line in done.stdout.decode().splitlines()]


def api_frameworks(m: MasterProcess) -> list[dict[str, Any]]:
    """GET /api/v1/frameworks (the HTTP API's JSON, as the dashboard reads it)."""
    assert m.http is not None
    request = urllib.request.Request(f"http://{m.http[0]}:{m.http[1]}/api/v1/frameworks",
                                     headers={"Authorization": "Bearer operator-token"})
    with urllib.request.urlopen(request, timeout=10) as response:
        frameworks: list[dict[str, Any]] = json.load(response)["frameworks"]
    return frameworks


async def test_principals_and_sighup_against_a_real_master(tmp_path: Path) -> None:
    config = tmp_path / "master.toml"
    write_config(config, {"analytics": "a-token-1", "ops": "o-token-1"})
    m = MasterProcess(str(tmp_path / "data"), heartbeat_ms=1000,
                      extra=["--config", str(config), "--allocation-interval-s", "0.2"]).start()
    try:
        async with open_coap_client() as coap, \
                open_websocket_url(url(m, "/framework")) as owner_ws, \
                open_websocket_url(url(m, "/framework")) as ops_ws:
            agent = CoapAgentClient(coap, m.coap, ScriptedAgent("pi-1"))
            await agent.settle()
            owner = await subscribed(owner_ws, ScriptedFramework(
                "mine", token="a-token-1", failover_timeout_s=600))
            # The agent's only offer must reach the owner: the other principal subscribes after.
            await launch_one(agent, owner, "t1")
            ops = await subscribed(ops_ws, ScriptedFramework("theirs", token="o-token-1"))

            # --- another principal cannot subscribe as it, even with its secret ...
            error = await refused_subscribe(m, taker(owner, "o-token-1"))
            assert error.code == pb.FORBIDDEN and "another principal" in error.message
            # ... nor, on its own connection, kill, acknowledge or reconcile for it.
            ops_id = ops.fw.framework_id
            ops.fw.framework_id = owner.fw.framework_id
            for call in (ops.fw.kill("t1"), ops.fw.reconcile(["t1"]), ops.fw.teardown()):
                await ops.send(call)
                error = await ops.until_kind("error")
                assert error.code == pb.FORBIDDEN and "belongs to another principal" in \
                    error.message
            ops.fw.framework_id = ops_id
            await owner.send(owner.fw.reconcile(["t1"]))
            update = await owner.until_kind("update")
            assert (update.task_id, update.state) == ("t1", TS.RUNNING)

            # --- the operator's listing names each framework's principal
            rows = await frameworks_listing(m)
            assert rows[0][:3] == ["ID", "NAME", "PRINCIPAL"]
            assert {r[0]: r[2] for r in rows[1:]} == {owner.fw.framework_id: "analytics",
                                                      ops_id: "ops"}
            listed = await trio.to_thread.run_sync(api_frameworks, m)
            assert {f["framework_id"]: f["principal"] for f in listed} == {
                owner.fw.framework_id: "analytics", ops_id: "ops"}

            # --- SIGHUP: a principal added, analytics' token replaced (the old one revoked)
            write_config(config, {"analytics": "a-token-2", "ops": "o-token-1",
                                  "late": "l-token-1"})
            sighup(m)
            closed = await closed_with(owner_ws)
            assert closed.code == 1008 and closed.reason == "token revoked"
            last = decode(pb.FrameworkEvent, closed.messages[-1])
            assert last.error.code == pb.UNAUTHENTICATED and last.error.message == "token revoked"
            await until_logged(m, "config reloaded")
            assert "added late" in log_text(m) and "tokens changed for analytics" in log_text(m)
            async with open_websocket_url(url(m, "/framework")) as ws:
                late = await subscribed(ws, ScriptedFramework("late", token="l-token-1"))
                assert late.fw.framework_id
            error = await refused_subscribe(m, taker(owner, "a-token-1"))
            assert error.code == pb.UNAUTHENTICATED
            # The ops connection was not touched; the revoked framework's task runs on.
            await ops.send(ops.fw.reconcile())
            await agent.settle()
            assert agent.agent.tasks[1] == TS.RUNNING

            # --- a broken file: refused, the config in use stays
            config.write_text('[frameworks.principals\nanalytics = "a-token-1"\n')
            sighup(m)
            await until_logged(m, "config not reloaded")
            assert "not valid TOML" in log_text(m)
            error = await refused_subscribe(m, taker(owner, "a-token-1"))
            assert error.code == pb.UNAUTHENTICATED
            async with open_websocket_url(url(m, "/framework")) as ws:
                heir = await subscribed(ws, taker(owner, "a-token-2"))
                await heir.send(heir.fw.reconcile(["t1"]))
                update = await heir.until_kind("update")
                assert (update.task_id, update.state) == ("t1", TS.RUNNING)
        log = log_text(m)
        assert not [t for t in TOKENS if t in log], "a token was logged"

        # --- a restart keeps the binding (SQLite); the file on disk is still the broken one
        write_config(config, {"analytics": "a-token-2", "ops": "o-token-1"})
        m.kill()
        m.start()
        error = await refused_subscribe(m, taker(owner, "o-token-1"))
        assert error.code == pb.FORBIDDEN and "another principal" in error.message
        async with open_websocket_url(url(m, "/framework")) as ws:
            again = await subscribed(ws, taker(owner, "a-token-2"))
            assert again.fw.framework_id == owner.fw.framework_id
    finally:
        m.stop()


async def test_the_binding_survives_a_restart_on_etcd(tmp_path: Path) -> None:
    config = tmp_path / "master.toml"
    write_config(config, {"analytics": "a-token-1", "ops": "o-token-1"})
    with EtcdCluster(size=1) as etcd:
        args = ["--config", str(config), "--store-backend", "etcd",
                "--store-endpoint", etcd.client_urls[0], "--store-prefix", unique_prefix("pr"),
                "--store-lease-ttl-s", "1", "--name", "m1"]
        m = MasterProcess(str(tmp_path / "data"), heartbeat_ms=1000, extra=args).start()
        try:
            owner = WsFrameworkClient(None, ScriptedFramework(
                "mine", token="a-token-1", failover_timeout_s=600))
            await subscribe_when_leading(m, owner.fw)
            m.kill()
            m.start()
            error = await refused_when_leading(m, taker(owner, "o-token-1"))
            assert error.code == pb.FORBIDDEN and "another principal" in error.message
            async with open_websocket_url(url(m, "/framework")) as ws:
                again = await subscribed(ws, taker(owner, "a-token-1"))
                assert again.fw.framework_id == owner.fw.framework_id
            rows = await frameworks_listing(m)
            assert [r[2] for r in rows[1:] if r[0] == owner.fw.framework_id] == ["analytics"]
        finally:
            m.stop()


async def subscribe_when_leading(m: MasterProcess, fw: ScriptedFramework) -> None:
    """Subscribe `fw` (then leave) once the master leads: an etcd-backed master is a standby
    answering NOT_LEADER until it wins the election."""
    with trio.fail_after(30):
        while True:
            async with open_websocket_url(url(m, "/framework")) as ws:
                client = WsFrameworkClient(ws, fw)
                await client.send(fw.subscribe())
                ev = await client.until(
                    lambda e: e.WhichOneof("event") in ("subscribed", "error"))
                if ev.WhichOneof("event") == "subscribed":
                    return
                assert ev.error.code == pb.NOT_LEADER, ev.error
            await trio.sleep(0.2)


async def refused_when_leading(m: MasterProcess, fw: ScriptedFramework) -> pb.Error:
    """`refused_subscribe`, again while the master answers NOT_LEADER."""
    with trio.fail_after(30):
        while True:
            error = await refused_subscribe(m, fw)
            if error.code != pb.NOT_LEADER:
                return error
            await trio.sleep(0.2)


async def test_deprecated_framework_tokens_and_settings_a_reload_does_not_change(
        tmp_path: Path) -> None:
    config = tmp_path / "master.toml"
    config.write_text('framework_tokens = ["legacy-token"]\nheartbeat_ms = 1000\n')
    m = MasterProcess(str(tmp_path / "data"), heartbeat_ms=1000,
                      extra=["--config", str(config)])
    for flag in ("--heartbeat-ms", "--framework-token"):   # from the file instead
        del m.args[m.args.index(flag):m.args.index(flag) + 2]
    m.start()
    try:
        await until_logged(m, "framework_tokens is deprecated")
        async with open_websocket_url(url(m, "/framework")) as ws:
            await subscribed(ws, ScriptedFramework(token="legacy-token"))
        rows = await frameworks_listing(m)
        assert [r[2] for r in rows[1:]] == ["default"]
        config.write_text('framework_tokens = ["legacy-token"]\nheartbeat_ms = 2000\n'
                          '[frameworks.principals]\nops = "o-token-1"\n')
        sighup(m)
        await until_logged(m, "heartbeat_ms changed in the config but only take effect at a "
                              "restart")
        await until_logged(m, "framework_tokens is deprecated", count=2)   # said again
        assert "added ops" in log_text(m)
        async with open_websocket_url(url(m, "/framework")) as ws:
            await subscribed(ws, ScriptedFramework(token="o-token-1"))
        assert "legacy-token" not in log_text(m) and "o-token-1" not in log_text(m)
    finally:
        m.stop()


async def test_the_sdk_sees_token_revoked_then_ends_with_the_refusal(tmp_path: Path) -> None:
    config = tmp_path / "master.toml"
    write_config(config, {"analytics": "a-token-1"})
    m = MasterProcess(str(tmp_path / "data"), heartbeat_ms=1000,
                      extra=["--config", str(config)]).start()
    try:
        async with Framework.connect(url(m, ""), name="sdk", token="a-token-1",
                                     failover_timeout_s=60, connect_timeout_s=5) as fw:
            write_config(config, {"analytics": "a-token-2"})
            sighup(m)
            seen: list[ErrorEvent] = []
            with trio.fail_after(30), pytest.raises(FrameworkError) as ended:
                async for ev in fw.events():
                    if isinstance(ev, ErrorEvent):
                        seen.append(ev)
            assert [(e.code, e.message) for e in seen] == [(pb.UNAUTHENTICATED, "token revoked")]
            assert "wrong framework token" in str(ended.value)
    finally:
        m.stop()
