"""The CoAP message layer (RFC 7252 §4), sans-IO: everything that deals in message types or ids.

Like aiocoap's ``messagemanager`` and aioquic's ``recovery``, this layer knows nothing of
requests, tokens or resources. It owns:

* **message ids** of everything we send (:meth:`MessageLayer.new_mid`);
* **retransmission** of our CON messages (:class:`Pending`): ACK_TIMEOUT × U(1,
  ACK_RANDOM_FACTOR), doubling, MAX_RETRANSMIT times, then given up after one more timeout.
  The timer of a new CON starts when the shell pulls it in :meth:`datagrams_to_send`, so the
  first timeout is measured from the moment it really leaves;
* **ACK/RST matching**: :meth:`match` pops the :class:`Pending` an ACK or RST answers; the
  endpoint hands it to the owner named by its ``kind``;
* **deduplication** of what we receive (RFC 7252 §4.5), in a
  :class:`~edgerm.coap.dedup.DedupTable`;
* the **outgoing datagram list** every layer appends to, and the counters (:class:`CoapStats`).

The client and server layers (:mod:`edgerm.coap.client`, :mod:`edgerm.coap.server`) hold a
reference to one ``MessageLayer`` and to its ``out`` list; the list object is never replaced.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edgerm.coap.codes import RST
from edgerm.coap.config import CoapConfig
from edgerm.coap.dedup import DedupTable
from edgerm.coap.events import Addr
from edgerm.coap.message import Message, encode_empty

# Who owns a retransmitted message, so its ACK, RST or timeout reaches the right layer.
KIND_REQUEST = 0  # a request of ours (client layer; ``ref`` is its ClientRequest)
KIND_NOTIFICATION = 1  # an Observe notification (server layer; ``ref`` is the observer id)
KIND_SEPARATE = 2  # a separate response (server layer; nobody waits for its ACK)

# Housekeeping (dedup expiry) is batched: the timer fires this long after the oldest entry is
# due, so a busy server purges thousands of entries per wake-up instead of one.
HOUSEKEEPING_SLACK = 1.0


@dataclass
class CoapStats:
    """Counters for everything the endpoint dropped, refused or repeated."""

    received: int = 0
    malformed: int = 0
    duplicates: int = 0
    dedup_evicted: int = 0
    resets_sent: int = 0
    bad_options: int = 0
    too_large: int = 0
    block_errors: int = 0
    retransmissions: int = 0
    gave_up: int = 0
    unmatched: int = 0
    ignored: int = 0


class Pending:
    """A CON message of ours awaiting ACK or RST."""

    __slots__ = ("remote", "mid", "data", "kind", "ref", "count", "timeout", "deadline", "done")

    def __init__(self, remote: Addr, mid: int, data: bytes, kind: int, ref: Any) -> None:
        self.remote = remote
        self.mid = mid
        self.data = data
        self.kind = kind
        #: The owner's handle on this message (see the ``KIND_*`` constants).
        self.ref = ref
        #: Retransmissions so far; a replacing notification inherits it (RFC 7641 §4.5.2).
        self.count = 0
        self.timeout = 0.0
        self.deadline = 0.0
        #: Acknowledged, reset, given up or cancelled: its timer entry is skipped lazily.
        self.done = False


class MessageLayer:
    """Message ids, retransmission, ACK/RST matching and deduplication for one endpoint.

    Args:
      config: tunables (ACK_TIMEOUT, MAX_RETRANSMIT, dedup bounds, EXCHANGE_LIFETIME).
      rng: draws the first message id here, retransmission jitter later.
      stats: the endpoint's counters, shared with the other layers.
    """

    def __init__(self, config: CoapConfig, rng: random.Random, stats: CoapStats) -> None:
        self.config = config
        self._rng = rng
        self.stats = stats
        self._next_mid = rng.randrange(65536)
        #: Datagrams to send, appended to by every layer; emptied by ``datagrams_to_send``.
        self.out: list[tuple[bytes, Addr]] = []
        self._new_pending: list[Pending] = []
        #: (peer, mid) -> bytes we answered (None while the handler runs).
        self.dedup = DedupTable(config.max_dedup_entries, config.max_dedup_per_peer,
                                config.exchange_lifetime)
        self._pending: dict[tuple[Addr, int], Pending] = {}
        self._timers: list[tuple[float, int, Pending]] = []
        self._timer_seq = 0
        #: Incremented whenever something is scheduled that may make the endpoint's
        #: ``get_timer()`` earlier; the other layers bump it too.
        self.timer_generation = 0

    # ------------------------------------------------------------------ sending
    def new_mid(self) -> int:
        mid = self._next_mid
        self._next_mid = (mid + 1) & 0xFFFF
        return mid

    def add_pending(self, p: Pending) -> None:
        """Send ``p`` reliably: it goes out with the next ``datagrams_to_send``."""
        self._pending[(p.remote, p.mid)] = p
        self._new_pending.append(p)
        self.timer_generation += 1

    def cancel_pending(self, p: Pending) -> None:
        """Stop retransmitting ``p`` (answered otherwise, replaced or no longer wanted)."""
        p.done = True
        if self._pending.get((p.remote, p.mid)) is p:
            del self._pending[(p.remote, p.mid)]

    def send_rst(self, mid: int, remote: Addr) -> None:
        self.stats.resets_sent += 1
        self.out.append((encode_empty(RST, mid), remote))

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Addr]]:
        """Datagrams to send now; arms retransmission timers of new CON messages from ``now``."""
        out = self.out
        if self._new_pending:
            cfg = self.config
            lo, hi = cfg.ack_timeout, cfg.ack_timeout * cfg.ack_random_factor
            for p in self._new_pending:
                if p.done:
                    continue
                p.timeout = self._rng.uniform(lo, hi) * (1 << p.count)
                p.deadline = now + p.timeout
                self._push_timer(p)
                out.append((p.data, p.remote))
            self._new_pending = []
        if not out:
            return []
        datagrams = out.copy()
        out.clear()
        return datagrams

    def _push_timer(self, p: Pending) -> None:
        self._timer_seq += 1
        heapq.heappush(self._timers, (p.deadline, self._timer_seq, p))

    # ------------------------------------------------------------------ timer
    def next_deadline(self) -> float | None:
        """The earliest retransmission or (batched) dedup expiry, or ``None``."""
        timers = self._timers
        while timers and timers[0][2].done:
            heapq.heappop(timers)
        when = timers[0][0] if timers else None
        dedup_due = self.dedup.next_deadline()
        if dedup_due is not None:
            dedup_due += HOUSEKEEPING_SLACK
            if when is None or dedup_due < when:
                when = dedup_due
        return when

    def retransmit(self, now: float, gave_up: Callable[[Pending], None]) -> None:
        """Retransmit every CON message due by ``now``; hand the exhausted ones to ``gave_up``
        (at once, so what it cancels is not retransmitted in the same run)."""
        timers = self._timers
        max_retransmit = self.config.max_retransmit
        while timers and timers[0][0] <= now:
            _, _, p = heapq.heappop(timers)
            if p.done:
                continue
            if p.count >= max_retransmit:
                self._pending.pop((p.remote, p.mid), None)
                p.done = True
                self.stats.gave_up += 1
                gave_up(p)
            else:
                p.count += 1
                p.timeout *= 2
                p.deadline = now + p.timeout
                self._push_timer(p)
                self.out.append((p.data, p.remote))
                self.stats.retransmissions += 1

    # ------------------------------------------------------------------ receiving
    def match(self, msg: Message, remote: Addr) -> Pending | None:
        """The CON message of ours that the ACK or RST ``msg`` answers, now done; or ``None``."""
        p = self._pending.pop((remote, msg.mid), None)
        if p is not None:
            p.done = True
        return p

    def answered_duplicate(self, key: tuple[Addr, int], remote: Addr) -> bool:
        """True if (peer, message id) was seen within EXCHANGE_LIFETIME: the cached answer (if
        there is one yet) goes out again and nothing else happens (RFC 7252 §4.5)."""
        entry = self.dedup.entries.get(key)
        if entry is None:
            return False
        self.stats.duplicates += 1
        cached = entry[1]
        if cached:
            self.out.append((cached, remote))
        return True

    def remember(self, key: tuple[Addr, int], now: float, data: bytes | None = None) -> None:
        """Keep (peer, message id) for duplicates, with the answer ``data`` if known yet."""
        dedup = self.dedup
        if not dedup.entries:
            self.timer_generation += 1  # the first entry arms the expiry timer
        dedup.add(key, now, data)
        self.stats.dedup_evicted = dedup.evicted


__all__ = ["CoapStats", "HOUSEKEEPING_SLACK", "KIND_NOTIFICATION", "KIND_REQUEST",
           "KIND_SEPARATE", "MessageLayer", "Pending"]
