"""OSCORE on CoAP message objects and datagrams (RFC 8613 §4), and the gateway framing.

Option classes: Uri-Host, Uri-Port, Proxy-Uri, Proxy-Scheme and Hop-Limit stay outside
(class U); Observe goes both inside and, as a copy, outside (§4.1.3.5); every other option is
encrypted (class E). The outer code is POST, FETCH when the request carries Observe (§4.2);
responses are 2.04 Changed, 2.05 Content when they carry Observe (notifications).

Untrusted-input functions here raise only :class:`~edgerm.oscore.errors.OscoreError`
(a datagram that is not CoAP at all is :class:`BadOption`: there is nothing to protect an
answer with anyway).
"""

from __future__ import annotations

from collections.abc import Iterable
from operator import itemgetter

from edgerm.coap.codes import Code
from edgerm.coap.errors import CoapWireError
from edgerm.coap.message import Message, Option, decode_message_untrusted, encode_message
from edgerm.coap.options import (
    HOP_LIMIT,
    OBSERVE,
    OSCORE,
    PROXY_SCHEME,
    PROXY_URI,
    URI_HOST,
    URI_PORT,
)
from edgerm.oscore.context import SecurityContext
from edgerm.oscore.errors import BadOption
from edgerm.oscore.protect import (
    ContextLookup,
    protect_request,
    protect_response,
    unprotect_request,
    unprotect_response,
)

# Stable sort by option number only: repeated options (Uri-Path segments) keep their order.
_number = itemgetter(0)
OUTER_ONLY = frozenset((URI_HOST, URI_PORT, PROXY_URI, PROXY_SCHEME, HOP_LIMIT, OSCORE))


def split_options(options: Iterable[Option]) -> tuple[list[Option], list[Option]]:
    """``(outer, inner)`` of an unprotected message's options; Observe lands in both."""
    outer: list[Option] = []
    inner: list[Option] = []
    for opt in options:
        num = opt[0]
        if num in OUTER_ONLY:
            if num != OSCORE:
                outer.append(opt)
        else:
            inner.append(opt)
            if num == OBSERVE:
                outer.append(opt)
    return outer, inner


def _observe_copy(inner_options: Iterable[Option]) -> list[Option]:
    return [o for o in inner_options if o[0] == OBSERVE]


def _one_oscore(msg: Message) -> bytes:
    values = msg.opts(OSCORE)
    if len(values) != 1:
        raise BadOption("no OSCORE option" if not values else "repeated OSCORE option")
    return values[0]


# --- message objects ---------------------------------------------------------------------

def protect_request_message(ctx: SecurityContext, seq: int, msg: Message) -> Message:
    """The protected (outer) form of an unprotected request."""
    outer, inner = split_options(msg.options)
    value, ct = protect_request(ctx, seq, msg.code, inner, msg.payload)
    code = Code.FETCH if _observe_copy(inner) else Code.POST
    return Message(msg.mtype, code, msg.mid, msg.token,
                   sorted(outer + [(OSCORE, value)], key=_number), ct)


def unprotect_request_message(ctx_lookup: ContextLookup, msg: Message
                              ) -> tuple[bytes, int, Message]:
    """``(kid, piv, inner)``: the request as its sender wrote it (outer class U options kept,
    the outer Observe copy replaced by the inner one)."""
    kid, piv, code, inner, payload = unprotect_request(ctx_lookup, _one_oscore(msg),
                                                       msg.payload)
    outer = [o for o in msg.options if o[0] in OUTER_ONLY and o[0] != OSCORE]
    return kid, piv, Message(msg.mtype, code, msg.mid, msg.token,
                             sorted(outer + inner, key=_number), payload)


def protect_response_message(ctx: SecurityContext, request_kid: bytes, request_piv: int,
                             msg: Message, own_piv: int | None = None) -> Message:
    outer, inner = split_options(msg.options)
    value, ct = protect_response(ctx, request_kid, request_piv, msg.code, inner, msg.payload,
                                 own_piv)
    code = Code.CONTENT if _observe_copy(inner) else Code.CHANGED
    return Message(msg.mtype, code, msg.mid, msg.token,
                   sorted(outer + [(OSCORE, value)], key=_number), ct)


def unprotect_response_message(ctx: SecurityContext, request_piv: int, msg: Message,
                               request_kid: bytes | None = None) -> tuple[int | None, Message]:
    piv, code, inner, payload = unprotect_response(ctx, request_piv, _one_oscore(msg),
                                                   msg.payload, request_kid)
    outer = [o for o in msg.options if o[0] in OUTER_ONLY and o[0] != OSCORE]
    return piv, Message(msg.mtype, code, msg.mid, msg.token, sorted(outer + inner, key=_number),
                        payload)


# --- datagrams ---------------------------------------------------------------------------

def request_datagram(ctx: SecurityContext, seq: int, mtype: int, mid: int, token: bytes,
                     inner_code: int, inner_options: Iterable[Option], payload: bytes) -> bytes:
    """A whole protected request datagram (EdgeRM's: no class U options)."""
    inner = list(inner_options)
    value, ct = protect_request(ctx, seq, inner_code, inner, payload)
    observe = _observe_copy(inner)
    return encode_message(mtype, Code.FETCH if observe else Code.POST, mid, token,
                          observe + [(OSCORE, value)], ct)


def response_datagram(ctx: SecurityContext, request_kid: bytes, request_piv: int, mtype: int,
                      mid: int, token: bytes, inner_code: int, inner_options: Iterable[Option],
                      payload: bytes, own_piv: int | None = None) -> bytes:
    """A whole protected response datagram (an ACK piggybacks: same mid and token)."""
    inner = list(inner_options)
    value, ct = protect_response(ctx, request_kid, request_piv, inner_code, inner, payload,
                                 own_piv)
    observe = _observe_copy(inner)
    return encode_message(mtype, Code.CONTENT if observe else Code.CHANGED, mid, token,
                          observe + [(OSCORE, value)], ct)


def _decode(data: bytes) -> Message:
    try:
        return decode_message_untrusted(data)
    except CoapWireError as e:
        raise BadOption(f"not a CoAP message: {e}") from None


def unprotect_request_datagram(ctx_lookup: ContextLookup, data: bytes
                               ) -> tuple[bytes, int, Message]:
    return unprotect_request_message(ctx_lookup, _decode(data))


def unprotect_response_datagram(ctx: SecurityContext, request_piv: int, data: bytes,
                                request_kid: bytes | None = None
                                ) -> tuple[int | None, Message]:
    return unprotect_response_message(ctx, request_piv, _decode(data), request_kid)


# --- gateway framing (contract: GatewayBatch.calls[i], GatewayReplies.replies[i]) ----------

def pack_forwarded(outer_code: int, option_value: bytes, ciphertext: bytes) -> bytes:
    """``[outer code][option value length][option value][ciphertext]``."""
    if len(option_value) > 255:
        raise ValueError("OSCORE option value longer than 255 bytes")
    return bytes((outer_code, len(option_value))) + option_value + ciphertext


def unpack_forwarded(data: bytes) -> tuple[int, bytes, bytes]:
    """``(outer_code, option_value, ciphertext)``; :class:`BadOption` if truncated."""
    if len(data) < 2 or len(data) < 2 + data[1]:
        raise BadOption("forwarded OSCORE message is truncated")
    end = 2 + data[1]
    return data[0], data[2:end], data[end:]


__all__ = ["OUTER_ONLY", "split_options", "protect_request_message",
           "unprotect_request_message", "protect_response_message",
           "unprotect_response_message", "request_datagram", "response_datagram",
           "unprotect_request_datagram", "unprotect_response_datagram", "pack_forwarded",
           "unpack_forwarded"]
