"""The operator-facing side of the master's shell: metrics, connection counts, the HTTP app.

`ServiceOps` is held by `MasterService` (service.py) as `service.ops`; it owns no task and no
socket (the service binds and serves). It builds:
- the shell's metrics (metrics.py, unless `config.metrics` is off): `ShellMetrics`, into which
  the service times agent calls, commits and allocation rounds, and the collector registry that
  `metrics_text()` renders at scrape time with the master's tables and the CoAP counters;
- `counted(path, handler)`: a WebSocket handler whose open connections are counted by path;
- `malformed_datagram`: the CoAP server's hook for a dropped datagram (a log line, rate-limited
  with the refusals);
- `http_app()`: the HTTP server's routes (/api/v1/..., /metrics, the dashboard); on a
  standby every /api/v1 path but /masters answers 503 naming the leader (http_masters.py).

The hot paths stay in the service: it binds `metrics` (and the CoAP call-latency observer)
once, so a steady heartbeat pays no lookup here.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from edgerm.transport.websocket import WsConnection
from edgerm_master.dashboard import add_dashboard_routes
from edgerm_master.http_api import add_api_routes, authenticator
from edgerm_master.http_masters import add_masters_route, standby_refusal
from edgerm_master.http_server import HttpApp
from edgerm_master.listen import peer_address
from edgerm_master.logs import log_coap
from edgerm_master.members import Role
from edgerm_master.metrics import (
    MasterCollector,
    ShellMetrics,
    add_metrics_route,
    master_registry,
    render,
)

if TYPE_CHECKING:
    from edgerm_master.service import MasterService

__all__ = ["ServiceOps"]

WsHandler = Callable[[WsConnection], Awaitable[None]]


class ServiceOps:
    """Metrics, connection counting and the HTTP app of one `MasterService`."""

    def __init__(self, service: MasterService) -> None:
        self.service = service
        # None when metrics are off: every hot-path hook is one `is not None` test then.
        self.metrics: ShellMetrics | None = ShellMetrics() if service.config.metrics else None
        self._registry = (master_registry(MasterCollector(
            service.core, self.metrics, self._coap_stats,
            lambda: service.role is Role.LEADER)) if self.metrics is not None else None)

    def metrics_text(self) -> bytes | None:
        """The Prometheus text exposition now (serve as `metrics.CONTENT_TYPE`); None when
        metrics are off. Computed from the master's tables on the Trio thread: with 100,000
        agents one scrape takes ≈ 40 ms (bench/metrics_scrape.py)."""
        return render(self._registry) if self._registry is not None else None

    def _coap_stats(self) -> tuple[Any, Any] | None:
        server = self.service.coap_server
        return None if server is None else (server.endpoint.stats, server.shell_stats)

    def malformed_datagram(self, remote: Any, why: str) -> None:
        """A CoAP datagram dropped as malformed: a line, rate-limited with the refusals."""
        service = self.service
        peer = peer_address(remote)
        service.core.state.refusal_log.log(
            log_coap, logging.WARNING, service.clock(),
            f"dropped a malformed CoAP datagram from {peer or '?'}: {why}",
            {"event": "bad_datagram", "peer": peer, "code": "MALFORMED"},
            noun="bad datagrams")

    def counted(self, path: str, handler: WsHandler) -> WsHandler:
        """`handler`, with its connections counted for the metrics while they are open
        (`handler` itself when metrics are off)."""
        metrics = self.metrics
        if metrics is None:
            return handler

        async def counted(ws: WsConnection) -> None:
            metrics.ws_opened(path)
            try:
                await handler(ws)
            finally:
                metrics.ws_closed(path)

        return counted

    def http_app(self) -> HttpApp:
        """The HTTP server's routes. To serve another path, add it here:
        `app.route("/path", handler, auth=False)` with `async def handler(request:
        HttpRequest) -> HttpResponse` (http_server.py; `auth=True`, the default, asks for the
        operator token as a bearer header)."""
        service = self.service
        app = HttpApp(authenticator(service), standby_refusal(service))
        add_api_routes(app, service)      # /api/v1/...
        add_masters_route(app, service)   # /api/v1/masters (answered by standbys too)
        add_metrics_route(app, self.metrics_text)  # /metrics
        add_dashboard_routes(app)      # /, /static/...
        return app
