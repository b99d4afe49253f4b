"""Message authentication for the agent link: a truncated HMAC-SHA256 keyed by the agent secret.

An AgentCall or AgentReply is authenticated by field `mac`: the first `MAC_LEN` bytes of
HMAC-SHA256(secret, the message's canonical encoding with `mac` left out). Deterministic encoding
makes "the message without its mac" one exact byte string in every implementation. Eight bytes
keep a heartbeat inside one 802.15.4 frame and still give 2^64 forgery resistance per guess; the
master also refuses replayed sequence numbers (see edgerm_master).

Neither the cluster's agent token nor an agent's secret ever crosses the link. A first
registration is signed with `token_key(token)` and carries the agent's random nonce; the master
answers with its own nonce, and both sides compute `derive_secret(token, agent_nonce,
master_nonce)`. Someone who hears the whole exchange learns neither, so can neither register
agents nor sign as one.
"""

from __future__ import annotations

import hashlib
import hmac

from edgerm.wire import edgerm_pb2 as pb
from edgerm.wire.codec import encode

MAC_LEN = 8
SECRET_LEN = 16
NONCE_LEN = 8
_SECRET_LABEL = b"edgerm secret"

__all__ = ["MAC_LEN", "NONCE_LEN", "SECRET_LEN", "compute_mac", "derive_secret", "sign",
           "token_key", "verify"]


def token_key(token: str) -> bytes:
    """The key that signs first registrations: SHA-256 of the token's UTF-8 bytes (32 bytes,
    so every implementation's HMAC takes it as is, however long the token)."""
    return hashlib.sha256(token.encode()).digest()


def derive_secret(token: str, agent_nonce: bytes, master_nonce: bytes) -> bytes:
    """The agent secret both sides compute after a first registration: the first 16 bytes of
    HMAC-SHA256(token_key(token), "edgerm secret" || agent nonce || master nonce)."""
    return hmac.new(token_key(token), _SECRET_LABEL + agent_nonce + master_nonce,
                    hashlib.sha256).digest()[:SECRET_LEN]


def compute_mac(secret: bytes, unsigned: bytes) -> bytes:
    return hmac.new(secret, unsigned, hashlib.sha256).digest()[:MAC_LEN]


def sign(msg: pb.AgentCall | pb.AgentReply, secret: bytes) -> bytes:
    """Set `msg.mac` for `secret` and return the encoded, signed message."""
    msg.ClearField("mac")
    msg.mac = compute_mac(secret, encode(msg))
    return encode(msg)


def verify(msg: pb.AgentCall | pb.AgentReply, secret: bytes) -> bool:
    """True when `msg.mac` is right for `secret`; constant-time. Leaves `msg` unchanged."""
    given = msg.mac
    if len(given) != MAC_LEN:
        return False
    msg.ClearField("mac")
    try:
        expected = compute_mac(secret, encode(msg))
    finally:
        msg.mac = given
    return hmac.compare_digest(given, expected)
