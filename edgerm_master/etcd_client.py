"""A small Trio client for etcd v3 through its JSON gateway (etcd 3.4: `/v3/...` on the client
port): unary calls on keep-alive HTTP/1.1 connections of its own (`h11` over Trio streams, JSON
by the stdlib), streamed watches through `httpx.AsyncClient`.

What the master needs and no more: key ranges, puts, deletes, transactions (with the op builders
below), leases (grant, keep-alive, revoke), a streamed watch and the member status. Keys and
values are bytes; the gateway wants them base64 in JSON and sends int64 fields as strings, which
this module hides.

Endpoints: the client talks to one endpoint at a time; on a connection error or a timeout it
moves to the next and tries each once per call. When none answers (all down, or the one that
is up has no quorum and times the request out), the call raises `EtcdError` with
`unavailable=True`. A request etcd answers with an error raises `EtcdError(unavailable=False)`,
except etcd's own "no leader"/"timed out" answers, which mean the same as no answer.

Retrying a write on another endpoint after a timeout may apply it twice (the first may have
committed). The store only sends writes that are idempotent for that reason (docs/ha.md).

Why not httpx for every call: it costs ~2 ms of CPU per request on the target machine (its
request/response models, header handling and pool bookkeeping), which was most of the etcd
backend's per-launch cost in the master (bench/README.md, master_store). A POST on a kept-alive
h11 connection costs a fraction of that. Watches are few and long-lived, so they stay on httpx.

Resource handling: idle keep-alive connections, at most `_IDLE_PER_ENDPOINT` per endpoint (a
call takes one or opens a new one, and gives it back only after a complete answer: a timed-out,
cancelled or failed request closes its connection, whose state is unknown); the idle ones of an
endpoint are closed when it fails. One `httpx.AsyncClient` for the watches. `aclose()` closes
all. A watch holds one streamed response; leaving its `async with` closes it.
"""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import h11
import httpx
import trio

__all__ = ["EtcdClient", "EtcdError", "KeyValue", "RangeResult", "TxnResult", "WatchEvent",
           "Watch", "prefix_end", "op_put", "op_delete", "op_range", "cmp_create_revision",
           "cmp_value", "cmp_mod_revision"]

# etcd answers these (gRPC codes through the gateway) when it has no quorum or no leader:
# UNAVAILABLE (14) and DEADLINE_EXCEEDED (4).
_UNAVAILABLE_CODES = (4, 14)
# A watch on a member cut off from the others would just stay silent; with this gRPC metadata
# (the gateway passes Grpc-Metadata-* headers on) etcd ends it with "no leader" instead, and
# the watcher moves to another endpoint.
_REQUIRE_LEADER = {"Grpc-Metadata-hasleader": "true"}


class EtcdError(Exception):
    """An etcd call failed. `unavailable` is True when no endpoint answered or the cluster has no
    quorum (try again later); False when etcd refused the request itself (a bug or a limit)."""

    def __init__(self, message: str, *, unavailable: bool = False) -> None:
        super().__init__(message)
        self.unavailable = unavailable


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int


@dataclass(frozen=True, slots=True)
class RangeResult:
    kvs: list[KeyValue]
    revision: int       # the store's revision when etcd answered
    more: bool          # a `limit` cut the answer short
    count: int


@dataclass(frozen=True, slots=True)
class TxnResult:
    succeeded: bool
    revision: int
    responses: list[dict[str, Any]]  # one per op of the branch taken, as the gateway sends it


@dataclass(frozen=True, slots=True)
class WatchEvent:
    kind: str           # "PUT" or "DELETE"
    kv: KeyValue        # for a DELETE: key and mod_revision only


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


def _kv(obj: dict[str, Any]) -> KeyValue:
    return KeyValue(_unb64(obj.get("key")), _unb64(obj.get("value")),
                    int(obj.get("create_revision", 0)), int(obj.get("mod_revision", 0)),
                    int(obj.get("version", 0)), int(obj.get("lease", 0)))


def prefix_end(prefix: bytes) -> bytes:
    """The range end that makes [prefix, end) every key starting with `prefix`."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"  # every key


# --- transaction parts (dicts in the gateway's JSON shape) ----------------------------------

def op_put(key: bytes, value: bytes, lease: int = 0) -> dict[str, Any]:
    put: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
    if lease:
        put["lease"] = str(lease)
    return {"request_put": put}


def op_delete(key: bytes, range_end: bytes | None = None) -> dict[str, Any]:
    req = {"key": _b64(key)}
    if range_end is not None:
        req["range_end"] = _b64(range_end)
    return {"request_delete_range": req}


def op_range(key: bytes, range_end: bytes | None = None) -> dict[str, Any]:
    req = {"key": _b64(key)}
    if range_end is not None:
        req["range_end"] = _b64(range_end)
    return {"request_range": req}


def cmp_create_revision(key: bytes, revision: int, result: str = "EQUAL") -> dict[str, Any]:
    """True when `key` was created at `revision` (0: the key does not exist)."""
    return {"key": _b64(key), "target": "CREATE", "result": result,
            "create_revision": str(revision)}


def cmp_mod_revision(key: bytes, revision: int, result: str = "EQUAL") -> dict[str, Any]:
    return {"key": _b64(key), "target": "MOD", "result": result, "mod_revision": str(revision)}


def cmp_value(key: bytes, value: bytes, result: str = "EQUAL") -> dict[str, Any]:
    return {"key": _b64(key), "target": "VALUE", "result": result, "value": _b64(value)}

# --- unary calls: keep-alive HTTP/1.1 over Trio streams ------------------------------------

_IDLE_PER_ENDPOINT = 16
_RECEIVE_BYTES = 65536
# What a broken or refused connection raises: socket errors (ssl.SSLError is one), Trio's
# stream errors (a TLS failure surfaces as BrokenResourceError), and h11's protocol errors
# (the peer closed mid-answer, or sent something that is not HTTP/1.1).
_CONNECTION_ERRORS = (OSError, trio.BrokenResourceError, trio.ClosedResourceError,
                      h11.ProtocolError)


class _ConnectionLost(Exception):
    """The server closed a connection before it answered."""


class _Endpoint:
    """Where one endpoint URL points, parsed once."""

    __slots__ = ("url", "host", "port", "tls", "host_header")

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"etcd: endpoint {url!r} is not an http:// or https:// URL "
                             "(e.g. http://127.0.0.1:2379)")
        self.url = url
        self.host = parts.hostname
        self.tls = parts.scheme == "https"
        self.port = parts.port or (443 if self.tls else 80)
        self.host_header = parts.netloc


class _Connection:
    """One HTTP/1.1 connection: POSTs one after the other (no pipelining)."""

    __slots__ = ("stream", "http")

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.http = h11.Connection(h11.CLIENT)

    async def post(self, endpoint: _Endpoint, target: str, body: bytes,
                   headers: tuple[tuple[str, str], ...]) -> tuple[int, bytes]:
        """(status, body) of one POST. Afterwards the connection is ready for the next one,
        or `reusable` is False."""
        http = self.http
        await self.stream.send_all(
            http.send(h11.Request(method="POST", target=target, headers=[
                ("Host", endpoint.host_header), ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))), *headers]))
            + http.send(h11.Data(data=body)) + http.send(h11.EndOfMessage()))  # type: ignore[operator]
        status = 0
        chunks: list[bytes] = []
        while True:
            event = http.next_event()
            if event is h11.NEED_DATA:
                http.receive_data(bytes(await self.stream.receive_some(_RECEIVE_BYTES)))
            elif type(event) is h11.Data:
                chunks.append(bytes(event.data))
            elif type(event) is h11.Response:
                status = event.status_code
            elif type(event) is h11.EndOfMessage:
                break
            elif type(event) is h11.ConnectionClosed:
                raise _ConnectionLost("the server closed the connection")
            # h11.InformationalResponse (1xx): wait for the real answer.
        if http.our_state is h11.DONE and http.their_state is h11.DONE:
            http.start_next_cycle()
        return status, b"".join(chunks)

    @property
    def reusable(self) -> bool:
        return self.http.our_state is h11.IDLE and self.http.their_state is h11.IDLE


class _Pool:
    """Keep-alive connections to each endpoint."""

    def __init__(self, ssl_context: ssl.SSLContext | None) -> None:
        self._ssl = ssl_context
        self._idle: dict[str, list[_Connection]] = {}
        self.closed = False

    async def _connect(self, endpoint: _Endpoint) -> _Connection:
        stream: trio.abc.Stream = await trio.open_tcp_stream(endpoint.host, endpoint.port)
        if endpoint.tls:
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            tls = trio.SSLStream(stream, self._ssl, server_hostname=endpoint.host,
                                 https_compatible=True)
            try:
                await tls.do_handshake()
            except BaseException:
                await trio.aclose_forcefully(tls)
                raise
            stream = tls
        return _Connection(stream)

    async def post(self, endpoint: _Endpoint, target: str, body: bytes,
                   headers: tuple[tuple[str, str], ...] = ()) -> tuple[int, bytes]:
        """One POST on an idle connection to `endpoint` (or a new one). A kept-alive
        connection the server has closed meanwhile fails at once: the request is sent again
        once on a new connection. Raises one of `_CONNECTION_ERRORS` or `_ConnectionLost`."""
        if self.closed:
            raise trio.ClosedResourceError("etcd client closed")
        idle = self._idle.setdefault(endpoint.url, [])
        while True:
            reused = bool(idle)
            conn = idle.pop() if reused else await self._connect(endpoint)
            done = False
            try:
                answer = await conn.post(endpoint, target, body, headers)
                done = True
            except (*_CONNECTION_ERRORS, _ConnectionLost):
                if reused:
                    continue  # closed in `finally`; try a new connection
                raise
            finally:
                if done and conn.reusable and len(idle) < _IDLE_PER_ENDPOINT \
                        and not self.closed:
                    idle.append(conn)
                else:
                    await trio.aclose_forcefully(conn.stream)
            return answer

    async def drop(self, endpoint: _Endpoint) -> None:
        """Close the idle connections to `endpoint` (it failed: they are likely dead)."""
        for conn in self._idle.pop(endpoint.url, []):
            await trio.aclose_forcefully(conn.stream)

    async def aclose(self) -> None:
        self.closed = True
        for url in list(self._idle):
            for conn in self._idle.pop(url):
                await trio.aclose_forcefully(conn.stream)


class EtcdClient:
    """Args:
        endpoints: client URLs ("http://127.0.0.1:2379"; "https://" with TLS).
        timeout_s: how long one request may take on one endpoint before the next is tried.
        ca_file, cert_file, key_file: TLS trust anchors and client certificate (optional).
    """

    def __init__(self, endpoints: list[str], *, timeout_s: float = 5.0,
                 ca_file: str = "", cert_file: str = "", key_file: str = "") -> None:
        if not endpoints:
            raise ValueError("etcd: no endpoints given; list at least one client URL")
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self._endpoints = [_Endpoint(e) for e in self.endpoints]
        self.timeout_s = timeout_s
        self._current = 0
        context: ssl.SSLContext | None = None
        if ca_file or cert_file:
            context = ssl.create_default_context(cafile=ca_file or None)
            if cert_file:
                context.load_cert_chain(cert_file, key_file or None)
        self._pool = _Pool(context)
        self._http = httpx.AsyncClient(
            verify=context or True, timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=4))
        # Watches stream for as long as they run: no read timeout.
        self._stream_timeout = httpx.Timeout(timeout_s, read=None)

    async def aclose(self) -> None:
        await self._pool.aclose()
        await self._http.aclose()

    @property
    def endpoint(self) -> str:
        """The endpoint the next call tries first."""
        return self.endpoints[self._current]

    async def call(self, path: str, body: dict[str, Any], timeout: float | None = None
                   ) -> dict[str, Any]:
        """POST `body` to `/v3/<path>` on the current endpoint, moving on along the list on a
        connection failure or after `timeout` (default `timeout_s`) seconds; the decoded JSON
        answer."""
        data = json.dumps(body, separators=(",", ":")).encode()
        target = "/v3/" + path
        per_try = self.timeout_s if timeout is None else timeout
        errors: list[str] = []
        for _ in range(len(self.endpoints)):
            endpoint = self._endpoints[self._current]
            url = endpoint.url
            failure = ""
            with trio.move_on_after(per_try) as scope:
                try:
                    status, raw = await self._pool.post(endpoint, target, data)
                except (*_CONNECTION_ERRORS, _ConnectionLost) as e:
                    failure = f"{type(e).__name__} {e}".rstrip()
            if scope.cancelled_caught:
                failure = f"no answer within {per_try:g} s"
            if failure:
                errors.append(f"{url}: {failure}")
                await self._pool.drop(endpoint)
                self._current = (self._current + 1) % len(self.endpoints)
                continue
            try:
                answer = json.loads(raw)
                if not isinstance(answer, dict):
                    raise ValueError("not an object")
            except ValueError:
                raise EtcdError(f"etcd {url}/v3/{path}: HTTP {status}, not JSON: "
                                f"{raw[:200]!r}") from None
            if "error" in answer or status != 200:
                message = (answer.get("message") or answer.get("error")
                           or raw[:200].decode(errors="replace"))
                code = int(answer.get("code", 0))
                if code in _UNAVAILABLE_CODES or status == 503:
                    errors.append(f"{url}: {message}")
                    self._current = (self._current + 1) % len(self.endpoints)
                    continue
                raise EtcdError(f"etcd {path}: {message}")
            return answer
        raise EtcdError("no etcd endpoint answered, or the cluster has no quorum (" +
                        "; ".join(errors) + ")", unavailable=True)

    # --- key-value --------------------------------------------------------------------------

    async def range(self, key: bytes, range_end: bytes | None = None, *, limit: int = 0,
                    revision: int = 0, keys_only: bool = False, count_only: bool = False,
                    serializable: bool = False) -> RangeResult:
        body: dict[str, Any] = {"key": _b64(key)}
        if range_end is not None:
            body["range_end"] = _b64(range_end)
        if limit:
            body["limit"] = str(limit)
        if revision:
            body["revision"] = str(revision)
        if keys_only:
            body["keys_only"] = True
        if count_only:
            body["count_only"] = True
        if serializable:
            body["serializable"] = True
        answer = await self.call("kv/range", body)
        return RangeResult([_kv(kv) for kv in answer.get("kvs", [])],
                           int(answer["header"].get("revision", 0)),
                           bool(answer.get("more", False)), int(answer.get("count", 0)))

    async def get(self, key: bytes) -> KeyValue | None:
        kvs = (await self.range(key)).kvs
        return kvs[0] if kvs else None

    async def put(self, key: bytes, value: bytes, lease: int = 0) -> int:
        """The revision of the put."""
        body = op_put(key, value, lease)["request_put"]
        answer = await self.call("kv/put", body)
        return int(answer["header"].get("revision", 0))

    async def delete(self, key: bytes, range_end: bytes | None = None) -> int:
        """How many keys were deleted."""
        body = op_delete(key, range_end)["request_delete_range"]
        answer = await self.call("kv/deleterange", body)
        return int(answer.get("deleted", 0))

    async def txn(self, compare: list[dict[str, Any]], success: list[dict[str, Any]],
                  failure: list[dict[str, Any]] | None = None) -> TxnResult:
        body: dict[str, Any] = {"compare": compare, "success": success}
        if failure:
            body["failure"] = failure
        answer = await self.call("kv/txn", body)
        return TxnResult(bool(answer.get("succeeded", False)),
                         int(answer["header"].get("revision", 0)),
                         list(answer.get("responses", [])))

    # --- leases -----------------------------------------------------------------------------

    async def lease_grant(self, ttl: int) -> tuple[int, int]:
        """A new lease: (id, granted ttl in seconds)."""
        answer = await self.call("lease/grant", {"TTL": str(ttl)})
        return int(answer["ID"]), int(answer.get("TTL", ttl))

    async def lease_keepalive(self, lease: int, timeout: float | None = None) -> int:
        """Renew `lease` once: its new TTL, 0 if it has expired (it is gone for good).
        `timeout` per endpoint: a renewal must try the next member well within the TTL."""
        answer = await self.call("lease/keepalive", {"ID": str(lease)}, timeout)
        return int(answer.get("result", {}).get("TTL", 0))

    async def lease_revoke(self, lease: int) -> None:
        """Revoke `lease` (deleting every key attached to it). An unknown lease is no error."""
        try:
            await self.call("lease/revoke", {"ID": str(lease)})
        except EtcdError as e:
            if e.unavailable or "not found" not in str(e):
                raise

    # --- watch and status -------------------------------------------------------------------

    @asynccontextmanager
    async def watch(self, key: bytes, range_end: bytes | None = None, *,
                    start_revision: int = 0, prev_kv: bool = False) -> AsyncIterator[Watch]:
        """`async with client.watch(...) as w: async for events, revision in w: ...`.

        Raises `EtcdError` when the watch cannot start or ends (unavailable=True when the
        endpoint went away: start again from the last revision seen plus one). A watch whose
        start revision was compacted raises `EtcdError` naming the compaction."""
        create: dict[str, Any] = {"key": _b64(key)}
        if range_end is not None:
            create["range_end"] = _b64(range_end)
        if start_revision:
            create["start_revision"] = str(start_revision)
        if prev_kv:
            create["prev_kv"] = True
        errors: list[str] = []
        for _ in range(len(self.endpoints)):
            url = self.endpoints[self._current]
            try:
                request = self._http.build_request("POST", f"{url}/v3/watch",
                                                   json={"create_request": create},
                                                   headers=_REQUIRE_LEADER,
                                                   timeout=self._stream_timeout)
                response = await self._http.send(request, stream=True)
            except httpx.TransportError as e:
                errors.append(f"{url}: {type(e).__name__} {e}".rstrip())
                self._current = (self._current + 1) % len(self.endpoints)
                continue
            if response.status_code != 200:
                body = (await response.aread())[:200]
                await response.aclose()
                errors.append(f"{url}: HTTP {response.status_code} {body!r}")
                self._current = (self._current + 1) % len(self.endpoints)
                continue
            try:
                yield Watch(response, url)
            finally:
                await response.aclose()
            return
        raise EtcdError("no etcd endpoint answered the watch (" + "; ".join(errors) + ")",
                        unavailable=True)

    async def status(self, endpoint: str | None = None) -> dict[str, Any]:
        """`/v3/maintenance/status` of one endpoint (the current one by default)."""
        url = (endpoint or self.endpoint).rstrip("/")
        try:
            target = self._endpoints[self.endpoints.index(url)]
        except ValueError:
            target = _Endpoint(url)
        try:
            with trio.fail_after(self.timeout_s):
                _, raw = await self._pool.post(target, "/v3/maintenance/status", b"{}")
            return dict(json.loads(raw))
        except (*_CONNECTION_ERRORS, _ConnectionLost, trio.TooSlowError, ValueError) as e:
            raise EtcdError(f"etcd {url}: {type(e).__name__} {e}".rstrip(),
                            unavailable=True) from None

class Watch:
    """The events of one watch, batch by batch: `async for events, revision in watch`."""

    def __init__(self, response: httpx.Response, url: str) -> None:
        self._response = response
        self._url = url

    def __aiter__(self) -> AsyncIterator[tuple[list[WatchEvent], int]]:
        return self._batches()

    async def _batches(self) -> AsyncIterator[tuple[list[WatchEvent], int]]:
        try:
            async for line in self._response.aiter_lines():
                if not line.strip():
                    continue
                try:
                    answer = json.loads(line)
                except ValueError:
                    raise EtcdError(f"etcd watch {self._url}: not JSON: {line[:200]!r}") from None
                if "error" in answer:
                    err = answer["error"]
                    raise EtcdError(f"etcd watch {self._url}: {err.get('message', err)}",
                                    unavailable=int(err.get("grpc_code", err.get("code", 0)))
                                    in _UNAVAILABLE_CODES)
                result = answer.get("result", {})
                if result.get("compact_revision") and result.get("canceled"):
                    raise EtcdError(f"etcd watch {self._url}: history compacted up to revision "
                                    f"{result['compact_revision']}; reload everything")
                if result.get("canceled"):
                    raise EtcdError(f"etcd watch {self._url}: cancelled by etcd "
                                    f"({result.get('cancel_reason', 'no reason given')})",
                                    unavailable=True)
                events = [WatchEvent(e.get("type", "PUT"), _kv(e.get("kv", {})))
                          for e in result.get("events", [])]
                yield events, int(result.get("header", {}).get("revision", 0))
        except httpx.TransportError as e:
            raise EtcdError(f"etcd watch {self._url} ended: {type(e).__name__} {e}",
                            unavailable=True) from None
        raise EtcdError(f"etcd watch {self._url} ended", unavailable=True)
