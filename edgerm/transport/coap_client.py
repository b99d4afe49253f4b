"""The Trio CoAP client: concurrent requests and Observe registrations over one endpoint.

Each call (:meth:`CoapClient.request`, :meth:`CoapClient.observe`) starts a request on the
sans-IO core and waits on a :class:`_Waiter` for the events carrying its id; the receive loop
and the timer (from :class:`.coap_shell.UdpShell`) deliver them. One socket per address family,
opened on first use.

Resource handling: :func:`open_coap_client` owns the sockets and tasks; they live exactly as
long as its ``async with`` block. Leaving a request (by return, error or cancellation) cancels
it on the core, so nothing is retransmitted for a caller that is gone.

Error handling: no response within the retransmission span or the caller's timeout raises
:class:`CoapTimeout`; a reset or a failed block-wise transfer :class:`CoapRequestError`.
"""

from __future__ import annotations

import random
import socket
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trio

from edgerm.coap.codes import Code, is_success
from edgerm.coap.config import CoapConfig
from edgerm.coap.events import Addr, RequestFailed, ResponseReceived
from edgerm.coap.message import Option
from edgerm.service_nursery import open_service_nursery
from edgerm.transport.coap_shell import UdpShell, open_udp_socket, resolve


class CoapRequestError(Exception):
    """A request or observation ended without a response (reason in ``args[0]``)."""


class CoapTimeout(CoapRequestError, TimeoutError):
    """No response within the retransmission span or the caller's timeout."""


@dataclass(slots=True)
class ClientResponse:
    code: int
    payload: bytes
    content_format: int | None
    remote: Addr
    #: Observe sequence number for notifications, else None.
    observe: int | None = None
    options: list[Option] = field(default_factory=list, repr=False)

    @property
    def success(self) -> bool:
        return is_success(self.code)


class _Waiter:
    """Results of one request id, consumed by exactly one task."""

    __slots__ = ("queue", "event", "limit", "dropped", "done")

    def __init__(self, limit: int) -> None:
        self.queue: deque[ResponseReceived | RequestFailed] = deque()
        self.event = trio.Event()
        self.limit = limit
        self.dropped = 0
        self.done = False

    def put(self, item: ResponseReceived | RequestFailed) -> None:
        if len(self.queue) >= self.limit:
            # An observer cares about the newest state: drop the oldest notification.
            self.queue.popleft()
            self.dropped += 1
        self.queue.append(item)
        self.event.set()

    async def get(self) -> ResponseReceived | RequestFailed:
        while not self.queue:
            self.event = trio.Event()
            await self.event.wait()
        return self.queue.popleft()


def _split_path(path: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(path, str):
        return tuple(seg for seg in path.strip("/").split("/") if seg)
    return tuple(path)


class ClientObservation:
    """Async iterator over the responses of one Observe registration.

    The first item is the registration's response. Iteration stops after a response that
    ends the observation (no Observe option, e.g. the server declined, or an error code);
    :class:`CoapRequestError` is raised if it fails (e.g. "timeout" of a CON registration).
    """

    def __init__(self, client: CoapClient, request_id: int, waiter: _Waiter) -> None:
        self._client = client
        self.request_id = request_id
        self._waiter = waiter
        self._ended = False

    @property
    def dropped(self) -> int:
        """Notifications discarded because the consumer fell behind."""
        return self._waiter.dropped

    def __aiter__(self) -> ClientObservation:
        return self

    async def __anext__(self) -> ClientResponse:
        if self._ended:
            raise StopAsyncIteration
        item = await self._waiter.get()
        if isinstance(item, RequestFailed):
            self._ended = True
            raise CoapTimeout(item.reason) if item.reason == "timeout" else \
                CoapRequestError(item.reason)
        if not item.observing:
            self._ended = True
        return ClientResponse(item.code, item.payload, item.content_format, item.remote,
                              item.observe, item.options)


class CoapClient(UdpShell):
    """CoAP client; create with :func:`open_coap_client`.

    One endpoint, one socket per address family (opened on first use), all requests
    concurrent. Every method resolves ``remote = (host, port)`` itself.
    """

    def __init__(self, nursery: trio.Nursery, config: CoapConfig | None,
                 rng: random.Random | None) -> None:
        super().__init__(config, rng)
        self._nursery = nursery
        self._waiters: dict[int, _Waiter] = {}
        self._bind_host: dict[int, str] = {socket.AF_INET: "0.0.0.0", socket.AF_INET6: "::"}

    def _process_events(self) -> None:
        endpoint = self.endpoint
        while (event := endpoint.next_event()) is not None:
            if isinstance(event, ResponseReceived | RequestFailed):
                waiter = self._waiters.get(event.request_id)
                if waiter is not None:
                    waiter.put(event)

    async def _prepare(self, remote: tuple[str, int] | Addr) -> Addr:
        family, sockaddr = await resolve(remote[0], remote[1])
        if family not in self._sockets:
            bind: Addr = (self._bind_host[family], 0)
            if family == socket.AF_INET6:
                bind = (self._bind_host[family], 0, 0, 0)
            sock = open_udp_socket(family, bind)
            self._sockets[family] = sock
            self._nursery.start_soon(self._receive_loop, sock)
        return sockaddr

    async def request(
        self,
        remote: tuple[str, int] | Addr,
        method: int,
        path: str | Sequence[str],
        payload: bytes = b"",
        *,
        content_format: int | None = None,
        accept: int | None = None,
        query: Sequence[str] = (),
        confirmable: bool = True,
        token_length: int | None = None,
        block_size: int | None = None,
        options: Sequence[Option] = (),
        timeout: float | None = None,
    ) -> ClientResponse:
        """Send one request and return its (block-wise reassembled) response.

        Args:
          remote: ``(host, port)``; IPv4 or IPv6 literal or a name.
          method: ``Code.GET``, ``Code.POST``, ``Code.FETCH``, …
          path: ``"m/abc"`` or ``("m", "abc")``; becomes Uri-Path options.
          token_length: 0..8; 1 or 2 keeps a heartbeat datagram small.
          block_size: Block1 size for large payloads and, if given, the Block2 size asked
            for from the first request on (e.g. 64 on a constrained link).
          timeout: overall limit (default ``config.request_timeout``); CON retransmissions
            happen inside it.

        Raises:
          CoapTimeout: no response (retransmissions exhausted or ``timeout`` passed).
          CoapRequestError: the server reset the request or block-wise transfer failed.
        """
        sockaddr = await self._prepare(remote)
        endpoint = self.endpoint
        rid = endpoint.request(sockaddr, method, _split_path(path), payload,
                               content_format=content_format, accept=accept, query=query,
                               confirmable=confirmable, token_length=token_length,
                               block_size=block_size, options=options)
        waiter = _Waiter(1)
        self._waiters[rid] = waiter
        try:
            self._transmit()
            with trio.fail_after(self.config.request_timeout if timeout is None else timeout):
                item = await waiter.get()
        except trio.TooSlowError:
            raise CoapTimeout("timeout") from None
        finally:
            del self._waiters[rid]
            endpoint.cancel_request(rid)
        if isinstance(item, RequestFailed):
            if item.reason == "timeout":
                raise CoapTimeout(item.reason)
            raise CoapRequestError(item.reason)
        return ClientResponse(item.code, item.payload, item.content_format, item.remote,
                              item.observe, item.options)

    async def get(self, remote: tuple[str, int] | Addr, path: str | Sequence[str],
                  **kwargs: Any) -> ClientResponse:
        return await self.request(remote, Code.GET, path, **kwargs)

    async def post(self, remote: tuple[str, int] | Addr, path: str | Sequence[str],
                   payload: bytes = b"", **kwargs: Any) -> ClientResponse:
        return await self.request(remote, Code.POST, path, payload, **kwargs)

    async def fetch(self, remote: tuple[str, int] | Addr, path: str | Sequence[str],
                    payload: bytes = b"", **kwargs: Any) -> ClientResponse:
        return await self.request(remote, Code.FETCH, path, payload, **kwargs)

    @asynccontextmanager
    async def observe(
        self,
        remote: tuple[str, int] | Addr,
        path: str | Sequence[str],
        payload: bytes = b"",
        *,
        method: int = Code.GET,
        content_format: int | None = None,
        accept: int | None = None,
        query: Sequence[str] = (),
        confirmable: bool = True,
        token_length: int | None = None,
        block_size: int | None = None,
        deregister: bool = True,
        options: Sequence[Option] = (),
    ) -> AsyncIterator[ClientObservation]:
        """Register an observation (GET or FETCH with Observe=0) for the ``async with`` body.

        ``async for response in observation`` yields the first response and then each
        notification. Leaving the block cancels it: with ``deregister`` (default) explicitly
        with Observe=1, otherwise the next notification is answered with RST.
        """
        sockaddr = await self._prepare(remote)
        endpoint = self.endpoint
        rid = endpoint.request(sockaddr, method, _split_path(path), payload,
                               content_format=content_format, accept=accept, query=query,
                               confirmable=confirmable, token_length=token_length,
                               block_size=block_size, options=options, observe=True)
        waiter = _Waiter(self.config.max_queued_notifications)
        self._waiters[rid] = waiter
        try:
            self._transmit()
            yield ClientObservation(self, rid, waiter)
        finally:
            del self._waiters[rid]
            endpoint.cancel_request(rid, deregister=deregister)
            self._transmit()


@asynccontextmanager
async def open_coap_client(*, config: CoapConfig | None = None,
                           rng: random.Random | None = None) -> AsyncIterator[CoapClient]:
    """A :class:`CoapClient` whose sockets and tasks live exactly as long as the block."""
    client: CoapClient | None = None
    try:
        async with open_service_nursery() as nursery:
            client = CoapClient(nursery, config, rng)
            nursery.start_soon(client._timer_loop)
            try:
                yield client
            finally:
                nursery.cancel_scope.cancel()
    finally:
        # After the nursery: no task waits on the sockets any more.
        if client is not None:
            client._close_sockets()


__all__ = ["ClientObservation", "ClientResponse", "CoapClient", "CoapRequestError", "CoapTimeout",
           "open_coap_client"]
