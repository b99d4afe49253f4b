"""`HttpApp` (routes, the token check, JSON errors, HEAD, streams) through the ASGI interface,
and `serve_http` under hypercorn on a real loopback port: the bound port, a stream that ends when
its client goes away."""

from __future__ import annotations

import http.client
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

from edgerm_master.http_server import (
    HttpApp,
    HttpError,
    HttpRequest,
    HttpResponse,
    bearer_token,
    json_response,
    serve_http,
)


def check_token(request: HttpRequest) -> HttpError | None:
    if bearer_token(request) == "good":
        return None
    return HttpError(401, "unauthenticated", "bad token")


async def call(app: HttpApp, path: str, method: str = "GET", query: bytes = b"",
               headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request through the ASGI interface: (status, headers, body)."""
    scope = {"type": "http", "method": method, "path": path, "query_string": query,
             "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
             "client": ("127.0.0.1", 4000)}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        await trio.sleep_forever()
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start, *bodies = sent
    assert start["type"] == "http.response.start"
    return (start["status"], {k.decode(): v.decode() for k, v in start["headers"]},
            b"".join(b["body"] for b in bodies))


def make_app() -> HttpApp:
    app = HttpApp(check_token)

    async def hello(request: HttpRequest) -> HttpResponse:
        return json_response({"hello": request.param("who"), "peer": request.peer})

    async def files(request: HttpRequest) -> HttpResponse:
        return HttpResponse(200, request.path.encode(), "text/plain")

    async def deeper(request: HttpRequest) -> HttpResponse:
        return HttpResponse(200, b"deeper", "text/plain")

    async def refuses(request: HttpRequest) -> HttpResponse:
        raise HttpError(409, "conflict", "not now", [("retry-after", "5")])

    async def breaks(request: HttpRequest) -> HttpResponse:
        raise RuntimeError("a bug")

    app.route("/hello", hello)
    app.route("/open", hello, auth=False)
    app.route("/files/", files, auth=False, prefix=True)
    app.route("/files/deep/", deeper, auth=False, prefix=True)
    app.route("/refuses", refuses, auth=False)
    app.route("/breaks", breaks, auth=False)
    return app


async def test_routes_exact_then_the_longest_prefix() -> None:
    app = make_app()
    status, headers, body = await call(app, "/open", query=b"who=me&who=you")
    assert status == 200 and json.loads(body) == {"hello": "you", "peer": "127.0.0.1:4000"}
    assert headers["content-type"] == "application/json"
    assert headers["content-length"] == str(len(body))
    assert headers["x-content-type-options"] == "nosniff"
    assert "default-src 'self'" in headers["content-security-policy"]
    assert (await call(app, "/files/a.txt"))[2] == b"/files/a.txt"
    assert (await call(app, "/files/deep/b"))[2] == b"deeper"
    status, _, body = await call(app, "/nowhere")
    assert status == 404
    assert json.loads(body) == {"error": "not_found", "message": "no such path '/nowhere'; the "
                                "master serves /breaks, /hello, /open, /refuses, /files/deep/*, "
                                "/files/*"}


async def test_the_token_is_checked_on_routes_that_ask_for_it() -> None:
    app = make_app()
    status, _, body = await call(app, "/hello")
    assert status == 401 and json.loads(body)["message"] == "bad token"
    status, _, _ = await call(app, "/hello", headers={"Authorization": "Bearer good"})
    assert status == 200
    status, _, _ = await call(app, "/hello", headers={"Authorization": "bearer  good "})
    assert status == 200   # the scheme is case-insensitive, spaces around the token ignored
    assert (await call(app, "/open"))[0] == 200


async def test_methods_head_and_errors() -> None:
    app = make_app()
    status, headers, body = await call(app, "/open", "POST")
    assert status == 405 and headers["allow"] == "GET, HEAD"
    assert json.loads(body)["error"] == "method_not_allowed"
    status, headers, body = await call(app, "/open", "HEAD")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0
    status, headers, body = await call(app, "/refuses")
    assert status == 409 and headers["retry-after"] == "5"
    assert json.loads(body) == {"error": "conflict", "message": "not now"}


async def test_a_broken_handler_is_a_500_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="edgerm.master.http"):
        status, _, body = await call(make_app(), "/breaks")
    assert status == 500 and json.loads(body)["error"] == "internal"
    assert "its log has the details" in json.loads(body)["message"]
    assert any("HTTP GET /breaks failed" in r.getMessage() and r.exc_info for r in caplog.records)


def test_bearer_token() -> None:
    def req(value: str | None) -> HttpRequest:
        return HttpRequest("GET", "/", {}, {} if value is None else {"authorization": value}, "")

    assert bearer_token(req("Bearer abc")) == "abc"
    for value in (None, "", "Bearer", "Bearer  ", "Basic abc", "abc"):
        assert bearer_token(req(value)) is None, value


async def test_served_by_hypercorn_on_a_free_port_and_a_stream_ends_with_its_client() -> None:
    app = make_app()
    ended = trio.Event()
    chunks_sent = 0

    async def stream() -> AsyncIterator[bytes]:
        nonlocal chunks_sent
        try:
            while True:
                chunks_sent += 1
                yield f"data: {chunks_sent}\n\n".encode()
                await trio.sleep(0.05)
        finally:
            ended.set()

    async def events(request: HttpRequest) -> HttpResponse:
        return HttpResponse(content_type="text/event-stream", stream=stream)

    app.route("/events", events, auth=False)

    def client(address: tuple[str, int]) -> tuple[str, list[bytes]]:
        conn = http.client.HTTPConnection(*address, timeout=10)
        conn.request("GET", "/open?who=http")
        plain = conn.getresponse().read().decode()
        conn.request("GET", "/events")
        r = conn.getresponse()
        lines = [r.readline() for _ in range(4)]
        conn.close()     # the client goes away mid-stream
        return plain, lines

    async with trio.open_nursery() as nursery:
        host, port = await nursery.start(serve_http, app, "127.0.0.1", 0)
        assert host == "127.0.0.1" and port > 0
        plain, lines = await trio.to_thread.run_sync(client, (host, port))
        assert json.loads(plain)["hello"] == "http"
        assert lines == [b"data: 1\n", b"\n", b"data: 2\n", b"\n"]
        with trio.fail_after(10):
            await ended.wait()      # the stream was cancelled, not left running
        nursery.cancel_scope.cancel()
