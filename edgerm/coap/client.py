"""The CoAP client side, sans-IO: our requests, their responses and our Observe registrations.

Theory of operation
-------------------
:meth:`ClientSide.request` turns one application request into one or more CoAP exchanges and
returns an id; everything that comes back is an event with that id: one ``ResponseReceived``
(block-wise transfers in both directions reassembled), or, for an observation, the
registration's response and then one ``ResponseReceived`` per notification, or one
``RequestFailed``.

Responses are matched by token (``tokens``: (peer, token) -> request). A piggybacked response
reaches :meth:`request_answered` through the message layer's ACK matching, a separate one
:meth:`on_separate_response`. Block1 uploads send the next block on 2.31 Continue and restart
with a smaller block on 4.13 (RFC 7959 §2.9.3); Block2 downloads fetch each next block with a
fresh token and without Observe (RFC 7641 §3.5). Notifications older than the newest one seen
are dropped (RFC 7641 §3.4). A notification for a token nobody waits for gets a RST, which is
how an observation we lost interest in ends on the server.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterator, Sequence

from edgerm.coap.codes import ACK, CON, NON, RST, Code, is_success
from edgerm.coap.config import CoapConfig
from edgerm.coap.errors import CoapLocalError
from edgerm.coap.events import Addr, Event, RequestFailed, ResponseReceived
from edgerm.coap.message import Message, Option, encode_empty, encode_message
from edgerm.coap.message_layer import KIND_REQUEST, MessageLayer, Pending
from edgerm.coap.options import (
    ACCEPT,
    BLOCK1,
    BLOCK2,
    CONTENT_FORMAT,
    OBSERVE,
    SIZE1,
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


class ClientRequest:
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
        #: Token of the Block2 follow-up in flight, if any.
        self.sub_token: bytes | None = None
        self.confirmable = confirmable
        self.observe = observe
        self.observing = False
        self.b1_szx = 6
        self.b1_offset = 0
        self.b1_active = False
        self.b2_buf: bytearray | None = None
        self.pending: Pending | None = None
        self.last_seq = -1
        self.last_time = 0.0
        #: A deregistration nobody waits for: no events.
        self.discard = False
        # (observe seq, options) of the notification being completed by Block2 follow-ups.
        self.notif: tuple[int | None, list[Option]] | None = None


class ClientSide:
    """Our outstanding requests and observations, matched to responses by token.

    Args:
      config: tunables (token length, block size, ``max_response_payload``).
      rng: draws tokens.
      messages: the endpoint's message layer (ids, retransmission, dedup, outgoing list).
      events: the endpoint's event queue.
      ids: request ids, shared with the server side so every event id is unique.
    """

    def __init__(self, config: CoapConfig, rng: random.Random, messages: MessageLayer,
                 events: deque[Event], ids: Iterator[int]) -> None:
        self.config = config
        self._rng = rng
        self._ml = messages
        self._out = messages.out
        self.stats = messages.stats
        self._events = events
        self._ids = ids
        self._pref_szx = config.block_szx
        self.requests: dict[int, ClientRequest] = {}
        self._tokens: dict[tuple[Addr, bytes], ClientRequest] = {}

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
        rid = next(self._ids)
        req = ClientRequest(rid, remote, method, base, payload, token, confirmable, observe)
        self.requests[rid] = req
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
        req = self.requests.pop(request_id, None)
        if req is None:
            return
        self._forget(req)
        if deregister and req.observing:
            rid = next(self._ids)
            dereg = ClientRequest(rid, req.remote, req.method, req.base_options, req.payload,
                                   req.token, req.confirmable, False)
            dereg.discard = True
            self.requests[rid] = dereg
            self._tokens[(req.remote, req.token)] = dereg
            self._send(dereg, dereg.token, req.base_options + [(OBSERVE, b"\x01")],
                       req.payload)

    def _send(self, req: ClientRequest, token: bytes, opts: list[Option],
              payload: bytes) -> None:
        mid = self._ml.new_mid()
        if req.confirmable:
            data = encode_message(CON, req.method, mid, token, opts, payload)
            p = Pending(req.remote, mid, data, KIND_REQUEST, req)
            req.pending = p
            self._ml.add_pending(p)
        else:
            self._out.append((encode_message(NON, req.method, mid, token, opts, payload),
                              req.remote))

    def _send_block1(self, req: ClientRequest, opts: list[Option]) -> None:
        size = szx_to_size(req.b1_szx)
        num = req.b1_offset // size
        chunk = req.payload[req.b1_offset:req.b1_offset + size]
        more = req.b1_offset + size < len(req.payload)
        opts = opts + [(BLOCK1, BlockValue(num, more, req.b1_szx).encode())]
        if num == 0:
            opts.append((SIZE1, encode_uint(len(req.payload))))
        self._send(req, req.token, opts, chunk)

    def on_separate_response(self, msg: Message, remote: Addr, now: float) -> None:
        key = (remote, msg.mid)
        if self._ml.answered_duplicate(key, remote):
            return
        req = self._tokens.get((remote, msg.token))
        if req is None:
            # Nobody waits for this (e.g. a notification after we lost interest): RST tells the
            # server to stop (RFC 7641 §3.6).
            self.stats.unmatched += 1
            self._ml.send_rst(msg.mid, remote)
            return
        self._ml.remember(key, now, encode_empty(ACK, msg.mid) if msg.mtype == CON else b"")
        if msg.mtype == CON:
            self._out.append((encode_empty(ACK, msg.mid), remote))
        if req.pending is not None and not req.pending.done:
            # The response implies the ACK we may have missed.
            self._ml.cancel_pending(req.pending)
        self._on_response(req, msg, now)

    def _on_response(self, req: ClientRequest, msg: Message, now: float) -> None:
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
            elif num & 1 and num not in (URI_HOST, URI_PATH, URI_PORT, URI_QUERY, ACCEPT,
                                         9):  # 9: OSCORE, left to the caller (RFC 8613)
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
            self.requests.pop(req.id, None)
            self._forget(req)

    def _first_options(self, req: ClientRequest) -> list[Option]:
        opts = list(req.base_options)
        if req.observe:
            opts.append((OBSERVE, b""))
        return opts

    def _fail(self, req: ClientRequest, reason: str) -> None:
        self.requests.pop(req.id, None)
        self._forget(req)
        if not req.discard:
            self._events.append(RequestFailed(req.id, req.remote, reason))

    def _forget(self, req: ClientRequest) -> None:
        tokens = self._tokens
        if tokens.get((req.remote, req.token)) is req:
            del tokens[(req.remote, req.token)]
        if req.sub_token is not None:
            tokens.pop((req.remote, req.sub_token), None)
        if req.pending is not None and not req.pending.done:
            self._ml.cancel_pending(req.pending)

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
        return len(self.requests)

    # ------------------------------------------------------------------ ACK / RST / timeout
    def request_answered(self, p: Pending, msg: Message, now: float) -> None:
        """The ACK or RST ``msg`` answered our CON request message ``p``."""
        req: ClientRequest = p.ref
        if self.requests.get(req.id) is not req:
            return
        if msg.mtype == RST:
            self._fail(req, "reset")
        elif msg.code != 0:
            if msg.token == req.token or msg.token == req.sub_token:
                self._on_response(req, msg, now)
            else:
                self.stats.unmatched += 1
        # An Empty ACK: the response will come separately; keep waiting.

    def request_gave_up(self, p: Pending) -> None:
        req: ClientRequest = p.ref
        if self.requests.get(req.id) is req:
            self._fail(req, "timeout")


__all__ = ["ClientRequest", "ClientSide"]
