"""HMAC-SHA256 (RFC 2104) on `hashlib.sha256`, truncated to the agent link's 8-byte MAC, and
the first registration's key, nonce and derived secret (docs/protocol.md, "Authentication";
`edgerm/wire/mac.py` is the reference).

MicroPython has no `hmac` module; this is the whole of it that EdgeRM needs. `equal` compares
without an early exit so a forger learns nothing from timing. The token never crosses the link:
a first registration is signed with `key(token)` and carries `urandom(8)`; the master answers
with its nonce, and both sides compute `secret(key(token), agent nonce, master nonce)`.

Every name here is a qstr interned at import (argument names too): the names are the
firmware's own (key, data, n, urandom) or ones the agent interns anyway (token, a, b), so the
whole authentication adds one qstr (`secret`). That keeps the agent's dynamic qstrs in the
pools it already has room in (20 + 40 + 80 on the unix port); the 141st costs a new ~2 KB pool.
"""

import hashlib

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
