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
from edgerm.oscore.aad import aad
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


def _piv_bytes(piv: int) -> bytes:
    return bytes((piv,)) if 0 <= piv < 256 else piv_bytes(piv)


# --- requests ----------------------------------------------------------------------------

def seal_request(ctx: SecurityContext, seq: int, plaintext: bytes) -> tuple[bytes, bytes]:
    """``(option_value, ciphertext)`` of a request from this context's sender at ``seq``."""
    piv = _piv_bytes(seq)
    option_value = bytes((FLAG_K | len(piv),)) + piv + ctx.sender_id
    ct = ctx.sender_aead.encrypt((ctx.sender_base ^ seq).to_bytes(NONCE_LEN, "big"), plaintext,
                                 ctx.sender_aad_prefix[len(piv)] + piv + b"\x40")
    return option_value, ct


def protect_request(ctx: SecurityContext, seq: int, inner_code: int,
                    inner_options: Iterable[Option], payload: bytes) -> tuple[bytes, bytes]:
    """Protect a request: ``(option_value, ciphertext)``. ``seq`` must be fresh (caller's)."""
    return seal_request(ctx, seq, encode_plaintext(inner_code, inner_options, payload))


def _parse_request_option(option_value: bytes) -> tuple[bytes, int, bytes]:
    """``(kid, piv, piv_bytes)``; see :func:`parse_request_option`."""
    # The common case (flags 0x08|n, n in 1..5, minimal PIV) parsed inline; anything else
    # takes the full strict decoder so that every malformed value is refused the same way.
    if option_value:
        n = option_value[0] ^ FLAG_K
        if 0 < n <= 5 and len(option_value) > n and (n == 1 or option_value[1]):
            pivb = option_value[1:1 + n]
            return option_value[1 + n:], int.from_bytes(pivb, "big"), pivb
    piv, kid, kid_context = decode_option(option_value)
    if kid_context is not None:
        raise UnknownKid("OSCORE request names a kid context; none is known")
    if piv is None or kid is None:
        raise BadOption("OSCORE request without Partial IV or kid")
    return kid, int.from_bytes(piv, "big"), piv


def parse_request_option(option_value: bytes) -> tuple[bytes, int]:
    """``(kid, piv)`` of a request's OSCORE option; :class:`BadOption` if either is missing.

    A kid context (h flag) is refused (:class:`UnknownKid`): EdgeRM contexts have none.
    """
    kid, piv, _ = _parse_request_option(option_value)
    return kid, piv


def open_request(ctx: SecurityContext, option_value: bytes,
                 ciphertext: bytes) -> tuple[int, bytes]:
    """The master's fast path: ``(piv, plaintext)`` of a request protected for ``ctx``.

    Raises :class:`BadOption`, :class:`UnknownKid` (kid is not ``ctx.recipient_id``) or
    :class:`DecryptFailed`. Replay is the caller's check (``piv`` against its highest).
    """
    kid, piv, pivb = _parse_request_option(option_value)
    if kid != ctx.recipient_id:
        raise UnknownKid("OSCORE request kid does not match the context")
    if len(ciphertext) <= TAG_LEN:  # at least the code byte, then the tag
        raise DecryptFailed("OSCORE ciphertext shorter than a code byte and its tag")
    try:
        pt = ctx.recipient_aead.decrypt((ctx.recipient_base ^ piv).to_bytes(NONCE_LEN, "big"),
                                        ciphertext,
                                        ctx.recipient_aad_prefix[len(pivb)] + pivb + b"\x40")
    except InvalidTag:
        raise DecryptFailed("OSCORE tag does not verify") from None
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
    rp = _piv_bytes(request_piv)
    if request_kid == ctx.recipient_id:  # always, on the master: the cached prefix and base
        a = ctx.recipient_aad_prefix[len(rp)] + rp + b"\x40"
        base = ctx.recipient_base
    else:
        a = aad(request_kid, rp)
        base = nonce_base(ctx.common_iv, request_kid)
    if own_piv is None:
        return b"", ctx.sender_aead.encrypt((base ^ request_piv).to_bytes(NONCE_LEN, "big"),
                                            plaintext, a)
    p = _piv_bytes(own_piv)
    return (bytes((len(p),)) + p,
            ctx.sender_aead.encrypt(ctx.sender_nonce(own_piv), plaintext, a))


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
    rp = _piv_bytes(request_piv)
    if request_kid == ctx.sender_id:  # always, on an agent: the cached prefix and base
        a = ctx.sender_aad_prefix[len(rp)] + rp + b"\x40"
        base = ctx.sender_base
    else:
        a = aad(request_kid, rp)
        base = nonce_base(ctx.common_iv, request_kid)
    n = (base ^ request_piv if piv is None else ctx.recipient_base ^ piv).to_bytes(NONCE_LEN,
                                                                                   "big")
    return piv, _decrypt(ctx, n, ciphertext, a)


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
