"""The few Docker Engine API calls the agent makes at start-up, without the Docker SDK.

At start the agent only needs to know whether the engine answers (`GET /_ping`) and to remove
its own containers that no live task owns (`GET /containers/json` filtered by its label,
`DELETE /containers/<id>?force=1`). Doing that over `http.client` keeps the Docker SDK (and
requests/urllib3 behind it, ~7 MB of RSS) out of an agent until its first Docker task.

Only plain engine URLs are handled here: `unix:///path/docker.sock`, `tcp://host:port` and
`http://host:port` without TLS. `EngineApi.for_url` returns None for anything else (TLS, ssh),
and the executor then uses the SDK from the start.

Every call blocks: run it through `trio.to_thread.run_sync`. Errors are `EngineError`.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from typing import Any
from urllib.parse import quote, urlsplit

__all__ = ["EngineApi", "EngineError", "DEFAULT_SOCKET"]

DEFAULT_SOCKET = "unix:///var/run/docker.sock"
# Container listings of one agent are small; anything bigger is not an engine we understand.
_MAX_BODY = 16 * 1024 * 1024


class EngineError(Exception):
    """The engine did not answer, or answered something other than success."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class EngineApi:
    """A handful of Docker Engine API requests over one URL (a new connection per request)."""

    def __init__(self, *, unix_path: str | None = None, host: str = "", port: int = 0,
                 timeout: float = 10.0) -> None:
        self.unix_path = unix_path
        self.host = host
        self.port = port
        self.timeout = timeout

    @classmethod
    def for_url(cls, base_url: str | None, timeout: float = 10.0) -> EngineApi | None:
        """The client for `base_url` (None: `DOCKER_HOST` or the default socket), or None
        when the URL needs TLS or a scheme this module does not speak."""
        url = base_url or os.environ.get("DOCKER_HOST") or DEFAULT_SOCKET
        if os.environ.get("DOCKER_TLS_VERIFY") and not url.startswith("unix://"):
            return None
        parts = urlsplit(url)
        if parts.scheme == "unix":
            return cls(unix_path=parts.path, timeout=timeout)
        if parts.scheme in ("tcp", "http") and parts.hostname:
            return cls(host=parts.hostname, port=parts.port or 2375, timeout=timeout)
        return None

    def _request(self, method: str, path: str) -> bytes:
        conn: http.client.HTTPConnection
        if self.unix_path is not None:
            conn = _UnixConnection(self.unix_path, self.timeout)
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request(method, path, headers={"Host": "docker"})
            resp = conn.getresponse()
            body = resp.read(_MAX_BODY + 1)
        except (OSError, http.client.HTTPException) as e:
            raise EngineError(f"docker engine: {e!r}") from None
        finally:
            conn.close()
        if len(body) > _MAX_BODY:
            raise EngineError("docker engine: answer too large")
        if not 200 <= resp.status < 300:
            text = body[:200].decode("utf-8", "replace").strip()
            raise EngineError(f"docker engine: {method} {path.split('?')[0]} -> {resp.status} "
                              f"{text}")
        return body

    def ping(self) -> bool:
        """True when the engine answers `OK` to `/_ping`."""
        try:
            return self._request("GET", "/_ping").strip() == b"OK"
        except EngineError:
            return False

    def containers_with_label(self, label: str) -> list[dict[str, Any]]:
        """Every container (running or not) carrying `label` ("key=value")."""
        filters = quote(json.dumps({"label": [label]}))
        body = self._request("GET", f"/containers/json?all=1&filters={filters}")
        try:
            found = json.loads(body)
        except ValueError:
            raise EngineError("docker engine: container list is not JSON") from None
        if not isinstance(found, list):
            raise EngineError("docker engine: container list is not a list")
        return [c for c in found if isinstance(c, dict)]

    def remove_container(self, container_id: str) -> None:
        """Force-remove one container (kills it if it runs)."""
        self._request("DELETE", f"/containers/{quote(container_id, safe='')}?force=1")
