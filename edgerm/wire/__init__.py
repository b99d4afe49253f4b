"""The EdgeRM wire format: protobuf messages from proto/edgerm.proto, CBOR-encoded.

`pb` is the generated module (from `proto/edgerm.proto`; regenerate with
`python -m edgerm.wire.generate`, a test checks it is current). `encode`/`decode` are the
CBOR-encoded-protobuf codec; `sign`/`verify` the agent-link MAC.
"""

from edgerm.wire import edgerm_pb2 as pb
from edgerm.wire.codec import DEFAULT_LIMITS, DecodeError, Limits, decode, encode, to_tree
from edgerm.wire.mac import (
    MAC_LEN,
    NONCE_LEN,
    SECRET_LEN,
    compute_mac,
    derive_secret,
    sign,
    token_key,
    verify,
)

CONTENT_FORMAT_CBOR = 60
PROTOCOL_VERSION = 1

__all__ = [
    "pb", "encode", "decode", "to_tree", "DecodeError", "Limits", "DEFAULT_LIMITS",
    "sign", "verify", "compute_mac", "MAC_LEN", "SECRET_LEN", "NONCE_LEN", "token_key",
    "derive_secret",
    "CONTENT_FORMAT_CBOR", "PROTOCOL_VERSION",
]
