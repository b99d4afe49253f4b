"""The operator-facing side of the master's shell (edgerm_master/service_ops.py): the metrics
text, WebSocket connection counting, the malformed-datagram log line and the HTTP routes, on a
real (not running) MasterService. The served end (HTTP, /metrics over sockets) is tested in
test_http_api.py and test_metrics_service.py."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import cast

import pytest
from prometheus_client.parser import text_string_to_metric_families

from edgerm.transport.websocket import WsConnection
from edgerm_master.config import MasterConfig
from edgerm_master.service import MasterService
from edgerm_master.service_ops import ServiceOps


def service(tmp_path: Path, **kw: object) -> MasterService:
    return MasterService(MasterConfig(
        coap_port=0, ws_port=0, http_listen="off", data_dir=str(tmp_path),
        agent_tokens=["agent-token"], framework_tokens=["framework-token"],
        operator_tokens=["operator-token"], **kw))  # type: ignore[arg-type]


def ws_gauge(ops: ServiceOps) -> dict[str, float]:
    text = ops.metrics_text()
    assert text is not None
    return {s.labels["path"]: s.value for f in text_string_to_metric_families(text.decode())
            for s in f.samples if s.name == "edgerm_websocket_connections"}


def test_the_service_holds_one_and_shares_its_metrics(tmp_path: Path) -> None:
    svc = service(tmp_path)
    assert isinstance(svc.ops, ServiceOps) and svc.ops.service is svc
    assert svc.metrics is svc.ops.metrics is not None
    assert svc.metrics_text() is not None    # before the CoAP server is bound too


async def test_counted_counts_open_connections_by_path_also_when_the_handler_fails(
        tmp_path: Path) -> None:
    ops = service(tmp_path).ops
    seen: list[dict[str, float]] = []

    async def handler(ws: WsConnection) -> None:
        seen.append(ws_gauge(ops))
        raise ValueError("the handler broke")

    counted = ops.counted("/agent", handler)
    assert counted is not handler
    with pytest.raises(ValueError):
        await counted(cast(WsConnection, None))
    assert seen == [{"/agent": 1, "/framework": 0, "/state": 0}]
    assert ws_gauge(ops) == {"/agent": 0, "/framework": 0, "/state": 0}


def test_with_metrics_off_nothing_is_measured_or_wrapped(tmp_path: Path) -> None:
    svc = service(tmp_path, metrics=False)
    assert svc.metrics is None and svc.metrics_text() is None

    async def handler(ws: WsConnection) -> None:
        pass

    assert svc.ops.counted("/state", handler) is handler


def test_a_malformed_datagram_is_logged_with_its_peer(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    svc = service(tmp_path)
    with caplog.at_level(logging.WARNING):
        svc.ops.malformed_datagram(("192.0.2.7", 5683), "truncated header")
    [line] = [r for r in caplog.records if getattr(r, "event", "") == "bad_datagram"]
    assert "192.0.2.7" in line.getMessage() and "truncated header" in line.getMessage()
    assert line.code == "MALFORMED"  # type: ignore[attr-defined]


def test_the_http_app_serves_the_api_metrics_and_dashboard(tmp_path: Path) -> None:
    paths = service(tmp_path).ops.http_app().paths()
    assert "/metrics" in paths and "/" in paths
    assert any(p.startswith("/api/v1/") for p in paths)
