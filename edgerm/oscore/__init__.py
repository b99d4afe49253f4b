"""OSCORE (RFC 8613) for the EdgeRM CoAP agent link: the Python reference implementation.

Sans-IO: bytes in, bytes out, no sockets, no clocks, no sequence-number state. The wire design
(which ids, which options, which messages) is docs/protocol.md "OSCORE"; the MicroPython and C
implementations produce the same bytes (proto/vectors/oscore.json).

Stable API (other modules code against it)::

    ctx = SecurityContext.derive(secret, sender_id, recipient_id)   # salt b"", no ID Context
    agent_context(secret, agent_id)    # sender kid_of(agent_id), recipient b""
    master_context(secret, agent_id)   # sender b"", recipient kid_of(agent_id)
    kid_of(agent_id) -> bytes          # minimal big-endian, 1..7 bytes

    protect_request(ctx, seq, inner_code, inner_options, payload) -> (option_value, ciphertext)
    unprotect_request(ctx_lookup, option_value, ciphertext)
        -> (kid, piv, inner_code, inner_options, payload)     # ctx_lookup(kid) -> ctx | None
    protect_response(ctx, request_kid, request_piv, inner_code, inner_options, payload,
                     own_piv=None) -> (option_value, ciphertext)   # None: reuse request nonce
    unprotect_response(ctx, request_piv, option_value, ciphertext, request_kid=None)
        -> (piv | None, inner_code, inner_options, payload)
    check_fresh(piv, highest)          # raises Replay unless piv > highest

    # hot path, no option lists or message objects: plaintext = code byte + options + payload
    parse_request_option(option_value) -> (kid, piv)
    open_request(ctx, option_value, ciphertext) -> (piv, plaintext)
    seal_request(ctx, seq, plaintext) -> (option_value, ciphertext)
    seal_response(ctx, request_kid, request_piv, plaintext, own_piv=None)
        -> (option_value, ciphertext)
    open_response(ctx, request_piv, option_value, ciphertext, request_kid=None)
        -> (piv | None, plaintext)
    encode_plaintext(code, options, payload) / decode_plaintext(plaintext)

    # CoAP messages (edgerm.coap.message.Message) and whole datagrams
    protect_request_message(ctx, seq, msg) -> Message
    unprotect_request_message(ctx_lookup, msg) -> (kid, piv, Message)
    protect_response_message(ctx, request_kid, request_piv, msg, own_piv=None) -> Message
    unprotect_response_message(ctx, request_piv, msg, request_kid=None) -> (piv | None, Message)
    request_datagram(ctx, seq, mtype, mid, token, inner_code, inner_options, payload) -> bytes
    response_datagram(ctx, request_kid, request_piv, mtype, mid, token, inner_code,
                      inner_options, payload, own_piv=None) -> bytes
    unprotect_request_datagram(ctx_lookup, data) -> (kid, piv, Message)
    unprotect_response_datagram(ctx, request_piv, data, request_kid=None) -> (piv|None, Message)
    pack_forwarded(outer_code, option_value, ciphertext) / unpack_forwarded(data)  # gateway

Partial IVs (``seq``, ``piv``, ``own_piv``, ``request_piv``) are ints; on the wire minimal
bytes. Errors: everything reading untrusted bytes raises only :class:`OscoreError`, whose
``code`` is the CoAP code of the (unprotected) refusal: :class:`BadOption` 4.02;
:class:`UnknownKid`, :class:`DecryptFailed`, :class:`Replay` 4.01; :class:`BadPlaintext` 4.00
(the tag verified, the inner message is malformed: a peer bug).
"""

from edgerm.oscore.aad import aad, external_aad
from edgerm.oscore.context import (
    ALG_AES_CCM_16_64_128,
    MAX_PIV,
    SecurityContext,
    agent_context,
    kid_of,
    master_context,
    nonce,
    piv_bytes,
)
from edgerm.oscore.errors import (
    BadOption,
    BadPlaintext,
    DecryptFailed,
    OscoreError,
    Replay,
    UnknownKid,
)
from edgerm.oscore.messages import (
    pack_forwarded,
    protect_request_message,
    protect_response_message,
    request_datagram,
    response_datagram,
    split_options,
    unpack_forwarded,
    unprotect_request_datagram,
    unprotect_request_message,
    unprotect_response_datagram,
    unprotect_response_message,
)
from edgerm.oscore.option import decode_option, encode_option
from edgerm.oscore.plaintext import decode_plaintext, encode_plaintext
from edgerm.oscore.protect import (
    ContextLookup,
    check_fresh,
    open_request,
    open_response,
    parse_request_option,
    protect_request,
    protect_response,
    seal_request,
    seal_response,
    unprotect_request,
    unprotect_response,
)

__all__ = [
    "SecurityContext", "agent_context", "master_context", "kid_of", "piv_bytes", "nonce",
    "aad", "external_aad", "ALG_AES_CCM_16_64_128", "MAX_PIV",
    "OscoreError", "BadOption", "UnknownKid", "DecryptFailed", "Replay", "BadPlaintext",
    "encode_option", "decode_option", "encode_plaintext", "decode_plaintext",
    "ContextLookup", "protect_request", "unprotect_request", "protect_response",
    "unprotect_response", "check_fresh", "parse_request_option", "open_request",
    "seal_request", "seal_response", "open_response",
    "split_options", "protect_request_message", "unprotect_request_message",
    "protect_response_message", "unprotect_response_message", "request_datagram",
    "response_datagram", "unprotect_request_datagram", "unprotect_response_datagram",
    "pack_forwarded", "unpack_forwarded",
]
