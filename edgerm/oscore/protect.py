"""Protect and unprotect OSCORE requests and responses (RFC 8613 §8), sans-IO.

Everything here works on the three things OSCORE changes: the OSCORE option value, the
ciphertext (the outer payload) and the inner code/options/payload. Framing into CoAP messages
or datagrams is in :mod:`edgerm.oscore.messages`.

Two layers:
- ``seal_*``/``open_*`` take and give the raw plaintext bytes (code byte, options, payload):
  the hot path of the master (one AES-CCM call, one nonce, one AAD, no objects);
- ``protect_*``/``unprotect_*`` add the plaintext (en|de)coding.

Partial IVs are ``int`` throughout (the sender sequence number); on the wire they are minimal
bytes, and non-minimal ones are refused, so the two forms are one-to-one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from cryptography.exceptions import InvalidTag

from edgerm.coap.message import Option
from edgerm.oscore.aad import aad, aad_from_bstr
from edgerm.oscore.context import NONCE_LEN, TAG_LEN, SecurityContext, nonce_base, piv_bytes
from edgerm.oscore.errors import BadOption, BadPlaintext, DecryptFailed, Replay, UnknownKid
from edgerm.oscore.option import FLAG_K, decode_option
from edgerm.oscore.plaintext import decode_plaintext, encode_plaintext

ContextLookup = Callable[[bytes], SecurityContext | None]


def _decrypt(ctx: SecurityContext, nonce: bytes, ciphertext: bytes, a: bytes) -> bytes:
    if len(ciphertext) <= TAG_LEN:  # at least the code byte, then the tag
        raise DecryptFailed("OSCORE ciphertext shorter than a code byte and its tag")
    try:
        return ctx.recipient_aead.decrypt(nonce, ciphertext, a)
    except InvalidTag:
        raise DecryptFailed("OSCORE tag does not verify") from None


# --- requests ----------------------------------------------------------------------------

def seal_request(ctx: SecurityContext, seq: int, plaintext: bytes) -> tuple[bytes, bytes]:
    """``(option_value, ciphertext)`` of a request from this context's sender at ``seq``."""
    piv = piv_bytes(seq)
    option_value = bytes((FLAG_K | len(piv),)) + piv + ctx.sender_id
    ct = ctx.sender_aead.encrypt(ctx.sender_nonce(seq), plaintext,
                                 aad_from_bstr(ctx._sender_kid_bstr, piv))
    return option_value, ct


def protect_request(ctx: SecurityContext, seq: int, inner_code: int,
                    inner_options: Iterable[Option], payload: bytes) -> tuple[bytes, bytes]:
    """Protect a request: ``(option_value, ciphertext)``. ``seq`` must be fresh (caller's)."""
    return seal_request(ctx, seq, encode_plaintext(inner_code, inner_options, payload))


def parse_request_option(option_value: bytes) -> tuple[bytes, int]:
    """``(kid, piv)`` of a request's OSCORE option; :class:`BadOption` if either is missing.

    A kid context (h flag) is refused: EdgeRM contexts have no ID Context.
    """
    # The common case (flags 0x08|n, n in 1..5) parsed inline; anything else takes the full
    # strict decoder so that every malformed value is refused the same way.
    if option_value:
        flags = option_value[0]
        n = flags ^ FLAG_K
        if 0 < n <= 5 and len(option_value) > n and (n == 1 or option_value[1]):
            return option_value[1 + n:], int.from_bytes(option_value[1:1 + n], "big")
    piv, kid, kid_context = decode_option(option_value)
    if kid_context is not None:
        raise UnknownKid("OSCORE request names a kid context; none is known")
    if piv is None or kid is None:
        raise BadOption("OSCORE request without Partial IV or kid")
    return kid, int.from_bytes(piv, "big")


def open_request(ctx: SecurityContext, option_value: bytes,
                 ciphertext: bytes) -> tuple[int, bytes]:
    """The master's fast path: ``(piv, plaintext)`` of a request protected for ``ctx``.

    Raises :class:`BadOption`, :class:`UnknownKid` (kid is not ``ctx.recipient_id``) or
    :class:`DecryptFailed`. Replay is the caller's check (``piv`` against its highest).
    """
    kid, piv = parse_request_option(option_value)
    if kid != ctx.recipient_id:
        raise UnknownKid("OSCORE request kid does not match the context")
    pt = _decrypt(ctx, (ctx.recipient_base ^ piv).to_bytes(NONCE_LEN, "big"), ciphertext,
                  aad_from_bstr(ctx._recipient_kid_bstr, piv_bytes(piv)))
    return piv, pt


def unprotect_request(ctx_lookup: ContextLookup, option_value: bytes, ciphertext: bytes
                      ) -> tuple[bytes, int, int, list[Option], bytes]:
    """``(kid, piv, inner_code, inner_options, payload)`` of a protected request.

    ``ctx_lookup(kid)`` returns the context whose Recipient ID is ``kid``, or ``None``.
    """
    kid, piv = parse_request_option(option_value)
    ctx = ctx_lookup(kid)
    if ctx is None:
        raise UnknownKid(f"no OSCORE context for kid {kid.hex() or '(empty)'}")
    piv, pt = open_request(ctx, option_value, ciphertext)
    try:
        code, options, payload = decode_plaintext(pt)
    except ValueError as e:
        raise BadPlaintext(f"OSCORE plaintext: {e}", kid, piv) from None
    return kid, piv, code, options, payload


# --- responses ---------------------------------------------------------------------------

def seal_response(ctx: SecurityContext, request_kid: bytes, request_piv: int, plaintext: bytes,
                  own_piv: int | None = None) -> tuple[bytes, bytes]:
    """``(option_value, ciphertext)`` of a response to the request ``(request_kid,
    request_piv)``: with ``own_piv=None`` it reuses the request's nonce (empty option value),
    else it carries ``own_piv`` (the sender's fresh sequence number, no kid)."""
    rp = piv_bytes(request_piv)
    a = aad(request_kid, rp)
    if own_piv is None:
        base = (ctx.recipient_base if request_kid == ctx.recipient_id
                else nonce_base(ctx.common_iv, request_kid))
        option_value = b""
        n = (base ^ request_piv).to_bytes(NONCE_LEN, "big")
    else:
        p = piv_bytes(own_piv)
        option_value = bytes((len(p),)) + p
        n = ctx.sender_nonce(own_piv)
    return option_value, ctx.sender_aead.encrypt(n, plaintext, a)


def protect_response(ctx: SecurityContext, request_kid: bytes, request_piv: int,
                     inner_code: int, inner_options: Iterable[Option], payload: bytes,
                     own_piv: int | None = None) -> tuple[bytes, bytes]:
    """Protect a response; see :func:`seal_response`."""
    return seal_response(ctx, request_kid, request_piv,
                         encode_plaintext(inner_code, inner_options, payload), own_piv)


def open_response(ctx: SecurityContext, request_piv: int, option_value: bytes,
                  ciphertext: bytes, request_kid: bytes | None = None
                  ) -> tuple[int | None, bytes]:
    """``(piv, plaintext)`` of a response to our request at ``request_piv``; ``piv`` is the
    responder's own Partial IV, or ``None`` when it reused the request's nonce.

    ``request_kid`` defaults to ``ctx.sender_id`` (we sent the request). A kid in the
    response must name the responder (``ctx.recipient_id``).
    """
    if request_kid is None:
        request_kid = ctx.sender_id
    piv: int | None = None
    if option_value:
        pivb, kid, kid_context = decode_option(option_value)
        if kid_context is not None and kid_context != ctx.id_context:
            raise UnknownKid("OSCORE response names an unknown kid context")
        if kid is not None and kid != ctx.recipient_id:
            raise UnknownKid("OSCORE response kid does not name the responder")
        if pivb is not None:
            piv = int.from_bytes(pivb, "big")
    if piv is None:
        base = (ctx.sender_base if request_kid == ctx.sender_id
                else nonce_base(ctx.common_iv, request_kid))
        n = (base ^ request_piv).to_bytes(NONCE_LEN, "big")
    else:
        n = ctx.recipient_nonce(piv)
    return piv, _decrypt(ctx, n, ciphertext, aad(request_kid, piv_bytes(request_piv)))


def unprotect_response(ctx: SecurityContext, request_piv: int, option_value: bytes,
                       ciphertext: bytes, request_kid: bytes | None = None
                       ) -> tuple[int | None, int, list[Option], bytes]:
    """``(piv, inner_code, inner_options, payload)``; see :func:`open_response`."""
    piv, pt = open_response(ctx, request_piv, option_value, ciphertext, request_kid)
    try:
        code, options, payload = decode_plaintext(pt)
    except ValueError as e:
        raise BadPlaintext(f"OSCORE plaintext: {e}", ctx.recipient_id, piv or 0) from None
    return piv, code, options, payload


# --- replay ------------------------------------------------------------------------------

def check_fresh(piv: int, highest: int) -> None:
    """EdgeRM's replay rule (NSTART 1 makes a wider window pointless): accept only a Partial
    IV past the highest accepted one. Raises :class:`Replay`."""
    if piv <= highest:
        raise Replay(f"OSCORE Partial IV {piv} is not past {highest}: replayed or stale")


__all__ = ["seal_request", "protect_request", "parse_request_option", "open_request",
           "unprotect_request", "seal_response", "protect_response", "open_response",
           "unprotect_response", "check_fresh", "ContextLookup"]
