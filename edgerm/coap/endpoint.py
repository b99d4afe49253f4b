"""One sans-IO CoAP endpoint, client and server: the object the Trio shell and the tests drive.

Theory of operation
-------------------
A :class:`CoapEndpoint` is driven from three directions, like aioquic's ``QuicConnection``:

* **datagrams**: ``receive_datagram(data, addr, now)`` for every datagram read;
* **the application**: ``respond()`` / ``notify()`` on the server side, ``request()`` /
  ``cancel_request()`` on the client side;
* **one timer**: ``get_timer()`` is the earliest absolute deadline, ``handle_timer(now)``
  runs everything due (retransmissions, Empty ACKs for slow handlers, expiry).

and it answers by being pulled: ``datagrams_to_send(now)`` and ``next_event()``. It never
reads a clock, sleeps or touches a socket; randomness comes from the injected
``random.Random``, so a seeded test replays exactly.

The work is done by three layers (RFC 7252 §2.1's message and request/response sublayers),
each in its own module; this object only routes between them:

* :mod:`edgerm.coap.message_layer` — message ids, retransmission of our CON messages,
  ACK/RST matching, deduplication (RFC 7252 §4), the outgoing datagrams and the counters;
* :mod:`edgerm.coap.server` — requests received, responses (piggybacked or separate),
  Block1 reassembly and Block2 serving (RFC 7959), observers and notifications (RFC 7641);
* :mod:`edgerm.coap.client` — our requests, token matching, block-wise in both directions,
  Observe registrations.

``receive_datagram`` decodes and routes by type and code: requests to the server side, ACK
and RST to the message layer (which names the owner of the message they answer), separate
responses and notifications to the client side. Bad input never raises out of it: a malformed
CON gets RST, other malformed messages are dropped; all are counted in :attr:`stats`.
"""

from __future__ import annotations

import itertools
import random
from collections import deque
from collections.abc import Callable, Sequence

from edgerm.coap.client import ClientSide
from edgerm.coap.codes import ACK, CON, NON, RST, Code
from edgerm.coap.config import CoapConfig
from edgerm.coap.errors import CoapWireError
from edgerm.coap.events import Addr, Event
from edgerm.coap.message import Message, Option, decode_message_untrusted
from edgerm.coap.message_layer import (
    KIND_NOTIFICATION,
    KIND_REQUEST,
    CoapStats,
    MessageLayer,
    Pending,
)
from edgerm.coap.server import ServerSide

_CON_NON = (CON, NON)


class CoapEndpoint:
    """A sans-IO CoAP endpoint; see the module docstring for how to drive it.

    Args:
      config: tunables; defaults are RFC 7252's.
      rng: source of message ids, tokens, Observe sequence numbers and retransmission
        jitter. Seed it in tests.
    """

    def __init__(self, config: CoapConfig | None = None, *, rng: random.Random | None = None):
        self.config = cfg = config or CoapConfig()
        rng = rng or random.Random()
        self.stats = CoapStats()
        self._events: deque[Event] = deque()
        # One counter for the ids of both sides, so an id names one request on this endpoint.
        ids = itertools.count(1)
        # Built in this order: each draws its first value from ``rng`` (message id, then
        # Observe sequence number), and a seeded endpoint must replay exactly.
        self._messages = messages = MessageLayer(cfg, rng, self.stats)
        self._server = ServerSide(cfg, rng, messages, self._events, ids)
        self._client = ClientSide(cfg, rng, messages, self._events, ids)
        # Bound once: these run per datagram.
        self._on_request = self._server.on_request
        self._on_separate_response = self._client.on_separate_response
        # The application calls respond() once per request: it goes straight to the server
        # side. The method below documents it; passing its keyword arguments on would cost a
        # third of respond()'s own time.
        self.respond = self._server.respond  # type: ignore[method-assign]
        #: Called with the sender and what is wrong for each datagram dropped as malformed (a
        #: shell logs it, rate-limited); None: only counted in ``stats.malformed``.
        self.on_malformed: Callable[[Addr, str], None] | None = None

    @property
    def timer_generation(self) -> int:
        """Incremented whenever something is scheduled that may make ``get_timer()`` earlier;
        a shell can skip re-reading the timer when it has not changed."""
        return self._messages.timer_generation

    # ------------------------------------------------------------------ pulled outputs
    def next_event(self) -> Event | None:
        events = self._events
        return events.popleft() if events else None

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Addr]]:
        """Datagrams to send now; arms retransmission timers of new CON messages from ``now``."""
        return self._messages.datagrams_to_send(now)

    def get_timer(self) -> float | None:
        """The earliest absolute time at which ``handle_timer`` has work, or ``None``."""
        when = self._messages.next_deadline()
        t = self._server.next_deadline()
        if t is not None and (when is None or t < when):
            when = t
        return when

    def handle_timer(self, now: float) -> None:
        messages = self._messages
        messages.retransmit(now, self._gave_up)
        self._server.send_empty_acks(now)
        messages.dedup.expire(now)
        self._server.expire(now)

    # ------------------------------------------------------------------ datagram input
    def receive_datagram(self, data: bytes, remote: Addr, now: float) -> None:
        """Feed one datagram from ``remote``. Never raises on bad input; counts it instead."""
        self.stats.received += 1
        try:
            msg = decode_message_untrusted(data)
        except CoapWireError as exc:
            self._malformed(remote, str(exc))
            if exc.mtype == CON and exc.mid is not None:
                # RFC 7252 §4.2: a CON that cannot be processed is rejected with RST.
                self._messages.send_rst(exc.mid, remote)
            return
        code = msg.code
        mtype = msg.mtype
        if 0 < code < 32:
            if mtype in _CON_NON:
                self._on_request(msg, remote, now, len(data))
            else:
                self._malformed(remote, "a request in an ACK or RST")
        elif code == 0:
            if mtype == CON:
                self._messages.send_rst(msg.mid, remote)  # CoAP ping (§4.3)
            elif mtype != NON:
                self._on_ack_or_rst(msg, remote, now)
            else:
                self.stats.ignored += 1
        elif (code >> 5) in (2, 4, 5):
            if mtype == ACK:
                self._on_ack_or_rst(msg, remote, now)
            elif mtype == RST:
                self._malformed(remote, "a RST that is not Empty")
            else:
                self._on_separate_response(msg, remote, now)
        else:
            # Reserved classes 1, 3, 6, 7 (§12.1): a message format error.
            self._malformed(remote, "a reserved code class")
            if mtype == CON:
                self._messages.send_rst(msg.mid, remote)

    def _malformed(self, remote: Addr, why: str) -> None:
        self.stats.malformed += 1
        if self.on_malformed is not None:
            self.on_malformed(remote, why)

    def _on_ack_or_rst(self, msg: Message, remote: Addr, now: float) -> None:
        p = self._messages.match(msg, remote)
        if p is None:
            if msg.mtype == RST and self._server.reset_of_non_notification(remote, msg.mid):
                return
            self.stats.unmatched += 1
        elif p.kind == KIND_REQUEST:
            self._client.request_answered(p, msg, now)
        elif p.kind == KIND_NOTIFICATION:
            self._server.notification_answered(p, msg)
        # KIND_SEPARATE: nobody waits for the ACK of a separate response.

    def _gave_up(self, p: Pending) -> None:
        if p.kind == KIND_REQUEST:
            self._client.request_gave_up(p)
        elif p.kind == KIND_NOTIFICATION:
            self._server.notification_gave_up(p)

    # ------------------------------------------------------------------ server API
    def respond(
        self,
        request_id: int,
        code: int,
        payload: bytes = b"",
        content_format: int | None = None,
        *,
        options: Sequence[Option] = (),
        observe: bool = False,
        now: float = 0.0,
        remember: bool | None = None,
    ) -> int | None:
        """Answer a ``RequestReceived``; returns the observation id if a registration was
        accepted. See :meth:`edgerm.coap.server.ServerSide.respond` (which instances call
        directly, see ``__init__``)."""
        return self._server.respond(request_id, code, payload, content_format, options=options,
                                    observe=observe, now=now, remember=remember)

    def notify(
        self,
        observation_id: int,
        code: int = Code.CONTENT,
        payload: bytes = b"",
        content_format: int | None = None,
        *,
        confirmable: bool | None = None,
        options: Sequence[Option] = (),
        now: float = 0.0,
    ) -> bool:
        """Send a notification to one observer; False if it is already gone. See
        :meth:`edgerm.coap.server.ServerSide.notify`."""
        return self._server.notify(observation_id, code, payload, content_format,
                                   confirmable=confirmable, options=options, now=now)

    def end_observation(self, observation_id: int) -> None:
        """Forget an observer without telling it (it re-registers or times out on its side)."""
        self._server.end_observation(observation_id)

    @property
    def observer_count(self) -> int:
        return self._server.observer_count

    # ------------------------------------------------------------------ client API
    def request(
        self,
        remote: Addr,
        method: int,
        path: Sequence[str] = (),
        payload: bytes = b"",
        *,
        content_format: int | None = None,
        accept: int | None = None,
        query: Sequence[str] = (),
        confirmable: bool = True,
        token: bytes | None = None,
        token_length: int | None = None,
        block_size: int | None = None,
        observe: bool = False,
        options: Sequence[Option] = (),
    ) -> int:
        """Start a request; returns its id, which the events about it carry. See
        :meth:`edgerm.coap.client.ClientSide.request`."""
        return self._client.request(
            remote, method, path, payload, content_format=content_format, accept=accept,
            query=query, confirmable=confirmable, token=token, token_length=token_length,
            block_size=block_size, observe=observe, options=options)

    def cancel_request(self, request_id: int, *, deregister: bool = False) -> None:
        """Stop a request or observation. With ``deregister``, an active observation is
        cancelled explicitly with Observe=1 (RFC 7641 §3.6) instead of by a later RST."""
        self._client.cancel_request(request_id, deregister=deregister)

    @property
    def outstanding_requests(self) -> int:
        return self._client.outstanding_requests

    @property
    def dedup_size(self) -> int:
        return len(self._messages.dedup)


__all__ = ["CoapEndpoint", "CoapStats"]
