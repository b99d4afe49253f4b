"""OSCORE (RFC 8613) as the CoAP agent link uses it: contexts, protect and unprotect.

Sans-IO and shared by the master (`edgerm_master/oscore_calls.py`) and the Linux agent
(`edgerm_agent/links.py`); docs/protocol.md "Authentication of the agent link" and
/work/wt/OSCORE_CONTRACT.md give the choices: Master Secret = the agent's 16-byte secret,
no salt, no ID Context, AES-CCM-16-64-128, HKDF-SHA-256; the agent's Sender ID is its
agent_id in minimal big-endian bytes (`kid`), the master's is empty; the agent's Sender
Sequence Number is its `seq`.

The parts:
- `LinkContext` (one per agent and side): the derived keys and common IV, and the two AEAD
  objects, built once (deriving costs two HMACs per key; the AEAD objects hold the key
  schedule);
- `parse_option_untrusted` (the OSCORE option value -> Partial IV and kid);
- `inner_encode` / `inner_decode_untrusted`: the plaintext (inner code, class E options,
  payload);
- `protect_request` / `unprotect_request`, `protect_response` / `unprotect_response`.

Errors: `OscoreError` for everything a peer can cause (a malformed option: `bad_option`
True, the CoAP answer is 4.02; a failed tag check or an unknown context: 4.01).
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from edgerm.coap.errors import CoapWireError
from edgerm.coap.message import Option, decode_message_untrusted, encode_message

__all__ = ["OPTION_OSCORE", "OscoreError", "LinkContext", "kid", "agent_id_of", "piv_bytes",
           "parse_option_untrusted", "inner_encode", "inner_decode_untrusted",
           "protect_request", "unprotect_request", "protect_response", "unprotect_response",
           "agent_context", "master_context", "TAG_LEN", "MASTER_ID"]

OPTION_OSCORE = 9
ALG_AES_CCM_16_64_128 = 10
KEY_LEN = 16
NONCE_LEN = 13
TAG_LEN = 8
MASTER_ID = b""
# The Partial IV is at most 5 bytes (RFC 8613 §6.1); a Sender ID at most NONCE_LEN - 6.
_MAX_PIV = 5
_MAX_ID = NONCE_LEN - 6


class OscoreError(Exception):
    """A protected message that cannot be accepted; `bad_option`: the OSCORE option itself
    is malformed (answer 4.02 Bad Option), else answer 4.01 Unauthorized."""

    def __init__(self, text: str, bad_option: bool = False) -> None:
        super().__init__(text)
        self.bad_option = bad_option


def kid(agent_id: int) -> bytes:
    """The agent's Sender ID: its id in minimal big-endian bytes (1..7 bytes)."""
    return agent_id.to_bytes(max(1, (agent_id.bit_length() + 7) // 8), "big")


def agent_id_of(kid_: bytes) -> int:
    """The agent id a kid names (0: none can, e.g. empty or with a leading zero byte)."""
    if not kid_ or kid_[0] == 0 or len(kid_) > _MAX_ID:
        return 0
    return int.from_bytes(kid_, "big")


def piv_bytes(seq: int) -> bytes:
    """A sequence number as a Partial IV: minimal bytes, 0 as one zero byte (§6.1)."""
    return seq.to_bytes(max(1, (seq.bit_length() + 7) // 8), "big")


def _bstr(b: bytes) -> bytes:
    # CBOR byte string head for the short strings used here (ids, PIVs, AAD: < 65,536 bytes).
    n = len(b)
    if n < 24:
        return bytes((0x40 | n,)) + b
    if n < 256:
        return bytes((0x58, n)) + b
    return b"\x59" + n.to_bytes(2, "big") + b


def _derive(secret: bytes, id_: bytes, kind: bytes, length: int, salt: bytes = b"") -> bytes:
    """HKDF-SHA-256 (empty salt = HashLen zeros, RFC 5869) with the §3.2.1 info
    [id, id_context nil, alg 10, type, L]; one expand block (L <= 32)."""
    prk = hmac.digest(salt or b"\x00" * 32, secret, hashlib.sha256)
    info = (b"\x85" + _bstr(id_) + b"\xf6" + bytes((ALG_AES_CCM_16_64_128,))
            + bytes((0x60 | len(kind),)) + kind + bytes((length,)))
    return hmac.digest(prk, info + b"\x01", hashlib.sha256)[:length]


class LinkContext:
    """One side's security context (RFC 8613 §3): sender/recipient keys and ids, common IV."""

    __slots__ = ("sender_id", "recipient_id", "sender_key", "recipient_key", "common_iv",
                 "_send", "_recv")

    def __init__(self, secret: bytes, sender_id: bytes, recipient_id: bytes,
                 salt: bytes = b"") -> None:
        """`salt`: the Master Salt (empty on this link; the RFC's vectors use one)."""
        self.sender_id = sender_id
        self.recipient_id = recipient_id
        self.sender_key = _derive(secret, sender_id, b"Key", KEY_LEN, salt)
        self.recipient_key = _derive(secret, recipient_id, b"Key", KEY_LEN, salt)
        self.common_iv = _derive(secret, b"", b"IV", NONCE_LEN, salt)
        self._send = AESCCM(self.sender_key, TAG_LEN)
        self._recv = AESCCM(self.recipient_key, TAG_LEN)

    def nonce(self, id_piv: bytes, piv: bytes) -> bytes:
        """§5.2: the sender's id and a Partial IV, padded, XOR the common IV."""
        raw = (bytes((len(id_piv),)) + bytes(_MAX_ID - len(id_piv)) + id_piv
               + bytes(_MAX_PIV - len(piv)) + piv)
        iv = self.common_iv
        return bytes(a ^ b for a, b in zip(raw, iv, strict=True))


def agent_context(secret: bytes, agent_id: int) -> LinkContext:
    """The agent's context: it sends as kid(agent_id), the master as b''."""
    return LinkContext(secret, kid(agent_id), MASTER_ID)


def master_context(secret: bytes, agent_id: int) -> LinkContext:
    """The master's context for one agent: it sends as b'', the agent as kid(agent_id)."""
    return LinkContext(secret, MASTER_ID, kid(agent_id))


def _aad(request_kid: bytes, request_piv: bytes) -> bytes:
    """Enc_structure ["Encrypt0", h'', external_aad] with external_aad =
    [1, [10], request_kid, request_piv, h''] (§5.4; no class I options)."""
    external = (b"\x85\x01\x81" + bytes((ALG_AES_CCM_16_64_128,)) + _bstr(request_kid)
                + _bstr(request_piv) + b"\x40")
    return b"\x83\x68Encrypt0\x40" + _bstr(external)


def parse_option_untrusted(value: bytes) -> tuple[bytes, bytes | None]:
    """(Partial IV, kid or None) of an OSCORE option value (§6.1). An empty value gives
    (b'', None). Raises OscoreError(bad_option=True) when malformed."""
    if not value:
        return b"", None
    flags = value[0]
    n = flags & 0x07
    if flags & 0xE0 or n > _MAX_PIV:
        raise OscoreError("reserved OSCORE flag bits or Partial IV length", True)
    pos = 1 + n
    if pos > len(value):
        raise OscoreError("OSCORE option shorter than its Partial IV", True)
    piv = value[1:pos]
    if flags & 0x10:  # h: kid context (never sent on this link, but parsed per the RFC)
        if pos >= len(value):
            raise OscoreError("OSCORE option: truncated kid context", True)
        pos += 1 + value[pos]
        if pos > len(value):
            raise OscoreError("OSCORE option: truncated kid context", True)
    if flags & 0x08:
        return piv, value[pos:]
    if pos != len(value):
        raise OscoreError("OSCORE option: bytes after the Partial IV without a kid", True)
    return piv, None


def inner_encode(code: int, options: list[Option], payload: bytes = b"") -> bytes:
    """The plaintext (§5.3): inner code, class E options in order, 0xFF and the payload."""
    msg = encode_message(0, code, 0, b"", options, payload)
    return msg[1:2] + msg[4:]


def inner_decode_untrusted(plaintext: bytes) -> tuple[int, list[Option], bytes]:
    """(code, options, payload) of a plaintext; raises OscoreError when malformed."""
    if not plaintext:
        raise OscoreError("empty OSCORE plaintext")
    try:
        msg = decode_message_untrusted(bytes((0x40, plaintext[0], 0, 0)) + plaintext[1:])
    except CoapWireError as e:
        raise OscoreError(f"OSCORE plaintext: {e}") from None
    return msg.code, msg.options, msg.payload


def protect_request(ctx: LinkContext, seq: int, plaintext: bytes) -> tuple[bytes, bytes]:
    """(OSCORE option value, ciphertext) of a request with Sender Sequence Number `seq`."""
    piv = piv_bytes(seq)
    sid = ctx.sender_id
    option = bytes((0x08 | len(piv),)) + piv + sid
    return option, ctx._send.encrypt(ctx.nonce(sid, piv), plaintext, _aad(sid, piv))


def unprotect_request(ctx: LinkContext, piv: bytes, ciphertext: bytes) -> bytes:
    """The plaintext of a request from ctx's recipient with Partial IV `piv` (its kid is
    `ctx.recipient_id`); raises OscoreError if the tag does not verify. The replay check is
    the caller's (it knows the last accepted sequence number)."""
    rid = ctx.recipient_id
    if not piv or len(ciphertext) < TAG_LEN:
        raise OscoreError("OSCORE request without Partial IV or shorter than a tag")
    try:
        return ctx._recv.decrypt(ctx.nonce(rid, piv), ciphertext, _aad(rid, piv))
    except InvalidTag:
        raise OscoreError("OSCORE request failed to verify") from None


def protect_response(ctx: LinkContext, request_piv: bytes, plaintext: bytes,
                     own_seq: int = 0) -> tuple[bytes, bytes]:
    """(OSCORE option value, ciphertext) of the response to the request (kid =
    ctx.recipient_id, Partial IV `request_piv`): reusing the request's nonce (empty option)
    or, with `own_seq` (> 0), with the responder's own Partial IV (§8.3)."""
    rkid = ctx.recipient_id
    aad = _aad(rkid, request_piv)
    if own_seq:
        piv = piv_bytes(own_seq)
        return (bytes((len(piv),)) + piv,
                ctx._send.encrypt(ctx.nonce(ctx.sender_id, piv), plaintext, aad))
    return b"", ctx._send.encrypt(ctx.nonce(rkid, request_piv), plaintext, aad)


def unprotect_response(ctx: LinkContext, request_piv: bytes, option: bytes,
                       ciphertext: bytes) -> tuple[bytes, int]:
    """(plaintext, the responder's Partial IV as a number or -1 when it reused the request's
    nonce) of a response to our request with Partial IV `request_piv`; raises OscoreError."""
    piv, _ = parse_option_untrusted(option)
    if len(ciphertext) < TAG_LEN:
        raise OscoreError("OSCORE response shorter than a tag")
    sid = ctx.sender_id
    aad = _aad(sid, request_piv)
    nonce = ctx.nonce(ctx.recipient_id, piv) if piv else ctx.nonce(sid, request_piv)
    try:
        plaintext = ctx._recv.decrypt(nonce, ciphertext, aad)
    except InvalidTag:
        raise OscoreError("OSCORE response failed to verify") from None
    return plaintext, int.from_bytes(piv, "big") if piv else -1
