"""The errors of OSCORE unprotection, each naming the CoAP code the receiver answers with.

RFC 8613 §8.2/§8.4: a malformed OSCORE option or COSE object is refused with 4.02 Bad Option;
an unknown key id, a failed tag check or a replayed Partial IV with 4.01 Unauthorized. Those
answers are sent unprotected (there is no context to protect them with). Every function of
:mod:`edgerm.oscore` that reads untrusted bytes raises only :class:`OscoreError` subclasses.
"""

from __future__ import annotations

BAD_REQUEST = 0x80  # 4.00
UNAUTHORIZED = 0x81  # 4.01
BAD_OPTION = 0x82  # 4.02


class OscoreError(Exception):
    """A protected message that must be refused; ``code`` is the CoAP code to answer with."""

    code = UNAUTHORIZED


class BadOption(OscoreError):
    """The OSCORE option value is malformed, or absent where it is required (4.02)."""

    code = BAD_OPTION


class UnknownKid(OscoreError):
    """No security context for the request's kid (4.01)."""


class DecryptFailed(OscoreError):
    """The AEAD tag does not verify: wrong key, altered bytes or a truncated tag (4.01)."""


class Replay(OscoreError):
    """The Partial IV is not past the highest one already accepted (4.01)."""


class BadPlaintext(OscoreError):
    """The tag verified but the decrypted plaintext is not code + options + payload (4.00).

    The sender holds the key, so this is a peer bug, not an attacker; ``kid`` and ``piv`` say
    which sequence number it used (the receiver may count it as consumed).
    """

    code = BAD_REQUEST

    def __init__(self, message: str, kid: bytes = b"", piv: int = 0) -> None:
        super().__init__(message)
        self.kid = kid
        self.piv = piv


__all__ = ["OscoreError", "BadOption", "UnknownKid", "DecryptFailed", "Replay", "BadPlaintext",
           "BAD_REQUEST", "UNAUTHORIZED", "BAD_OPTION"]
