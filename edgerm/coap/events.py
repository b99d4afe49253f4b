"""Events the CoAP core hands to its shell through ``next_event()``: the core's vocabulary.

Server side: :class:`RequestReceived` (answer it with ``respond()``) and :class:`ObserverGone`.
Client side: :class:`ResponseReceived` (also each Observe notification) and
:class:`RequestFailed`. Small slotted classes because one is built per request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgerm.coap.message import Option

Addr = Any  # a socket address tuple as returned by recvfrom: (host, port[, flow, scope])


@dataclass(slots=True, eq=False)
class RequestReceived:
    """A complete request (Block1 already reassembled) waiting for ``respond(request_id, …)``."""

    #: Pass to ``respond()``; unique for the lifetime of the endpoint.
    request_id: int
    #: The peer's socket address.
    remote: Addr
    #: Method code (``Code.GET`` … ``Code.FETCH``).
    method: int
    #: Uri-Path segments, decoded UTF-8.
    path: tuple[str, ...]
    #: Uri-Query arguments, decoded UTF-8.
    query: tuple[str, ...]
    #: Request body.
    payload: bytes
    #: Content-Format of the body, ``None`` if absent.
    content_format: int | None
    #: Accept option, ``None`` if absent.
    accept: int | None
    #: Observe option: 0 asks to register, 1 to deregister, ``None`` if absent.
    observe: int | None
    #: True for a confirmable request (CON), False for NON.
    confirmable: bool
    #: All options as received, for anything not lifted into a field.
    options: list[Option] = field(repr=False)


@dataclass(slots=True, eq=False)
class ObserverGone:
    """A server-side observation ended; do not notify it again."""

    #: The id ``respond(..., observe=True)`` returned.
    observation_id: int
    remote: Addr
    #: "reset" (peer sent RST), "timeout" (CON notification unacknowledged),
    #: "deregistered" (Observe=1 or re-registration), "ended" (we sent an error notification or
    #: cancelled it).
    reason: str


@dataclass(slots=True, eq=False)
class ResponseReceived:
    """A response to one of our requests, Block2 already reassembled; also each notification."""

    #: The id ``request()`` returned.
    request_id: int
    remote: Addr
    code: int
    payload: bytes
    content_format: int | None
    #: Observe sequence number for a notification (or the registration's first response).
    observe: int | None
    #: True if more notifications may follow for this request id.
    observing: bool
    options: list[Option] = field(repr=False)


@dataclass(slots=True, eq=False)
class RequestFailed:
    """One of our requests (or observations) ended without a usable response."""

    request_id: int
    remote: Addr
    #: "timeout" (retransmissions exhausted), "reset" (peer sent RST), or a block-wise
    #: problem ("block2 out of order", "response too large", …).
    reason: str


Event = RequestReceived | ObserverGone | ResponseReceived | RequestFailed

__all__ = ["Addr", "RequestReceived", "ObserverGone", "ResponseReceived", "RequestFailed",
           "Event"]
