"""The agent link's cryptography, written for kilobytes: OSCORE (RFC 8613) for every call after
the first registration, and the HMAC that signs the first registration itself.

OSCORE, client side: the security context (HKDF-SHA256 on `hmac`, §3.2), the nonce (§5.2), the
AAD (§5.4, hand-built CBOR: a few fixed bytes around the request's kid and Partial IV) and
AES-CCM-16-64-128 (COSE alg 10: RFC 3610 with M = 8, L = 2) on top of the firmware's AES block
cipher (`cryptolib.aes`, ECB, mode 1; CCM only ever encrypts blocks). The choices of issue 16
(docs/protocol.md, "OSCORE"): Master Salt and ID Context absent, the agent's Sender ID is its
agent_id in minimal big-endian bytes, the master's is empty.

A context is one bytes object (64 B of heap): sender key (16) | recipient key (16) | common IV
(13) | len(sender id) | sender id | recipient id. `encrypt` protects a request's plaintext in
place and appends the tag; `decrypt` checks a response's tag (CBC-MAC over the plaintext it
decrypts on the fly, writing nothing) and only then writes the plaintext: a forged datagram
never touches the caller's buffer. Every buffer is a few 16-byte blocks made per call; nothing
stays allocated between calls.

The first registration (docs/protocol.md, "Authentication"; `edgerm/wire/mac.py` is the
reference): HMAC-SHA256 (RFC 2104) on `hashlib.sha256`, truncated to the link's 8-byte MAC
(MicroPython has no `hmac` module); `equal` compares without an early exit so a forger learns
nothing from timing. The token never crosses the link: a first registration is signed with
`key(token)` and carries `urandom(8)`; the master answers with its nonce, and both sides compute
`secret(key(token), agent nonce, master nonce)`, the OSCORE Master Secret from then on.

One module, not two: each module costs heap of its own (its object, its globals, two qstrs).
Every name here is a qstr interned at import (argument names too), so they are the firmware's
own (key, id, data, value, buf, pos, src, start, end, mode, dest, context, n, urandom) or ones
the agent interns anyway (token, a, b, c, `_b`, `setup`, `secret`): that keeps the agent's
dynamic qstrs in the pools it already has room in (20 + 40 + 80 on the unix port); the 141st
costs a new ~2 KB pool.
"""

import hashlib
from cryptolib import aes
from micropython import const


try:
    from os import urandom  # unix port, esp32, rp2, nrf, stm32 (with an RNG): the hardware's
except ImportError:
    # A port without it: random, which ports seed at boot from their own entropy source. A
    # repeated nonce is refused by the master, and the next attempt draws a fresh one.
    from random import getrandbits

    def urandom(n):
        return bytes(getrandbits(8) for _ in range(n))


def hmac(key, data, n=8):
    """The first n bytes of HMAC-SHA256(key, data)."""
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    k = bytearray(64)  # the pad (garbage after the call: a module-level one was 96 B for good)
    for i in range(64):
        k[i] = (key[i] if i < len(key) else 0) ^ 0x36
    h = hashlib.sha256(k)
    h.update(data)
    inner = h.digest()
    for i in range(64):
        k[i] ^= 0x6A  # 0x36 ^ 0x5C: turn the inner pad into the outer pad
    h = hashlib.sha256(k)
    h.update(inner)
    return h.digest()[:n]


def key(token):
    """The token's key, which signs a first registration: SHA-256 of its UTF-8 bytes (32 B)."""
    return hashlib.sha256(token.encode()).digest()


def secret(key, a, b):
    """The agent secret after a first registration: the first 16 bytes of
    HMAC-SHA256(the token's key, "edgerm secret" || agent nonce a || master nonce b)."""
    return hmac(key, b"edgerm secret" + a + b, 16)


def equal(a, b):
    if len(a) != len(b):
        return False
    r = 0
    for i in range(len(a)):
        r |= a[i] ^ b[i]
    return r == 0


_NONCE_LEN = const(13)
_TAG_LEN = const(8)
_IV_AT = const(32)  # the common IV's index in a context
_IDS_AT = const(45)  # len(sender id), then the sender id, then the recipient id


def _b(v):
    # v >= 0 in minimal big-endian bytes (0 is one zero byte): a Partial IV (RFC 8613 6.1) or a
    # kid from an agent_id.
    n = 1
    while v >> (8 * n):
        n += 1
    return v.to_bytes(n, "big")


def setup(key, id, dest=b"", data=b"", context=None):
    """The security context (RFC 8613 3.2) for Master Secret `key`, Sender ID `id` (bytes, or
    an int: its minimal big-endian bytes), Recipient ID `dest`, Master Salt `data` and ID
    Context `context` (None: absent), AEAD AES-CCM-16-64-128, HKDF-SHA-256."""
    if type(id) is int:
        id = _b(id)
    if len(id) > 7 or len(dest) > 7:
        raise ValueError("sender/recipient id over 7 bytes")
    # HKDF-Extract with salt `data`; an empty salt is HashLen zeros, the same HMAC key.
    prk = hmac(data or b"", key, 32)
    out = b""
    for v in (id, dest, b""):
        # info = [id, id_context, alg 10, "Key" / "IV", L]; HKDF-Expand of one block, T(1).
        info = bytes((0x85, 0x40 | len(v))) + v
        info += b"\xf6" if context is None else bytes((0x40 | len(context),)) + context
        info += b"\x0acKey\x10\x01" if len(out) < _IV_AT else b"\x0abIV\x0d\x01"
        out += hmac(prk, info, 16 if len(out) < _IV_AT else _NONCE_LEN)
    return out + bytes((len(id),)) + id + dest


def _ccm(c, mode, id, v, value, src, start, end, buf, pos):
    # AES-CCM-16-64-128 of src[start:end] with context c. The nonce is (id, PIV v) when value is
    # -1, else (the recipient id, value: the responder's own Partial IV); the AAD always holds the
    # request's kid id and Partial IV v. mode 0: encrypt into buf[pos:] (may be src in place);
    # 1: decrypt into buf[pos:], or only compute the tag when buf is None. Returns the CBC-MAC
    # block xor S0, whose first 8 bytes are the tag.
    a = aes(c[16:_IV_AT] if mode else c[:16], 1)
    x = bytearray(16)  # CBC-MAC state
    s = bytearray(16)  # key stream block S_i
    t = bytearray(16)  # counter block A_i
    n = value if value >= 0 else v
    if value >= 0:
        id, value = c[_IDS_AT + 1 + c[_IDS_AT]:], id  # the responder's nonce; value keeps the kid
    else:
        value = id
    # nonce (5.2): len(ID_PIV) | ID_PIV padded to 7 | PIV padded to 5, xor the common IV
    t[1] = len(id)
    t[9 - len(id):9] = id
    for k in range(13, 8, -1):
        t[k] = n & 0xFF
        n >>= 8
    for k in range(1, 14):
        t[k] ^= c[_IV_AT - 1 + k]
    n = end - start
    x[0] = 0x59  # Adata, M = 8, L = 2
    x[1:14] = t[1:14]
    x[14] = n >> 8
    x[15] = n & 0xFF
    a.encrypt(x, x)
    # AAD = l(a) || Enc_structure ["Encrypt0", h'', bstr .cbor [1, [10], kid, piv, h'']]
    v = _b(v)
    aad = b"\x85\x01\x81\x0a" + bytes((0x40 | len(value),)) + value + bytes((0x40 | len(v),)) + v + b"@"
    aad = b"\x83hEncrypt0@" + bytes((0x40 | len(aad),)) + aad
    aad = bytes((0, len(aad))) + aad
    for k in range(len(aad)):
        x[k & 15] ^= aad[k]
        if k & 15 == 15 or k == len(aad) - 1:
            a.encrypt(x, x)
    t[0] = 1  # L - 1
    k = 0
    while k < n:
        t[14] = (k >> 4) + 1 >> 8
        t[15] = (k >> 4) + 1 & 0xFF
        a.encrypt(t, s)
        for j in range(min(16, n - k)):
            v = src[start + k + j]
            if mode:
                v ^= s[j]  # the plaintext byte
                if buf is not None:
                    buf[pos + k + j] = v
            else:
                buf[pos + k + j] = v ^ s[j]
            x[j] ^= v
        a.encrypt(x, x)
        k += 16
    t[14] = t[15] = 0
    a.encrypt(t, s)
    for j in range(_TAG_LEN):
        x[j] ^= s[j]
    return x


def encrypt(c, v, buf, start, end):
    """Protect a request: encrypt the plaintext buf[start:end] in place with context c and
    Partial IV v (our sender sequence number), the tag appended; returns the end after it."""
    id = c[_IDS_AT + 1:_IDS_AT + 1 + c[_IDS_AT]]
    buf[end:end + _TAG_LEN] = _ccm(c, 0, id, v, -1, buf, start, end, buf, start)[:_TAG_LEN]
    return end + _TAG_LEN


def decrypt(c, v, value, src, start, end, buf, pos):
    """Unprotect a response (or notification) to our request with Partial IV v: src[start:end]
    is its ciphertext with the tag. value: -1 when it reuses the request's nonce, else the
    responder's Partial IV from its OSCORE option. Writes the plaintext to buf[pos:] and
    returns its length only when the tag is right; -1 (nothing written) otherwise."""
    end -= _TAG_LEN
    if end <= start:  # not even the code byte and a tag
        return -1
    id = c[_IDS_AT + 1:_IDS_AT + 1 + c[_IDS_AT]]
    x = _ccm(c, 1, id, v, value, src, start, end, None, 0)
    r = 0
    for k in range(_TAG_LEN):
        r |= x[k] ^ src[end + k]
    if r:
        return -1
    _ccm(c, 1, id, v, value, src, start, end, buf, pos)
    return end - start
