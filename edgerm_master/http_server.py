"""The master's HTTP server: a small ASGI application (`HttpApp`, a table of routes) served by
hypercorn's Trio worker in the master's own nursery and event loop.

hypercorn parses HTTP (h11/h2) and runs the ASGI protocol; this module only routes a request
to its handler, checks the operator token when the route asks for it, and writes the
handler's `HttpResponse` (a body, or a stream of chunks for Server-Sent Events). Routes:

    app.route("/api/v1/agents", handler)               # operator token required
    app.route("/metrics", handler, auth=False)          # open
    app.route("/static/", handler, prefix=True, auth=False)

A handler is `async def handler(request: HttpRequest) -> HttpResponse`; `HttpError(status,
error, message)` raised in it becomes a JSON error answer. The master's routes are put together
in `ServiceOps.http_app` (service_ops.py); add a route there.

Resource handling: `serve_http` runs until cancelled (the master's nursery); hypercorn closes
every connection then. A streaming response ends when the client goes away (its
`http.disconnect` cancels the stream) or the stream ends.

Error handling: a bad request (unknown path, wrong method, bad parameters, wrong or missing
token) gets a JSON body `{"error": <short name>, "message": <what to do>}` with its status; an
exception in a handler is logged and answered 500, never stops the master.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

__all__ = ["HttpApp", "HttpRequest", "HttpResponse", "HttpError", "Handler", "serve_http",
           "json_response", "bearer_token"]

log = logging.getLogger("edgerm.master.http")
_server_log = logging.getLogger("edgerm.master.http.server")
_server_log.setLevel(logging.WARNING)

# Headers on every answer: the dashboard loads only its own files (no inline script, no other
# origin), and nothing the master serves is framed by another site or sniffed as another type.
_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy",
     b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
     b"connect-src 'self'; frame-ancestors 'none'"),
]


class HttpError(Exception):
    """Raised by a handler: answered as `{"error": error, "message": message}` with `status`."""

    def __init__(self, status: int, error: str, message: str,
                 headers: Sequence[tuple[str, str]] = (),
                 fields: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.headers = list(headers)
        self.fields = dict(fields or {})   # more keys of the JSON body (e.g. "leader")


@dataclass
class HttpRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]          # lower-case names; a repeated header keeps its last value
    peer: str                        # "host:port" of the client, for log lines

    def param(self, name: str) -> str | None:
        """The query parameter `name` (its last value), or None."""
        values = self.query.get(name)
        return values[-1] if values else None


@dataclass
class HttpResponse:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)
    # A streaming answer (Server-Sent Events): each chunk is sent as it comes; `body` is unused.
    stream: Callable[[], AsyncIterator[bytes]] | None = None


Handler = Callable[[HttpRequest], Awaitable[HttpResponse]]
# Checks a request's operator token: None if it may go on, else the HttpError to answer.
Authenticator = Callable[[HttpRequest], HttpError | None]


def json_response(value: Any, status: int = 200) -> HttpResponse:
    return HttpResponse(status, json.dumps(value, separators=(",", ":")).encode())


def bearer_token(request: HttpRequest) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None if there is none."""
    value = request.headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


@dataclass
class _Route:
    handler: Handler
    auth: bool
    methods: tuple[str, ...]
    leader_only: bool


class HttpApp:
    """An ASGI application: exact paths, then prefixes (longest first), to handlers.

    `authenticate` checks the operator token of routes registered with `auth=True`; then
    `refuse_standby` (if given) may refuse those not registered with `standby=True` (a
    standby master has no cluster state to show: http_masters.standby_refusal)."""

    def __init__(self, authenticate: Authenticator,
                 refuse_standby: Authenticator | None = None) -> None:
        self.authenticate = authenticate
        self.refuse_standby = refuse_standby
        self._exact: dict[str, _Route] = {}
        self._prefixes: list[tuple[str, _Route]] = []

    def route(self, path: str, handler: Handler, *, auth: bool = True, prefix: bool = False,
              methods: Sequence[str] = ("GET", "HEAD"), standby: bool = False) -> None:
        """Serve `path` (or, with `prefix`, every path starting with it) with `handler`.
        `auth`: the request must carry an operator token (`Authorization: Bearer ...`).
        `standby`: a standby answers it too (routes without `auth` always are)."""
        r = _Route(handler, auth, tuple(m.upper() for m in methods), auth and not standby)
        if prefix:
            self._prefixes.append((path, r))
            self._prefixes.sort(key=lambda p: -len(p[0]))
        else:
            self._exact[path] = r

    def paths(self) -> list[str]:
        return sorted(self._exact) + [p + "*" for p, _ in self._prefixes]

    def _find(self, path: str) -> _Route | None:
        r = self._exact.get(path)
        if r is not None:
            return r
        for p, r in self._prefixes:
            if path.startswith(p):
                return r
        return None

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[Any]],
                       send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return  # WebSocket on this port: not served (the master's WebSocket has its own)
        request = _request(scope)
        try:
            response = await self._handle(request)
        except HttpError as e:
            response = _error_response(e)
        except Exception:
            log.exception("HTTP %s %s failed", request.method, request.path)
            response = _error_response(HttpError(
                500, "internal", "the master failed to answer; its log has the details"))
        head_only = request.method == "HEAD"
        headers = [(b"content-type", response.content_type.encode()),
                   (b"cache-control", b"no-store"), *_SECURITY_HEADERS,
                   *((k.lower().encode(), v.encode()) for k, v in response.headers)]
        if response.stream is None or head_only:
            headers.append((b"content-length", str(len(response.body)).encode()))
            await send({"type": "http.response.start", "status": response.status,
                        "headers": headers})
            await send({"type": "http.response.body",
                        "body": b"" if head_only else response.body})
            return
        await send({"type": "http.response.start", "status": response.status,
                    "headers": headers})
        await _send_stream(response.stream, receive, send)

    async def _handle(self, request: HttpRequest) -> HttpResponse:
        r = self._find(request.path)
        if r is None:
            raise HttpError(404, "not_found", f"no such path {request.path!r}; the master "
                            "serves " + ", ".join(self.paths()))
        if request.method not in r.methods:
            raise HttpError(405, "method_not_allowed",
                            f"{request.path} answers {', '.join(r.methods)} only (read-only)",
                            [("allow", ", ".join(r.methods))])
        if r.auth:
            refused = self.authenticate(request)
            if refused is not None:
                raise refused
        if r.leader_only and self.refuse_standby is not None:
            refused = self.refuse_standby(request)
            if refused is not None:
                raise refused
        return await r.handler(request)


def _request(scope: dict[str, Any]) -> HttpRequest:
    headers: dict[str, str] = {}
    for name, value in scope.get("headers", []):
        headers[name.decode("latin-1").lower()] = value.decode("latin-1")
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    client = scope.get("client")
    peer = ""
    if client:
        host = str(client[0])
        peer = f"[{host}]:{client[1]}" if ":" in host else f"{host}:{client[1]}"
    return HttpRequest(scope["method"].upper(), scope["path"], query, headers, peer)


def _error_response(e: HttpError) -> HttpResponse:
    r = json_response({**e.fields, "error": e.error, "message": e.message}, e.status)
    r.headers.extend(e.headers)
    return r


async def _send_stream(stream: Callable[[], AsyncIterator[bytes]],
                       receive: Callable[[], Awaitable[Any]],
                       send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
    """Send each chunk of `stream` until it ends or the client disconnects."""
    async with trio.open_nursery() as nursery:

        async def watch_disconnect() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    nursery.cancel_scope.cancel()
                    return

        nursery.start_soon(watch_disconnect)
        try:
            async for chunk in stream():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            nursery.cancel_scope.cancel()


async def _lifespan(receive: Callable[[], Awaitable[Any]],
                    send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def serve_http(app: HttpApp, host: str, port: int, *, certfile: str = "",
                     keyfile: str = "",
                     task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED
                     ) -> None:
    """Serve `app` on host:port (0: any free port) until cancelled; `task_status.started`
    gives the bound (host, port). A port that cannot be bound raises OSError. With
    `certfile` and `keyfile` (PEM; edgerm_master/tls.py checked them) it serves HTTPS."""
    config = HypercornConfig()
    if certfile:
        config.certfile, config.keyfile = certfile, keyfile
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    # hypercorn's own lines ("Running on ...") only when something is wrong: the master's
    # ready line says where HTTP is served.
    config.errorlog = _server_log
    config.accesslog = None
    # Streams (the dashboard's events) stay open: no keep-alive cut-off mid-stream.
    config.keep_alive_timeout = 75
    config.graceful_timeout = 1.0
    config.include_server_header = False

    async def started(task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
                      ) -> None:
        await hypercorn_serve(app, config, task_status=task_status)  # type: ignore[arg-type]

    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(started)
        bound = binds[0].removeprefix("http://").removeprefix("https://")
        h, _, p = bound.rpartition(":")
        task_status.started((h.strip("[]"), int(p)))
