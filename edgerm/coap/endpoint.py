"""The CoAP message layer and request/response layer, sans-IO: one endpoint, client and server.

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

What lives here (RFC 7252 §4, RFC 7959, RFC 7641):

* **Deduplication**: every CON/NON we receive is remembered by (peer, message id) for
  EXCHANGE_LIFETIME together with the bytes we answered; a duplicate gets those bytes again
  and is otherwise ignored. A request answered with an error (4.xx/5.xx) is not remembered (a
  duplicate is processed again and gets the same error), and the table is bounded per peer
  and in total by evicting, never by refusing: see :mod:`edgerm.coap.dedup`.
* **Retransmission**: each CON we send is retransmitted after ACK_TIMEOUT × U(1,
  ACK_RANDOM_FACTOR), doubling, MAX_RETRANSMIT times, then given up after one more timeout.
* **Responses**: piggybacked on the ACK if the application answers before
  ``empty_ack_delay``, else an Empty ACK first and a separate CON response.
* **Token matching** for our own requests, **block-wise** in both directions (transparent to
  the application), **Observe** on both sides.

Bad input never raises out of ``receive_datagram``: malformed CON gets RST, other malformed
messages are dropped; all are counted in :attr:`CoapEndpoint.stats`.
"""

from __future__ import annotations

import heapq
import random
from collections import OrderedDict, deque
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, fields
from typing import Any

from edgerm.coap.blockwise import COMPLETE, CONTINUE, Block1Assembler, Block2Cache, slice_block
from edgerm.coap.codes import ACK, CON, NON, RST, Code, is_success
from edgerm.coap.config import CoapConfig
from edgerm.coap.dedup import DedupTable
from edgerm.coap.errors import CoapLocalError, CoapWireError
from edgerm.coap.events import (
    Addr,
    Event,
    ObserverGone,
    RequestFailed,
    RequestReceived,
    ResponseReceived,
)
from edgerm.coap.message import (
    Message,
    Option,
    decode_message_untrusted,
    encode_empty,
    encode_message,
)
from edgerm.coap.observe import Observer, ObserverRegistry
from edgerm.coap.options import (
    ACCEPT,
    BLOCK1,
    BLOCK2,
    CONTENT_FORMAT,
    OBSERVE,
    OBSERVE_SEQ_MODULUS,
    SIZE1,
    SIZE2,
    URI_HOST,
    URI_PATH,
    URI_PORT,
    URI_QUERY,
    BlockValue,
    decode_block,
    encode_uint,
    observe_is_fresher,
    size_to_szx,
    szx_to_size,
)

# Kinds of retransmitted messages, so an ACK/RST/timeout reaches the right owner.
_REQUEST = 0
_NOTIFICATION = 1
_SEPARATE = 2

# Housekeeping (dedup expiry) is batched: the timer fires this long after the oldest entry is
# due, so a busy server purges thousands of entries per wake-up instead of one.
_HOUSEKEEPING_SLACK = 1.0
# Message ids of recent NON notifications, so a RST to one still tells us the observer is
# gone; older ones are forgotten first.
_MAX_NON_NOTIFICATIONS = 4096
_CON_NON = (CON, NON)
# Encoded Content-Format values that are on every response (CBOR, text, link-format, JSON).
_CF_CACHE = {cf: encode_uint(cf) for cf in (0, 40, 42, 50, 60)}


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

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class _Pending:
    """A CON message of ours awaiting ACK or RST."""

    __slots__ = ("remote", "mid", "data", "kind", "ref", "count", "timeout", "deadline", "done")

    def __init__(self, remote: Addr, mid: int, data: bytes, kind: int, ref: Any) -> None:
        self.remote = remote
        self.mid = mid
        self.data = data
        self.kind = kind
        self.ref = ref
        self.count = 0
        self.timeout = 0.0
        self.deadline = 0.0
        self.done = False


class _Exchange:
    """Server-side state of one request between ``RequestReceived`` and ``respond()``."""

    __slots__ = ("event", "mid", "token", "key", "acked", "block2", "block1", "cache_key")

    def __init__(self, event: RequestReceived, mid: int, token: bytes, key: tuple[Addr, int],
                 block2: BlockValue | None, block1: BlockValue | None,
                 cache_key: Hashable) -> None:
        self.event = event
        self.mid = mid
        self.token = token
        self.key = key
        self.acked = False
        self.block2 = block2
        self.block1 = block1
        self.cache_key = cache_key


class _ClientRequest:
    """Client-side state of one request (or observation) across its block-wise exchanges."""

    __slots__ = ("id", "remote", "method", "base_options", "payload", "token", "sub_token",
                 "confirmable", "observe", "observing", "b1_szx", "b1_offset", "b1_active",
                 "b2_buf", "pending", "last_seq", "last_time", "discard", "notif")

    def __init__(self, rid: int, remote: Addr, method: int, base_options: list[Option],
                 payload: bytes, token: bytes, confirmable: bool, observe: bool) -> None:
        self.id = rid
        self.remote = remote
        self.method = method
        self.base_options = base_options
        self.payload = payload
        self.token = token
        self.sub_token: bytes | None = None
        self.confirmable = confirmable
        self.observe = observe
        self.observing = False
        self.b1_szx = 6
        self.b1_offset = 0
        self.b1_active = False
        self.b2_buf: bytearray | None = None
        self.pending: _Pending | None = None
        self.last_seq = -1
        self.last_time = 0.0
        self.discard = False
        # (observe seq, code, content format, options) of the notification being completed
        # by Block2 follow-ups.
        self.notif: tuple[int | None, list[Option]] | None = None


class CoapEndpoint:
    """A sans-IO CoAP endpoint; see the module docstring for how to drive it.

    Args:
      config: tunables; defaults are RFC 7252's.
      rng: source of message ids, tokens and retransmission jitter. Seed it in tests.
    """

    def __init__(self, config: CoapConfig | None = None, *, rng: random.Random | None = None):
        self.config = cfg = config or CoapConfig()
        self._rng = rng or random.Random()
        self._next_mid = self._rng.randrange(65536)
        self._events: deque[Event] = deque()
        self._out: list[tuple[bytes, Addr]] = []
        self._new_pending: list[_Pending] = []
        self.stats = CoapStats()
        # Constants looked up per datagram, cached as attributes.
        self._empty_ack_delay = cfg.empty_ack_delay
        self._pref_szx = cfg.block_szx
        self._pref_size = cfg.block_size
        self._max_datagram = cfg.max_datagram_size
        self._max_payload = cfg.max_request_payload
        # Deduplication: (peer, mid) -> bytes we answered (None while the handler runs).
        self._dedup = DedupTable(cfg.max_dedup_entries, cfg.max_dedup_per_peer,
                                 cfg.exchange_lifetime)
        # Server side.
        self._next_request_id = 1
        self._exchanges: dict[int, _Exchange] = {}
        self._empty_ack_fifo: deque[tuple[float, int]] = deque()
        self._block1 = Block1Assembler(cfg)
        self._block2 = Block2Cache(cfg)
        self._observers = ObserverRegistry(cfg.max_observers)
        self._observe_seq = self._rng.randrange(OBSERVE_SEQ_MODULUS)
        self._non_notifications: OrderedDict[tuple[Addr, int], int] = OrderedDict()
        # Retransmission.
        self._pending: dict[tuple[Addr, int], _Pending] = {}
        self._timers: list[tuple[float, int, _Pending]] = []
        #: Incremented whenever something is scheduled that may make ``get_timer()`` earlier;
        #: a shell can skip re-reading the timer when it has not changed.
        self.timer_generation = 0
        self._timer_seq = 0
        # Client side.
        self._requests: dict[int, _ClientRequest] = {}
        self._tokens: dict[tuple[Addr, bytes], _ClientRequest] = {}

    # ------------------------------------------------------------------ pulled outputs
    def next_event(self) -> Event | None:
        events = self._events
        return events.popleft() if events else None

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Addr]]:
        """Datagrams to send now; arms retransmission timers of new CON messages from ``now``."""
        if self._new_pending:
            cfg = self.config
            lo, hi = cfg.ack_timeout, cfg.ack_timeout * cfg.ack_random_factor
            for p in self._new_pending:
                if p.done:
                    continue
                p.timeout = self._rng.uniform(lo, hi) * (1 << p.count)
                p.deadline = now + p.timeout
                self._push_timer(p)
                self._out.append((p.data, p.remote))
            self._new_pending = []
        out = self._out
        self._out = []
        return out

    def get_timer(self) -> float | None:
        """The earliest absolute time at which ``handle_timer`` has work, or ``None``."""
        when: float | None = None
        timers = self._timers
        while timers and timers[0][2].done:
            heapq.heappop(timers)
        if timers:
            when = timers[0][0]
        fifo = self._empty_ack_fifo
        exchanges = self._exchanges
        # Answered requests are the common case: drop them from the head lazily so a busy
        # server arms no timer for them at all.
        while fifo and fifo[0][1] not in exchanges:
            fifo.popleft()
        if fifo and (when is None or fifo[0][0] < when):
            when = fifo[0][0]
        dedup_due = self._dedup.next_deadline()
        for t in (
            None if dedup_due is None else dedup_due + _HOUSEKEEPING_SLACK,
            self._block1.next_deadline(),
            self._block2.next_deadline(),
        ):
            if t is not None and (when is None or t < when):
                when = t
        return when

    def handle_timer(self, now: float) -> None:
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
                self._on_gave_up(p)
            else:
                p.count += 1
                p.timeout *= 2
                p.deadline = now + p.timeout
                self._push_timer(p)
                self._out.append((p.data, p.remote))
                self.stats.retransmissions += 1
        fifo = self._empty_ack_fifo
        while fifo and fifo[0][0] <= now:
            _, rid = fifo.popleft()
            ex = self._exchanges.get(rid)
            if ex is not None and not ex.acked:
                ex.acked = True
                ack = encode_empty(ACK, ex.mid)
                self._dedup.answer(ex.key, ack)
                self._out.append((ack, ex.event.remote))
        self._dedup.expire(now)
        self._block1.expire(now)
        self._block2.expire(now)

    # ------------------------------------------------------------------ datagram input
    def receive_datagram(self, data: bytes, remote: Addr, now: float) -> None:
        """Feed one datagram from ``remote``. Never raises on bad input; counts it instead."""
        self.stats.received += 1
        try:
            msg = decode_message_untrusted(data)
        except CoapWireError as exc:
            self.stats.malformed += 1
            if exc.mtype == CON and exc.mid is not None:
                # RFC 7252 §4.2: a CON that cannot be processed is rejected with RST.
                self._send_rst(exc.mid, remote)
            return
        code = msg.code
        mtype = msg.mtype
        if 0 < code < 32:
            if mtype in _CON_NON:
                self._on_request(msg, remote, now, len(data))
            else:
                self.stats.malformed += 1  # a request in an ACK or RST is a format error
        elif code == 0:
            if mtype == CON:
                self._send_rst(msg.mid, remote)  # CoAP ping (§4.3)
            elif mtype != NON:
                self._on_ack_or_rst(msg, remote, now)
            else:
                self.stats.ignored += 1
        elif (code >> 5) in (2, 4, 5):
            if mtype == ACK:
                self._on_ack_or_rst(msg, remote, now)
            elif mtype == RST:
                self.stats.malformed += 1  # RST must be Empty
            else:
                self._on_separate_response(msg, remote, now)
        else:
            # Reserved classes 1, 3, 6, 7 (§12.1): a message format error.
            self.stats.malformed += 1
            if mtype == CON:
                self._send_rst(msg.mid, remote)

    # ------------------------------------------------------------------ server side
    def _answered_duplicate(self, key: tuple[Addr, int], remote: Addr) -> bool:
        """True if (peer, message id) was seen within EXCHANGE_LIFETIME: the cached answer (if
        there is one yet) goes out again and nothing else happens (RFC 7252 §4.5)."""
        entry = self._dedup.entries.get(key)
        if entry is None:
            return False
        self.stats.duplicates += 1
        cached = entry[1]
        if cached:
            self._out.append((cached, remote))
        return True

    def _on_request(self, msg: Message, remote: Addr, now: float, size: int) -> None:
        key = (remote, msg.mid)
        if self._answered_duplicate(key, remote):
            return
        # The request is remembered only once it is known to be worth it: a success answered
        # from here (_reply) or a request handed to the application (below). A request refused
        # by the checks in between leaves no state behind.
        # Lift the options the request layer needs; anything critical we do not implement, a
        # value of the wrong length, or a repeated critical option is a Bad Option (§5.4).
        path: list[bytes] = []
        query: list[bytes] = []
        cf = accept = observe = size1 = None
        block1 = block2 = None
        bad = 0
        prev = -1
        # Hot loop: option numbers are literals (a global lookup per comparison costs more than
        # the rest of the loop); the names are in the comments and in options.py.
        for num, val in msg.options:
            if num == 11:  # Uri-Path
                if len(val) > 255:
                    bad = num
                path.append(val)
            elif num == 12:  # Content-Format
                if len(val) <= 2 and num != prev:
                    cf = int.from_bytes(val, "big")
            elif num == 15:  # Uri-Query
                if len(val) > 255:
                    bad = num
                query.append(val)
            elif num == 6:  # Observe
                if len(val) <= 3 and num != prev:
                    observe = int.from_bytes(val, "big")
            elif num == 17:  # Accept
                if len(val) > 2 or num == prev:
                    bad = num
                accept = int.from_bytes(val, "big")
            elif num == 23 or num == 27:  # Block2, Block1
                value = decode_block(val)
                if value is None or num == prev:
                    bad = num
                elif num == 23:
                    block2 = value
                else:
                    block1 = value
            elif num == 60:  # Size1
                if len(val) <= 4:
                    size1 = int.from_bytes(val, "big")
            elif num == 3 or num == 7:  # Uri-Host, Uri-Port
                if num == prev or len(val) > (255 if num == 3 else 2):
                    bad = num
            elif num == 35 or num == 39:  # Proxy-Uri, Proxy-Scheme
                self._reply(msg, remote, key, now, Code.PROXYING_NOT_SUPPORTED)
                return
            elif num & 1:
                bad = num
            prev = num
        if bad:
            self.stats.bad_options += 1
            self._reply(msg, remote, key, now, Code.BAD_OPTION,
                        f"bad or unsupported critical option {bad}".encode())
            return
        try:
            spath = tuple([p.decode() for p in path])
            squery = tuple([q.decode() for q in query])
        except UnicodeDecodeError:
            self._reply(msg, remote, key, now, Code.BAD_REQUEST, b"Uri-Path/Query is not UTF-8")
            return
        method = msg.code
        payload = msg.payload
        cfg = self.config
        if size > self._max_datagram and block1 is None:
            self.stats.too_large += 1
            self._reply(msg, remote, key, now, Code.REQUEST_ENTITY_TOO_LARGE, b"",
                        [(SIZE1, encode_uint(cfg.max_request_payload)),
                         (BLOCK1, BlockValue(0, False, self._pref_szx).encode())])
            return
        if block1 is not None:
            result = self._block1.receive((remote, method, tuple(path), tuple(query)), block1,
                                          payload, size1, now)
            if result.status == CONTINUE:
                self.timer_generation += 1
                self._reply(msg, remote, key, now, Code.CONTINUE, b"",
                            [(BLOCK1, BlockValue(block1.num, True, result.value).encode())])
                return
            if result.status != COMPLETE:
                self.stats.block_errors += 1
                extra: list[Option] = []
                if result.value == Code.REQUEST_ENTITY_TOO_LARGE:
                    self.stats.too_large += 1
                    extra = [(SIZE1, encode_uint(cfg.max_request_payload))]
                self._reply(msg, remote, key, now, result.value, result.payload, extra)
                return
            payload = result.payload
            block1 = BlockValue(block1.num, False, result.value)
        elif len(payload) > self._max_payload:
            self.stats.too_large += 1
            self._reply(msg, remote, key, now, Code.REQUEST_ENTITY_TOO_LARGE, b"",
                        [(SIZE1, encode_uint(cfg.max_request_payload))])
            return

        cache_key: Hashable = None
        if block2 is not None or observe is not None:
            cache_key = (remote, method, spath, squery, payload if method == 5 else b"")
        if block2 is not None and block2.num > 0:
            rep = self._block2.get(cache_key, now)
            if rep is not None:
                # A follow-up block of a representation we already hold: answer from the cache
                # so every block comes from the same version of the resource.
                opts = [o for o in rep.options if o[0] != OBSERVE]
                code, body, opts = self._block2_slice(rep.code, rep.payload, opts, block2)
                self._reply(msg, remote, key, now, code, body, opts)
                return
        if observe is not None and (method == 1 or method == 5):  # GET, FETCH
            old = self._observers.find(remote, msg.token)
            if old is not None:
                # Observe=1 deregisters; Observe=0 with the same token re-registers, which ends
                # the old registration first (RFC 7641 §3.6, §4.1).
                self._end_observer(old, "deregistered")
        else:
            observe = None
        self._remember(key, now)
        rid = self._next_request_id
        self._next_request_id = rid + 1
        event = RequestReceived(rid, remote, method, spath, squery, payload, cf, accept, observe,
                                msg.mtype == 0, msg.options)
        self._exchanges[rid] = _Exchange(event, msg.mid, msg.token, key, block2, block1,
                                         cache_key)
        if msg.mtype == 0:  # CON
            if not self._empty_ack_fifo:
                self.timer_generation += 1
            self._empty_ack_fifo.append((now + self._empty_ack_delay, rid))
        self._events.append(event)

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
        """Answer a :class:`RequestReceived`.

        Args:
          request_id: from the event.
          code: response code.
          payload: the whole body; if it is larger than the negotiated block size it is sent
            block-wise (Block2) and cached for the follow-up block requests.
          content_format: Content-Format option value, if any.
          options: further options to include.
          observe: accept an Observe registration (the request had Observe=0).
          now: current time; needed only to time-stamp a cached Block2 representation.
          remember: keep the response for duplicates of the request. ``None`` (default): only
            a success is kept, a duplicate of a request answered 4.xx/5.xx is processed again.
            ``True`` for an error whose processing changed state (so running it again would
            answer differently); ``False`` to keep nothing.

        Returns:
          The observation id if a registration was accepted, else ``None`` (not requested,
          error response, or the observer limit was reached — then the response carries no
          Observe option, which is how RFC 7641 §4.1 declines).
        """
        ex = self._exchanges.pop(request_id, None)
        if ex is None:
            raise CoapLocalError(f"no pending request {request_id}")
        event = ex.event
        opts = list(options)
        if content_format is not None:
            opts.append((12, _CF_CACHE.get(content_format) or encode_uint(content_format)))
        obs_id: int | None = None
        szx = self._pref_szx if ex.block2 is None else min(ex.block2.szx, self._pref_szx)
        if observe and event.observe == 0 and (code >> 5) == 2:
            ob = self._observers.add(event.remote, ex.token, ex.cache_key, szx)
            if ob is not None:
                obs_id = ob.id
                opts.append((OBSERVE, encode_uint(self._bump_seq())))
        if ex.block1 is not None:
            opts.append((BLOCK1, ex.block1.encode()))
        if ex.block2 is not None or len(payload) > (1 << (szx + 4)):
            if len(payload) > (1 << (szx + 4)):
                self._block2.put(ex.cache_key if ex.cache_key is not None else
                                 (event.remote, event.method, event.path, event.query, b""),
                                 code, payload, opts, now)
                self.timer_generation += 1
            code, payload, opts = self._block2_slice(code, payload, opts,
                                                     ex.block2 or BlockValue(0, False, szx))
        mid = ex.mid
        remote = event.remote
        # An error is not remembered: a duplicate is processed again (module docstring).
        if remember is None:
            remember = code < 128
        if event.confirmable:
            if not ex.acked:
                data = encode_message(2, code, mid, ex.token, opts, payload)  # ACK
                if remember:
                    self._dedup.answer(ex.key, data)
                else:
                    self._dedup.forget(ex.key)
                self._out.append((data, remote))
            else:
                # Separate response (§5.2.2): its own CON exchange, retransmitted until ACKed.
                mid = self._new_mid()
                data = encode_message(CON, code, mid, ex.token, opts, payload)
                self._add_pending(_Pending(remote, mid, data, _SEPARATE, None))
        else:
            data = encode_message(NON, code, self._new_mid(), ex.token, opts, payload)
            if remember:
                self._dedup.answer(ex.key, data)
            else:
                self._dedup.forget(ex.key)
            self._out.append((data, remote))
        return obs_id

    def _block2_slice(self, code: int, payload: bytes, opts: list[Option],
                      block2: BlockValue) -> tuple[int, bytes, list[Option]]:
        szx = min(block2.szx, self._pref_szx)
        # If we answer with a smaller block than asked, the same offset is a larger number.
        num = block2.offset >> (szx + 4)
        sliced = slice_block(payload, num, szx)
        if sliced is None:
            self.stats.block_errors += 1
            return Code.BAD_OPTION, b"block number out of range", []
        body, more = sliced
        opts = [o for o in opts if o[0] != BLOCK2]
        opts.append((BLOCK2, BlockValue(num, more, szx).encode()))
        if num == 0 and more:
            opts.append((SIZE2, encode_uint(len(payload))))
        return code, body, opts

    def _reply(self, msg: Message, remote: Addr, key: tuple[Addr, int], now: float, code: int,
               payload: bytes = b"", options: Sequence[Option] = ()) -> None:
        """Answer a request from inside the core (errors, 2.31, cached blocks); a success is
        remembered for duplicates, an error is not (nothing was done; doing nothing again is
        the same)."""
        if msg.mtype == CON:
            data = encode_message(ACK, code, msg.mid, msg.token, options, payload)
        else:
            data = encode_message(NON, code, self._new_mid(), msg.token, options, payload)
        if code < 128:
            self._remember(key, now, data)
        self._out.append((data, remote))

    def _remember(self, key: tuple[Addr, int], now: float, data: bytes | None = None) -> None:
        dedup = self._dedup
        if not dedup.entries:
            self.timer_generation += 1  # the first entry arms the expiry timer
        dedup.add(key, now, data)
        self.stats.dedup_evicted = dedup.evicted

    def _send_rst(self, mid: int, remote: Addr) -> None:
        self.stats.resets_sent += 1
        self._out.append((encode_empty(RST, mid), remote))

    # ------------------------------------------------------------------ Observe, server side
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
        """Send a notification to one observer. Returns False if it is already gone.

        A non-2.xx code ends the observation (RFC 7641 §3.2) and emits
        ``ObserverGone(reason="ended")``. A CON notification sent while an earlier one is still
        unacknowledged replaces it and inherits its retransmission count (§4.5.2).
        """
        ob = self._observers.by_id.get(observation_id)
        if ob is None:
            return False
        opts = list(options)
        if content_format is not None:
            opts.append((CONTENT_FORMAT, encode_uint(content_format)))
        final = not is_success(code)
        if not final:
            opts.append((OBSERVE, encode_uint(self._bump_seq())))
        if len(payload) > (1 << (ob.szx + 4)):
            self._block2.put(ob.cache_key, code, payload, opts, now)
            self.timer_generation += 1
            code, payload, opts = self._block2_slice(code, payload, opts,
                                                     BlockValue(0, False, ob.szx))
        mid = self._new_mid()
        con = self.config.notify_confirmable if confirmable is None else confirmable
        msg_type = CON if con else NON
        data = encode_message(msg_type, code, mid, ob.token, opts, payload)
        count = 0
        if ob.pending is not None and not ob.pending.done:
            count = ob.pending.count
            self._cancel_pending(ob.pending)
            ob.pending = None
        if con:
            p = _Pending(ob.remote, mid, data, _NOTIFICATION, ob.id)
            p.count = count
            if not final:
                ob.pending = p
            self._add_pending(p)
        else:
            self._out.append((data, ob.remote))
            nn = self._non_notifications
            nn[(ob.remote, mid)] = ob.id
            if len(nn) > _MAX_NON_NOTIFICATIONS:
                nn.popitem(last=False)
        if final:
            self._end_observer(ob, "ended")
        return True

    def end_observation(self, observation_id: int) -> None:
        """Forget an observer without telling it (it re-registers or times out on its side)."""
        ob = self._observers.by_id.get(observation_id)
        if ob is not None:
            self._end_observer(ob, "ended")

    def _end_observer(self, ob: Observer, reason: str) -> None:
        if self._observers.remove(ob.id) is None:
            return
        if ob.pending is not None:
            self._cancel_pending(ob.pending)
        self._events.append(ObserverGone(ob.id, ob.remote, reason))

    def _bump_seq(self) -> int:
        self._observe_seq = (self._observe_seq + 1) % OBSERVE_SEQ_MODULUS
        return self._observe_seq

    @property
    def observer_count(self) -> int:
        return len(self._observers)

    # ------------------------------------------------------------------ ACK / RST
    def _on_ack_or_rst(self, msg: Message, remote: Addr, now: float) -> None:
        p = self._pending.pop((remote, msg.mid), None)
        if p is None:
            if msg.mtype == RST:
                oid = self._non_notifications.pop((remote, msg.mid), None)
                if oid is not None:
                    ob = self._observers.by_id.get(oid)
                    if ob is not None:
                        self._end_observer(ob, "reset")
                    return
            self.stats.unmatched += 1
            return
        p.done = True
        if p.kind == _REQUEST:
            req: _ClientRequest = p.ref
            if self._requests.get(req.id) is not req:
                return
            if msg.mtype == RST:
                self._fail(req, "reset")
            elif msg.code != 0:
                if msg.token == req.token or msg.token == req.sub_token:
                    self._on_response(req, msg, now)
                else:
                    self.stats.unmatched += 1
            # An Empty ACK: the response will come separately; keep waiting.
        elif p.kind == _NOTIFICATION:
            ob = self._observers.by_id.get(p.ref)
            if ob is None:
                return
            if msg.mtype == RST:
                self._end_observer(ob, "reset")
            elif ob.pending is p:
                ob.pending = None

    def _on_gave_up(self, p: _Pending) -> None:
        if p.kind == _REQUEST:
            req: _ClientRequest = p.ref
            if self._requests.get(req.id) is req:
                self._fail(req, "timeout")
        elif p.kind == _NOTIFICATION:
            ob = self._observers.by_id.get(p.ref)
            if ob is not None:
                self._end_observer(ob, "timeout")

    # ------------------------------------------------------------------ client side
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
        """Start a request; returns its id. Results arrive as events with that id.

        Only the options asked for are sent (Uri-Path, Uri-Query, Content-Format, Accept, extra
        ``options``), so a heartbeat stays within its datagram budget. ``block_size`` sets the
        Block1 size for a large payload and, if given, asks the server for Block2 responses of
        that size from the first request on (early negotiation, RFC 7959 §2.4).
        """
        if token is None:
            token = self._new_token(remote, self.config.token_length if token_length is None
                                    else token_length)
        elif (remote, token) in self._tokens:
            raise CoapLocalError("token already in use for this peer")
        base: list[Option] = [(URI_PATH, seg.encode()) for seg in path]
        base += [(URI_QUERY, q.encode()) for q in query]
        if content_format is not None:
            base.append((CONTENT_FORMAT, encode_uint(content_format)))
        if accept is not None:
            base.append((ACCEPT, encode_uint(accept)))
        base += options
        rid = self._next_request_id
        self._next_request_id = rid + 1
        req = _ClientRequest(rid, remote, method, base, payload, token, confirmable, observe)
        self._requests[rid] = req
        self._tokens[(remote, token)] = req
        opts = list(base)
        if observe:
            opts.append((OBSERVE, b""))
        szx = size_to_szx(block_size) if block_size is not None else self._pref_szx
        req.b1_szx = szx
        if block_size is not None:
            opts.append((BLOCK2, BlockValue(0, False, szx).encode()))
        if len(payload) > szx_to_size(szx):
            req.b1_active = True
            self._send_block1(req, opts)
        else:
            self._send(req, req.token, opts, payload)
        return rid

    def cancel_request(self, request_id: int, *, deregister: bool = False) -> None:
        """Stop a request or observation. With ``deregister``, an active observation is
        cancelled explicitly with Observe=1 (RFC 7641 §3.6) instead of by a later RST."""
        req = self._requests.pop(request_id, None)
        if req is None:
            return
        self._forget(req)
        if deregister and req.observing:
            rid = self._next_request_id
            self._next_request_id = rid + 1
            dereg = _ClientRequest(rid, req.remote, req.method, req.base_options, req.payload,
                                   req.token, req.confirmable, False)
            dereg.discard = True
            self._requests[rid] = dereg
            self._tokens[(req.remote, req.token)] = dereg
            self._send(dereg, dereg.token, req.base_options + [(OBSERVE, b"\x01")],
                       req.payload)

    def _send(self, req: _ClientRequest, token: bytes, opts: list[Option],
              payload: bytes) -> None:
        mid = self._new_mid()
        if req.confirmable:
            data = encode_message(CON, req.method, mid, token, opts, payload)
            p = _Pending(req.remote, mid, data, _REQUEST, req)
            req.pending = p
            self._add_pending(p)
        else:
            self._out.append((encode_message(NON, req.method, mid, token, opts, payload),
                              req.remote))

    def _send_block1(self, req: _ClientRequest, opts: list[Option]) -> None:
        size = szx_to_size(req.b1_szx)
        num = req.b1_offset // size
        chunk = req.payload[req.b1_offset:req.b1_offset + size]
        more = req.b1_offset + size < len(req.payload)
        opts = opts + [(BLOCK1, BlockValue(num, more, req.b1_szx).encode())]
        if num == 0:
            opts.append((SIZE1, encode_uint(len(req.payload))))
        self._send(req, req.token, opts, chunk)

    def _on_separate_response(self, msg: Message, remote: Addr, now: float) -> None:
        key = (remote, msg.mid)
        if self._answered_duplicate(key, remote):
            return
        req = self._tokens.get((remote, msg.token))
        if req is None:
            # Nobody waits for this (e.g. a notification after we lost interest): RST tells the
            # server to stop (RFC 7641 §3.6).
            self.stats.unmatched += 1
            self._send_rst(msg.mid, remote)
            return
        self._remember(key, now, encode_empty(ACK, msg.mid) if msg.mtype == CON else b"")
        if msg.mtype == CON:
            self._out.append((encode_empty(ACK, msg.mid), remote))
        if req.pending is not None and not req.pending.done:
            # The response implies the ACK we may have missed.
            self._cancel_pending(req.pending)
        self._on_response(req, msg, now)

    def _on_response(self, req: _ClientRequest, msg: Message, now: float) -> None:
        code = msg.code
        cf: int | None = None
        seq: int | None = None
        b1 = b2 = None
        for num, val in msg.options:
            if num == CONTENT_FORMAT:
                cf = int.from_bytes(val, "big")
            elif num == OBSERVE:
                seq = int.from_bytes(val[:3], "big")
            elif num == BLOCK2:
                b2 = decode_block(val)
                if b2 is None:
                    self._fail(req, "bad Block2 option in response")
                    return
            elif num == BLOCK1:
                b1 = decode_block(val)
            elif num & 1 and num not in (URI_HOST, URI_PATH, URI_PORT, URI_QUERY, ACCEPT):
                self._fail(req, f"unknown critical option {num} in response")
                return
        via_observe_token = msg.token == req.token and req.observing
        if via_observe_token:
            # A notification (or the end of the observation).
            if seq is not None and is_success(code):
                if not observe_is_fresher(req.last_seq, req.last_time, seq, now):
                    self.stats.ignored += 1
                    return
                req.last_seq, req.last_time = seq, now
            req.b2_buf = None
            req.notif = None
            if req.sub_token is not None:
                self._tokens.pop((req.remote, req.sub_token), None)
                req.sub_token = None
        if req.b1_active:
            if b1 is not None and code == Code.CONTINUE:
                sent_size = szx_to_size(req.b1_szx)
                req.b1_offset = (b1.num + 1) * sent_size
                req.b1_szx = min(req.b1_szx, b1.szx)
                if req.b1_offset >= len(req.payload):
                    self._fail(req, "server asked for a block past the end")
                    return
                self._send_block1(req, self._first_options(req))
                return
            if (code == Code.REQUEST_ENTITY_TOO_LARGE and b1 is not None
                    and b1.szx < req.b1_szx and req.b1_offset == 0):
                # RFC 7959 §2.9.3: the server told us a block size it accepts; start over.
                req.b1_szx = b1.szx
                self._send_block1(req, self._first_options(req))
                return
            req.b1_active = False
        elif (code == Code.REQUEST_ENTITY_TOO_LARGE and b1 is not None
              and len(req.payload) > szx_to_size(b1.szx) and req.b2_buf is None):
            req.b1_szx = b1.szx
            req.b1_active = True
            req.b1_offset = 0
            self._send_block1(req, self._first_options(req))
            return
        payload = msg.payload
        if b2 is not None and is_success(code):
            if b2.num == 0:
                req.b2_buf = bytearray()
                if seq is not None:
                    req.notif = (seq, msg.options)
            buf = req.b2_buf
            if buf is None or b2.offset != len(buf):
                self._fail(req, "Block2 out of order")
                return
            buf += payload
            if len(buf) > self.config.max_response_payload:
                self._fail(req, "response too large")
                return
            if b2.more:
                # Fetch the next block with a fresh token, without Observe: follow-ups are
                # plain requests (RFC 7959 §2.6 / RFC 7641 §3.5).
                sub = self._new_token(req.remote, len(req.token))
                if req.sub_token is not None:
                    self._tokens.pop((req.remote, req.sub_token), None)
                req.sub_token = sub
                self._tokens[(req.remote, sub)] = req
                opts = req.base_options + [(BLOCK2, BlockValue(b2.num + 1, False,
                                                               b2.szx).encode())]
                body = req.payload if req.method == Code.FETCH else b""
                self._send(req, sub, opts, body)
                return
            payload = bytes(buf)
            req.b2_buf = None
            if req.notif is not None:
                seq = req.notif[0]
                req.notif = None
        if req.sub_token is not None:
            self._tokens.pop((req.remote, req.sub_token), None)
            req.sub_token = None
        observing = req.observe and seq is not None and is_success(code)
        if observing and not req.observing:
            req.observing = True
            req.last_seq, req.last_time = seq if seq is not None else -1, now
        if not req.discard:
            self._events.append(ResponseReceived(req.id, req.remote, code, payload, cf, seq,
                                                 observing, msg.options))
        if not observing:
            self._requests.pop(req.id, None)
            self._forget(req)

    def _first_options(self, req: _ClientRequest) -> list[Option]:
        opts = list(req.base_options)
        if req.observe:
            opts.append((OBSERVE, b""))
        return opts

    def _fail(self, req: _ClientRequest, reason: str) -> None:
        self._requests.pop(req.id, None)
        self._forget(req)
        if not req.discard:
            self._events.append(RequestFailed(req.id, req.remote, reason))

    def _forget(self, req: _ClientRequest) -> None:
        tokens = self._tokens
        if tokens.get((req.remote, req.token)) is req:
            del tokens[(req.remote, req.token)]
        if req.sub_token is not None:
            tokens.pop((req.remote, req.sub_token), None)
        if req.pending is not None and not req.pending.done:
            self._cancel_pending(req.pending)

    def _new_token(self, remote: Addr, length: int) -> bytes:
        if not 0 <= length <= 8:
            raise CoapLocalError("token length must be 0..8")
        tokens = self._tokens
        if length == 0:
            if (remote, b"") in tokens:
                raise CoapLocalError("the empty token is already in use for this peer")
            return b""
        bits = 8 * length
        for _ in range(64):
            token = self._rng.getrandbits(bits).to_bytes(length, "big")
            if (remote, token) not in tokens:
                return token
        raise CoapLocalError(f"no free {length}-byte token for {remote!r}")

    @property
    def outstanding_requests(self) -> int:
        return len(self._requests)

    # ------------------------------------------------------------------ shared helpers
    def _new_mid(self) -> int:
        mid = self._next_mid
        self._next_mid = (mid + 1) & 0xFFFF
        return mid

    def _add_pending(self, p: _Pending) -> None:
        self._pending[(p.remote, p.mid)] = p
        self._new_pending.append(p)
        self.timer_generation += 1

    def _cancel_pending(self, p: _Pending) -> None:
        p.done = True
        if self._pending.get((p.remote, p.mid)) is p:
            del self._pending[(p.remote, p.mid)]

    def _push_timer(self, p: _Pending) -> None:
        self._timer_seq += 1
        heapq.heappush(self._timers, (p.deadline, self._timer_seq, p))

    @property
    def dedup_size(self) -> int:
        return len(self._dedup)


__all__ = ["CoapEndpoint", "CoapStats"]
