"""The CoAP server side, sans-IO: requests in, responses and Observe notifications out.

Theory of operation
-------------------
The endpoint hands every CON/NON request to :meth:`ServerSide.on_request` after the message
layer checked it is not a duplicate. The request's options are checked here (§5.4: an unknown
critical option is a Bad Option), Block1 uploads are reassembled, follow-up Block2 requests are
answered from the cache, and only then does the application see a ``RequestReceived`` event.
Its ``respond()`` is piggybacked on the ACK if it comes within ``empty_ack_delay``; otherwise
:meth:`handle_timer` has already sent an Empty ACK and the response becomes a separate CON
exchange (§5.2.2).

What is remembered for duplicates: a success answered here or by the application; a request
answered with an error (4.xx/5.xx) is not (a duplicate is processed again and gets the same
error), so a flood of bad requests holds no state (see :mod:`edgerm.coap.dedup`).

Observe (RFC 7641): ``respond(observe=True)`` registers the observer in the
:class:`~edgerm.coap.observe.ObserverRegistry`; :meth:`notify` sends notifications, CON ones
retransmitted by the message layer. An observer is gone (``ObserverGone``) when it resets a
notification, a CON notification is never acknowledged, it deregisters (Observe=1) or
re-registers with the same token, or a non-2.xx notification ends it.
"""

from __future__ import annotations

import random
from collections import OrderedDict, deque
from collections.abc import Hashable, Iterator, Sequence

from edgerm.coap.blockwise import COMPLETE, CONTINUE, Block1Assembler, Block2Cache, slice_block
from edgerm.coap.codes import ACK, CON, NON, RST, Code, is_success
from edgerm.coap.config import CoapConfig
from edgerm.coap.errors import CoapLocalError
from edgerm.coap.events import Addr, Event, ObserverGone, RequestReceived
from edgerm.coap.message import Message, Option, encode_empty, encode_message
from edgerm.coap.message_layer import KIND_NOTIFICATION, KIND_SEPARATE, MessageLayer, Pending
from edgerm.coap.observe import Observer, ObserverRegistry
from edgerm.coap.options import (
    BLOCK1,
    BLOCK2,
    CONTENT_FORMAT,
    OBSERVE,
    OBSERVE_SEQ_MODULUS,
    SIZE1,
    SIZE2,
    BlockValue,
    decode_block,
    encode_uint,
)

# Message ids of recent NON notifications, so a RST to one still tells us the observer is
# gone; older ones are forgotten first.
_MAX_NON_NOTIFICATIONS = 4096
# Encoded Content-Format values that are on every response (CBOR, text, link-format, JSON).
_CF_CACHE = {cf: encode_uint(cf) for cf in (0, 40, 42, 50, 60)}


class Exchange:
    """Server-side state of one request between ``RequestReceived`` and ``respond()``."""

    __slots__ = ("event", "mid", "token", "key", "acked", "block2", "block1", "cache_key")

    def __init__(self, event: RequestReceived, mid: int, token: bytes, key: tuple[Addr, int],
                 block2: BlockValue | None, block1: BlockValue | None,
                 cache_key: Hashable) -> None:
        self.event = event
        self.mid = mid
        self.token = token
        self.key = key
        #: An Empty ACK went out: the response will be a separate CON message.
        self.acked = False
        self.block2 = block2
        self.block1 = block1
        self.cache_key = cache_key


class ServerSide:
    """Requests received, their responses, and the observers of our resources.

    Args:
      config: tunables (block size, payload limits, ``empty_ack_delay``, observer limit).
      rng: draws the first Observe sequence number.
      messages: the endpoint's message layer (ids, retransmission, dedup, outgoing list).
      events: the endpoint's event queue.
      ids: request ids, shared with the client side so every event id is unique.
    """

    def __init__(self, config: CoapConfig, rng: random.Random, messages: MessageLayer,
                 events: deque[Event], ids: Iterator[int]) -> None:
        self.config = cfg = config
        self._ml = messages
        self._out = messages.out
        self._dedup = messages.dedup
        self.stats = messages.stats
        self._events = events
        self._ids = ids
        # Constants looked up per datagram, cached as attributes.
        self._empty_ack_delay = cfg.empty_ack_delay
        self._pref_szx = cfg.block_szx
        self._max_datagram = cfg.max_datagram_size
        self._max_payload = cfg.max_request_payload
        self._exchanges: dict[int, Exchange] = {}
        # (deadline, request id) of CON requests not answered yet, in deadline order.
        self._empty_ack_fifo: deque[tuple[float, int]] = deque()
        self.block1 = Block1Assembler(cfg)
        self.block2 = Block2Cache(cfg)
        self.observers = ObserverRegistry(cfg.max_observers)
        self._observe_seq = rng.randrange(OBSERVE_SEQ_MODULUS)
        self._non_notifications: OrderedDict[tuple[Addr, int], int] = OrderedDict()

    # ------------------------------------------------------------------ timer
    def next_deadline(self) -> float | None:
        """The earliest Empty ACK or Block1/Block2 expiry due, or ``None``."""
        when: float | None = None
        fifo = self._empty_ack_fifo
        exchanges = self._exchanges
        # Answered requests are the common case: drop them from the head lazily so a busy
        # server arms no timer for them at all.
        while fifo and fifo[0][1] not in exchanges:
            fifo.popleft()
        if fifo:
            when = fifo[0][0]
        for t in (self.block1.next_deadline(), self.block2.next_deadline()):
            if t is not None and (when is None or t < when):
                when = t
        return when

    def send_empty_acks(self, now: float) -> None:
        """Acknowledge every CON request the application did not answer within
        ``empty_ack_delay``, so the client stops retransmitting it."""
        fifo = self._empty_ack_fifo
        while fifo and fifo[0][0] <= now:
            _, rid = fifo.popleft()
            ex = self._exchanges.get(rid)
            if ex is not None and not ex.acked:
                ex.acked = True
                ack = encode_empty(ACK, ex.mid)
                self._dedup.answer(ex.key, ack)
                self._out.append((ack, ex.event.remote))

    def expire(self, now: float) -> None:
        """Drop Block1 uploads and Block2 representations past their lifetime."""
        self.block1.expire(now)
        self.block2.expire(now)

    # ------------------------------------------------------------------ requests
    def on_request(self, msg: Message, remote: Addr, now: float, size: int) -> None:
        key = (remote, msg.mid)
        if self._ml.answered_duplicate(key, remote):
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
            elif num == 9:  # OSCORE: left to the application (RFC 8613; one at most)
                if num == prev or len(val) > 255:
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
            result = self.block1.receive((remote, method, tuple(path), tuple(query)), block1,
                                          payload, size1, now)
            if result.status == CONTINUE:
                self._ml.timer_generation += 1
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
            rep = self.block2.get(cache_key, now)
            if rep is not None:
                # A follow-up block of a representation we already hold: answer from the cache
                # so every block comes from the same version of the resource.
                opts = [o for o in rep.options if o[0] != OBSERVE]
                code, body, opts = self._block2_slice(rep.code, rep.payload, opts, block2)
                self._reply(msg, remote, key, now, code, body, opts)
                return
        if observe is not None and (method == 1 or method == 5):  # GET, FETCH
            old = self.observers.find(remote, msg.token)
            if old is not None:
                # Observe=1 deregisters; Observe=0 with the same token re-registers, which ends
                # the old registration first (RFC 7641 §3.6, §4.1).
                self._end_observer(old, "deregistered")
        else:
            observe = None
        self._ml.remember(key, now)
        rid = next(self._ids)
        event = RequestReceived(rid, remote, method, spath, squery, payload, cf, accept, observe,
                                msg.mtype == 0, msg.options)
        self._exchanges[rid] = Exchange(event, msg.mid, msg.token, key, block2, block1,
                                         cache_key)
        if msg.mtype == 0:  # CON
            if not self._empty_ack_fifo:
                self._ml.timer_generation += 1
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
            ob = self.observers.add(event.remote, ex.token, ex.cache_key, szx)
            if ob is not None:
                obs_id = ob.id
                opts.append((OBSERVE, encode_uint(self._bump_seq())))
        if ex.block1 is not None:
            opts.append((BLOCK1, ex.block1.encode()))
        if ex.block2 is not None or len(payload) > (1 << (szx + 4)):
            if len(payload) > (1 << (szx + 4)):
                self.block2.put(ex.cache_key if ex.cache_key is not None else
                                 (event.remote, event.method, event.path, event.query, b""),
                                 code, payload, opts, now)
                self._ml.timer_generation += 1
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
                mid = self._ml.new_mid()
                data = encode_message(CON, code, mid, ex.token, opts, payload)
                self._ml.add_pending(Pending(remote, mid, data, KIND_SEPARATE, None))
        else:
            data = encode_message(NON, code, self._ml.new_mid(), ex.token, opts, payload)
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
            data = encode_message(NON, code, self._ml.new_mid(), msg.token, options, payload)
        if code < 128:
            self._ml.remember(key, now, data)
        self._out.append((data, remote))

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
        ob = self.observers.by_id.get(observation_id)
        if ob is None:
            return False
        opts = list(options)
        if content_format is not None:
            opts.append((CONTENT_FORMAT, encode_uint(content_format)))
        final = not is_success(code)
        if not final:
            opts.append((OBSERVE, encode_uint(self._bump_seq())))
        if len(payload) > (1 << (ob.szx + 4)):
            self.block2.put(ob.cache_key, code, payload, opts, now)
            self._ml.timer_generation += 1
            code, payload, opts = self._block2_slice(code, payload, opts,
                                                     BlockValue(0, False, ob.szx))
        mid = self._ml.new_mid()
        con = self.config.notify_confirmable if confirmable is None else confirmable
        msg_type = CON if con else NON
        data = encode_message(msg_type, code, mid, ob.token, opts, payload)
        count = 0
        if ob.pending is not None and not ob.pending.done:
            count = ob.pending.count
            self._ml.cancel_pending(ob.pending)
            ob.pending = None
        if con:
            p = Pending(ob.remote, mid, data, KIND_NOTIFICATION, ob.id)
            p.count = count
            if not final:
                ob.pending = p
            self._ml.add_pending(p)
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
        ob = self.observers.by_id.get(observation_id)
        if ob is not None:
            self._end_observer(ob, "ended")

    def _end_observer(self, ob: Observer, reason: str) -> None:
        if self.observers.remove(ob.id) is None:
            return
        if ob.pending is not None:
            self._ml.cancel_pending(ob.pending)
        self._events.append(ObserverGone(ob.id, ob.remote, reason))

    def _bump_seq(self) -> int:
        self._observe_seq = (self._observe_seq + 1) % OBSERVE_SEQ_MODULUS
        return self._observe_seq

    @property
    def observer_count(self) -> int:
        return len(self.observers)

    # ------------------------------------------------------------------ ACK / RST / timeout
    def notification_answered(self, p: Pending, msg: Message) -> None:
        """The ACK or RST ``msg`` answered our CON notification ``p``."""
        ob = self.observers.by_id.get(p.ref)
        if ob is None:
            return
        if msg.mtype == RST:
            self._end_observer(ob, "reset")
        elif ob.pending is p:
            ob.pending = None

    def notification_gave_up(self, p: Pending) -> None:
        ob = self.observers.by_id.get(p.ref)
        if ob is not None:
            self._end_observer(ob, "timeout")

    def reset_of_non_notification(self, remote: Addr, mid: int) -> bool:
        """A RST matching no CON of ours: if it answers a recent NON notification, the
        observer is gone (RFC 7641 §3.6). Returns whether it did."""
        oid = self._non_notifications.pop((remote, mid), None)
        if oid is None:
            return False
        ob = self.observers.by_id.get(oid)
        if ob is not None:
            self._end_observer(ob, "reset")
        return True


__all__ = ["Exchange", "ServerSide"]
