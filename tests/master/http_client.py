"""A blocking HTTP client for the tests of the master's HTTP server (stdlib `http.client`, so
the tests check the bytes hypercorn sends, not what a client library makes of them)."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any


def get(address: tuple[str, int], path: str, token: str | None = None,
        method: str = "GET", headers: dict[str, str] | None = None
        ) -> tuple[int, dict[str, str], bytes]:
    """(status, lower-case headers, body) of one request."""
    conn = http.client.HTTPConnection(*address, timeout=20)
    try:
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        conn.request(method, path, headers=h)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def get_json(address: tuple[str, int], path: str, token: str | None = None
             ) -> tuple[int, Any]:
    status, headers, body = get(address, path, token)
    assert headers["content-type"] == "application/json", (status, headers, body)
    return status, json.loads(body)


def events(address: tuple[str, int], path: str, token: str) -> Iterator[dict[str, Any]]:
    """Each `snapshot` event of a Server-Sent-Event stream, parsed, as it arrives; the
    connection closes when the generator is closed."""
    conn = http.client.HTTPConnection(*address, timeout=30)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        r = conn.getresponse()
        assert r.status == 200, r.read()
        assert r.getheader("content-type") == "text/event-stream"
        event, data = "", []
        while True:
            line = r.readline()
            if not line:
                return
            text = line.decode().rstrip("\n")
            if text.startswith("event:"):
                event = text[6:].strip()
            elif text.startswith("data:"):
                data.append(text[5:].strip())
            elif text == "":
                if event == "snapshot" and data:
                    yield json.loads("\n".join(data))
                event, data = "", []
    finally:
        conn.close()
