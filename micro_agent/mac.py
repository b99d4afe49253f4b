"""HMAC-SHA256 (RFC 2104) on `hashlib.sha256`, truncated to the agent link's 8-byte MAC.

MicroPython has no `hmac` module; this is the whole of it that EdgeRM needs. `equal` compares
without an early exit so a forger learns nothing from timing.
"""

import hashlib


_k = bytearray(64)  # the pad, reused: no garbage per call


def hmac8(key, data):
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    k = _k
    for i in range(64):
        k[i] = (key[i] if i < len(key) else 0) ^ 0x36
    h = hashlib.sha256(k)
    h.update(data)
    inner = h.digest()
    for i in range(64):
        k[i] ^= 0x6A  # 0x36 ^ 0x5C: turn the inner pad into the outer pad
    h = hashlib.sha256(k)
    h.update(inner)
    return h.digest()[:8]


def equal(a, b):
    if len(a) != len(b):
        return False
    r = 0
    for i in range(len(a)):
        r |= a[i] ^ b[i]
    return r == 0
