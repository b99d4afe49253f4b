"""The real master's /metrics and logs: a real Prometheus server scrapes it and its query API
gives the agent count; a flood of malformed CoAP datagrams is logged rate-limited (JSON lines,
with the count of the lines not written) and counted; `--no-metrics` says so on /metrics."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families
from trio_websocket import open_websocket_url

from edgerm_master.testing import ScriptedAgent
from edgerm_master.testing_io import MasterProcess, end_process

PROMETHEUS = "/usr/bin/prometheus"


def get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def scrape(master: MasterProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    assert master.http is not None
    status, body = get(f"http://{master.http[0]}:{master.http[1]}/metrics")
    assert status == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(body.decode()) for s in f.samples}


def json_lines(master: MasterProcess) -> list[dict[str, Any]]:
    with open(master.log_path) as f:
        return [json.loads(line) for line in f if line.strip()]  # each line one JSON object


@pytest.fixture
def master(tmp_path: Path) -> Iterator[MasterProcess]:
    m = MasterProcess(str(tmp_path / "m"), heartbeat_ms=10_000,
                      extra=["--log-format", "json"]).start()
    try:
        yield m
    finally:
        m.stop()


async def register(master: MasterProcess, *agents: ScriptedAgent) -> None:
    host, port = master.ws
    for agent in agents:
        async with open_websocket_url(f"ws://{host}:{port}/agent") as ws:
            await ws.send_message(agent.register_call())
            agent.handle_reply(await ws.get_message())
        assert agent.agent_id


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Any]:
    """start(target "host:port") -> the Prometheus query URL; the server and its storage go
    away after the test."""
    if not os.path.exists(PROMETHEUS):
        pytest.fail(f"{PROMETHEUS} missing: apt-get install prometheus (scripts/test.sh does)")
    procs: list[subprocess.Popen[bytes]] = []
    root = tmp_path / "prometheus"

    def start(target: str, jobs: str = "") -> str:
        """`jobs`: more scrape_configs entries (YAML, indented as list items)."""
        root.mkdir()
        config = root / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: edgerm-master\n    metrics_path: /metrics\n"
            f"    static_configs:\n      - targets: ['{target}']\n" + jobs)
        for _ in range(5):  # a free port can be taken between our probe and its bind
            port = free_port()
            log = open(root / "prometheus.log", "wb")  # noqa: SIM115 - the child's for its life
            proc = subprocess.Popen(
                [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={root / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                stdout=log, stderr=log)
            log.close()
            procs.append(proc)
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    if get(url + "/-/ready", 1.0)[0] == 200:
                        return url
                except OSError:
                    pass
                time.sleep(0.2)
            end_process(proc)
        raise AssertionError("Prometheus did not start: "
                             + (root / "prometheus.log").read_text()[-2000:])

    yield start
    for proc in procs:
        end_process(proc)
    shutil.rmtree(root, ignore_errors=True)


def query(url: str, expr: str) -> list[dict[str, Any]]:
    status, body = get(f"{url}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert status == 200, body
    answer = json.loads(body)
    assert answer["status"] == "success", answer
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


async def test_prometheus_scrapes_the_agent_count(master: MasterProcess, prometheus: Any
                                                  ) -> None:
    agents = [ScriptedAgent(f"edge-{i}", attributes=[]) for i in range(3)]
    await register(master, *agents)
    assert master.http is not None
    url = prometheus(f"{master.http[0]}:{master.http[1]}")
    result: list[dict[str, Any]] = []
    with trio.move_on_after(60):
        while True:
            result = await trio.to_thread.run_sync(
                query, url, 'sum(edgerm_agents{state="active"})')
            if result and float(result[0]["value"][1]) == 3:
                break
            await trio.sleep(0.5)
    assert result and float(result[0]["value"][1]) == 3, result
    [up] = await trio.to_thread.run_sync(query, url, 'up{job="edgerm-master"}')
    assert up["value"][1] == "1"
    [calls] = await trio.to_thread.run_sync(
        query, url, 'edgerm_agent_calls_total{transport="websocket"}')
    assert float(calls["value"][1]) == 3


async def test_a_datagram_flood_is_rate_limited_in_the_log_and_counted(
        master: MasterProcess) -> None:
    good, bad = ScriptedAgent("good"), ScriptedAgent("bad", token="wrong")
    await register(master, good)
    host, port = master.ws
    async with open_websocket_url(f"ws://{host}:{port}/agent") as ws:
        await ws.send_message(bad.register_call())
        await ws.get_message()
    n = 60
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in range(n):  # CoAP version 3: malformed
            s.sendto(bytes([0xC0 | (i & 0x0F), 0x01, 0x00, i]), master.coap)
    lines: list[dict[str, Any]] = []
    with trio.move_on_after(30):  # the summary comes when the 10 s window has ended
        while not any(e.get("event") == "refusals_suppressed" for e in lines):
            await trio.sleep(0.2)
            lines = json_lines(master)
    bad_lines = [e for e in lines if e.get("event") == "bad_datagram"]
    [summary] = [e for e in lines if e.get("event") == "refusals_suppressed"]
    assert 1 <= len(bad_lines) <= 10
    assert all(e["logger"] == "edgerm.master.coap" and e["peer"].startswith("127.0.0.1:")
               for e in bad_lines)
    assert summary["count"] == n - len(bad_lines) and "more bad datagrams" in summary["msg"]
    # The other events, once each, with the peer.
    [reg] = [e for e in lines if e.get("event") == "agent_registered"]
    assert reg["agent_id"] == good.agent_id and reg["peer"].startswith("127.0.0.1:")
    [refused] = [e for e in lines if e.get("event") == "agent_refused"]
    assert refused["code"] == "UNAUTHENTICATED" and refused["peer"].startswith("127.0.0.1:")

    m = scrape(master)
    assert m[("edgerm_coap_malformed_total", ())] == n
    assert m[("edgerm_refusals_total", (("reason", "MALFORMED"), ("subject", "coap")))] == n
    assert m[("edgerm_refusals_total", (("reason", "UNAUTHENTICATED"),
                                        ("subject", "agents")))] == 1
    async with open_websocket_url(f"ws://{host}:{port}/framework"):
        m = scrape(master)
        assert m[("edgerm_websocket_connections", (("path", "/framework"),))] == 1
    assert m[("edgerm_agent_call_duration_seconds_count", (("transport", "websocket"),))] == 2


async def test_metrics_off_says_so(tmp_path: Path) -> None:
    m = MasterProcess(str(tmp_path / "m"), extra=["--no-metrics"]).start()
    try:
        assert m.http is not None
        status, body = get(f"http://{m.http[0]}:{m.http[1]}/metrics")
    finally:
        m.stop()
    assert status == 404 and json.loads(body)["error"] == "metrics_off"


async def test_prometheus_scrapes_a_tls_master_with_its_ca(tmp_path: Path, prometheus: Any
                                                           ) -> None:
    """The scrape config of docs/operations.md for a master with TLS: `scheme: https` and the
    master's CA; a job without the CA is refused (up 0)."""
    m = MasterProcess(str(tmp_path / "m"), extra=["--dev"]).start()
    try:
        assert m.http is not None
        target = f"{m.http[0]}:{m.http[1]}"
        ca = tmp_path / "m" / "tls" / "ca.pem"
        url = prometheus("127.0.0.1:1", (
            "  - job_name: tls\n    scheme: https\n"
            f"    tls_config:\n      ca_file: {ca}\n"
            f"    static_configs:\n      - targets: ['{target}']\n"
            "  - job_name: untrusted\n    scheme: https\n"
            f"    static_configs:\n      - targets: ['{target}']\n"))
        ups: dict[str, str] = {}
        with trio.move_on_after(60):
            while ups != {"tls": "1", "untrusted": "0"}:
                result = await trio.to_thread.run_sync(query, url, 'up{job=~"tls|untrusted"}')
                ups = {r["metric"]["job"]: r["value"][1] for r in result}
                await trio.sleep(0.5)
        assert ups == {"tls": "1", "untrusted": "0"}, ups
        [leader] = await trio.to_thread.run_sync(query, url, 'edgerm_master_leader{job="tls"}')
        assert leader["value"][1] == "1"
    finally:
        m.stop()
