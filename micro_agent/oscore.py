"""The agent link's cryptography, written for kilobytes: OSCORE (RFC 8613) for every call after
the first registration, and the HMAC that signs the first registration itself.

OSCORE, client side: the security context (`setup`: HKDF-SHA256 on `hmac`, §3.2), the nonce
(§5.2), the AAD (§5.4, hand-built CBOR: a few fixed bytes around the request's kid and Partial
IV) and AES-CCM-16-64-128 (`ccm`; COSE alg 10: RFC 3610 with M = 8, L = 2) on top of the
firmware's AES block cipher (`cryptolib.aes`, ECB, mode 1; CCM only ever encrypts blocks). The
choices of issue 16 (docs/protocol.md, "OSCORE"): Master Salt and ID Context absent, the agent's
Sender ID is its agent_id in minimal big-endian bytes, the master's is empty.

A context is one bytes object (64 B of heap): sender key (16) | recipient key (16) | common IV
(13) | len(sender id) | sender id | recipient id. `ccm` protects a request's plaintext in place
and appends the tag, or checks a response's tag (CBC-MAC over the plaintext it decrypts on the
fly, writing nothing) and only then writes the plaintext: a forged datagram never touches the
caller's buffer. Its buffers are three 16-byte blocks made per call; nothing stays allocated
between calls.

The first registration (docs/protocol.md, "Authentication"; `edgerm/wire/mac.py` is the
reference) needs HMAC-SHA256 (RFC 2104) on `hashlib.sha256` (MicroPython has no `hmac` module)
and `urandom` for its nonce; the agent builds the token's key, the secret and the constant-time
compare from them (one function each would be ~100 B of heap for good).

One module and few functions: each module costs heap of its own (its object, its globals, two
qstrs) and each function ~100 B. Every name here is a qstr interned at import (argument names
too), so they are the firmware's own (key, id, data, value, buf, pos, src, start, end, mode,
dest, context, n, urandom) or ones the agent interns anyway (c, `_b`, `setup`): that keeps the
agent's dynamic qstrs in the pools it already has room in (20 + 40 + 80 on the unix port); the
141st costs a new ~2 KB pool.
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
    k[:len(key)] = key
    for i in range(64):
        k[i] ^= 0x36
    h = hashlib.sha256(k)
    h.update(data)
    inner = h.digest()
    for i in range(64):
        k[i] ^= 0x6A  # 0x36 ^ 0x5C: turn the inner pad into the outer pad
    h = hashlib.sha256(k)
    h.update(inner)
    return h.digest()[:n]


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
        raise ValueError  # a nonce holds 7 bytes of id (an agent_id under 2^56)
    # HKDF-Extract with salt `data`; an empty salt is HashLen zeros, the same HMAC key.
    prk = hmac(data, key, 32)
    out = b""
    for v in (id, dest, b""):
        # info = [id, id_context, alg 10, "Key" / "IV", L]; HKDF-Expand of one block, T(1).
        # Written byte by byte: each bytes constant is an object on the heap for good.
        info = bytearray((0x85, 0x40 | len(v)))
        info += v
        if context is None:
            info.append(0xF6)
        else:
            info.append(0x40 | len(context))
            info += context
        n = len(out) < 32  # a key, then the common IV
        info += b"\x0acKey\x10\x01\x0abIV\x0d\x01"[0 if n else 7:7 if n else 13]
        out += hmac(prk, info, 16 if n else 13)
    return out + bytes((len(id),)) + id + dest


def ccm(c, mode, v, value, src, start, end, buf, pos):
    """AES-CCM-16-64-128 (RFC 3610, M = 8, L = 2) with context c, for the request with Partial
    IV v (our sender sequence number; the AAD's kid is our sender id).

    mode 0, protect a request: encrypt the plaintext src[start:end] into buf[pos:] (src and buf
    may be one buffer, pos == start) and append the tag; returns the index after it. value is -1.
    mode 1, unprotect its response (or a notification): src[start:end] is the ciphertext with
    the tag; value is -1 when the response reuses the request's nonce, else the responder's
    own Partial IV (the nonce then from the recipient id). Writes the plaintext to buf[pos:]
    and returns its length only when the tag is right; -1 (nothing written) otherwise: a first
    pass decrypts on the fly into the CBC-MAC only, a second one writes."""
    id = c[_IDS_AT + 1:_IDS_AT + 1 + c[_IDS_AT]]
    if mode:
        end -= _TAG_LEN
        if end <= start:  # not even the code byte and a tag
            return -1
    a = aes(c[16:_IV_AT] if mode else c[:16], 1)
    x = bytearray(16)  # CBC-MAC state
    s = bytearray(16)  # key stream block S_i
    t = bytearray(16)  # counter block A_i: flags | nonce | counter
    # nonce (5.2): len(ID_PIV) | ID_PIV padded to 7 | PIV padded to 5, xor the common IV
    n = c[_IDS_AT + 1 + c[_IDS_AT]:] if value >= 0 else id
    t[1] = len(n)
    t[9 - len(n):9] = n
    n = value if value >= 0 else v
    for k in range(13, 8, -1):  # (not to_bytes: a Partial IV past 5 bytes must not raise)
        t[k] = n & 0xFF
        n >>= 8
    for k in range(1, 14):
        t[k] ^= c[_IV_AT - 1 + k]
    n = end - start
    x[0] = 0x59  # Adata, M = 8, L = 2
    x[1:14] = t[1:14]
    x[14:] = n.to_bytes(2, "big")
    a.encrypt(x, x)
    # AAD = l(a) || Enc_structure ["Encrypt0", h'', bstr .cbor aad_array], aad_array = [1,
    # [10], kid, piv, h''] (one bytes constant: each is an object on the heap for good)
    n = _b(v)
    v = bytearray(b"\x00\x00\x83hEncrypt0@\x00\x85\x01\x81\x0a")
    v.append(0x40 | len(id))
    v += id
    v.append(0x40 | len(n))
    v += n
    v.append(0x40)
    v[1] = len(v) - 2  # l(a)
    v[13] = 0x40 | (len(v) - 14)  # aad_array's bstr head
    n = end - start
    for k in range(len(v)):
        x[k & 15] ^= v[k]
        if k & 15 == 15 or k == len(v) - 1:
            a.encrypt(x, x)
    t[0] = 1  # L - 1
    w = not mode  # write on this pass (decryption: only on the second, once the tag is right)
    while True:
        k = 0
        while k < n:
            t[14:] = ((k >> 4) + 1).to_bytes(2, "big")
            a.encrypt(t, s)
            j = 0
            while j < 16 and k + j < n:
                v = src[start + k + j]
                if w:  # (read first: src and buf may be one buffer)
                    buf[pos + k + j] = v ^ s[j]
                if mode:
                    v ^= s[j]  # the plaintext byte
                x[j] ^= v
                j += 1
            if not w or not mode:
                a.encrypt(x, x)
            k += 16
        if w and mode:
            return n
        t[14] = t[15] = 0
        a.encrypt(t, s)  # S_0: the tag is the CBC-MAC xor S_0
        if not mode:
            for k in range(_TAG_LEN):
                buf[pos + n + k] = x[k] ^ s[k]
            return pos + n + _TAG_LEN
        v = 0
        for k in range(_TAG_LEN):
            v |= x[k] ^ s[k] ^ src[end + k]
        if v:
            return -1
        w = True
