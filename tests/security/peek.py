"""An eavesdropper who has been given an agent's secret: opens recorded OSCORE datagrams of that
agent (RFC 8613, as OSCORE_CONTRACT / docs/protocol.md fix it) without any replay state, so a
test can tell which recorded datagram was which call and check that a value it looks for in
clear really was on the wire, only encrypted.

Written from the RFC alone, with `cryptography`'s AES-CCM and HKDF, and not from
`edgerm.oscore`: it is an independent reading of the same bytes (checked against RFC 8613
Appendix C.1.1 in test_peek.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import cbor2
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESCCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from edgerm.coap.errors import CoapWireError
from edgerm.coap.message import Message, decode_message_untrusted
from edgerm.coap.options import OSCORE

ALG_AES_CCM_16_64_128 = 10
TAG_LEN = 8
NONCE_LEN = 13


def kid(agent_id: int) -> bytes:
    """An agent's Sender ID: its id as minimal big-endian bytes."""
    return agent_id.to_bytes(max(1, (agent_id.bit_length() + 7) // 8), "big")


def derive(secret: bytes, ident: bytes, kind: str, length: int, salt: bytes = b"") -> bytes:
    info = cbor2.dumps([ident, None, ALG_AES_CCM_16_64_128, kind, length])
    return HKDF(SHA256(), length, salt or None, info).derive(secret)


def nonce(common_iv: bytes, ident: bytes, piv: bytes) -> bytes:
    raw = bytes([len(ident)]) + ident.rjust(NONCE_LEN - 6, b"\0") + piv.rjust(5, b"\0")
    return bytes(a ^ b for a, b in zip(raw, common_iv, strict=True))


def aad(request_kid: bytes, request_piv: bytes) -> bytes:
    external = cbor2.dumps([1, [ALG_AES_CCM_16_64_128], request_kid, request_piv, b""])
    return cbor2.dumps(["Encrypt0", b"", external])


def parse_option(value: bytes) -> tuple[bytes, bytes | None]:
    """(Partial IV, kid or None) of an OSCORE option value."""
    if not value:
        return b"", None
    flags = value[0]
    n = flags & 7
    piv = value[1:1 + n]
    pos = 1 + n
    if flags & 0x10:
        pos += 1 + value[pos]
    return piv, (value[pos:] if flags & 0x08 else None)


@dataclass
class Opened:
    """A protected message opened: the outer message, its Partial IV and kid, the inner one
    (the inner code as its code, the class E options, the plaintext payload)."""

    outer: Message
    piv: bytes
    kid: bytes | None
    inner: Message

    @property
    def seq(self) -> int:
        return int.from_bytes(self.piv, "big")


def _inner(code_options_payload: bytes) -> Message:
    # A fake 4-byte header in front lets the CoAP codec read options and payload.
    return decode_message_untrusted(bytes((0x40, code_options_payload[0], 0, 0))
                                    + code_options_payload[1:])


class Peek:
    """Both directions of one agent's security context (secret, agent id)."""

    def __init__(self, secret: bytes, agent_id: int, salt: bytes = b"",
                 master_id: bytes = b"", agent_kid: bytes | None = None) -> None:
        self.agent_kid = kid(agent_id) if agent_kid is None else agent_kid
        self.master_id = master_id
        self.agent_key = derive(secret, self.agent_kid, "Key", 16, salt)
        self.master_key = derive(secret, master_id, "Key", 16, salt)
        self.common_iv = derive(secret, b"", "IV", NONCE_LEN, salt)

    def request(self, data: bytes) -> Opened | None:
        """The agent's protected request opened, or None (not OSCORE, not this agent's, or
        the tag does not check)."""
        try:
            outer = decode_message_untrusted(data)
        except CoapWireError:
            return None
        value = outer.opt(OSCORE)
        if value is None:
            return None
        piv, request_kid = parse_option(value)
        if request_kid != self.agent_kid or not piv:
            return None
        plain = self._open(self.agent_key, nonce(self.common_iv, self.agent_kid, piv),
                           outer.payload, aad(self.agent_kid, piv))
        if plain is None:
            return None
        return Opened(outer, piv, request_kid, _inner(plain))

    def response(self, data: bytes, request: bytes) -> Opened | None:
        """The master's protected response to the agent's `request` (both datagrams), opened
        with the request's nonce or the master's own Partial IV; None when it does not
        open."""
        try:
            outer = decode_message_untrusted(data)
            req = decode_message_untrusted(request)
        except CoapWireError:
            return None
        value, req_value = outer.opt(OSCORE), req.opt(OSCORE)
        if value is None or not req_value:
            return None
        req_piv, _ = parse_option(req_value)
        piv, _ = parse_option(value)
        n = (nonce(self.common_iv, self.master_id, piv) if piv
             else nonce(self.common_iv, self.agent_kid, req_piv))
        plain = self._open(self.master_key, n, outer.payload, aad(self.agent_kid, req_piv))
        if plain is None:
            return None
        return Opened(outer, piv, None, _inner(plain))

    @staticmethod
    def _open(key: bytes, n: bytes, ciphertext: bytes, a: bytes) -> bytes | None:
        if len(ciphertext) <= TAG_LEN:
            return None
        try:
            return AESCCM(key, TAG_LEN).decrypt(n, ciphertext, a)
        except InvalidTag:
            return None
