"""Errors of the CoAP core: wire errors from untrusted bytes, and renderable CoAP errors.

Two families, as in h11 and aiocoap:

* :class:`CoapWireError` is the *only* exception a ``decode_*_untrusted`` parser may raise.
  It carries whatever of the header could be read (type and message id) so the message
  layer can answer a malformed confirmable message with a Reset (RFC 7252 §4.2) and
  silently drop everything else.
* :class:`RenderableError` and its subclasses carry a CoAP response code. Handlers raise
  them ("this agent is not allowed" -> :class:`Unauthorized`) and the server renders them
  as a response, like aiocoap's ``RenderableError.to_message()``.

:class:`CoapLocalError` is raised when *our* code misuses the core (unknown request id,
tokens exhausted); it is never caused by a peer.
"""

from __future__ import annotations

from edgerm.coap.codes import Code


class CoapWireError(Exception):
    """Bytes from the network that are not a well-formed CoAP message.

    Attributes:
      mtype: the message type if the 4-byte header could be read, else ``None``.
      mid: the message id if the header could be read, else ``None``.
    """

    def __init__(self, reason: str, mtype: int | None = None, mid: int | None = None) -> None:
        super().__init__(reason)
        self.mtype = mtype
        self.mid = mid


class CoapLocalError(Exception):
    """The application used the core wrongly (our bug, never the peer's)."""


class RenderableError(Exception):
    """An error that becomes a CoAP response with :attr:`code` and a short diagnostic payload.

    The payload is the UTF-8 message (RFC 7252 §5.5.2 "diagnostic payload"), truncated so
    an error response always fits one datagram.
    """

    code: int = Code.INTERNAL_SERVER_ERROR

    def __init__(self, message: str = "", *, max_age: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.max_age = max_age

    def diagnostic_payload(self) -> bytes:
        return self.message.encode("utf-8", "replace")[:128]


class BadRequest(RenderableError):
    code = Code.BAD_REQUEST


class Unauthorized(RenderableError):
    code = Code.UNAUTHORIZED


class BadOption(RenderableError):
    code = Code.BAD_OPTION


class Forbidden(RenderableError):
    code = Code.FORBIDDEN


class NotFound(RenderableError):
    code = Code.NOT_FOUND


class MethodNotAllowed(RenderableError):
    code = Code.METHOD_NOT_ALLOWED


class NotAcceptable(RenderableError):
    code = Code.NOT_ACCEPTABLE


class RequestEntityIncomplete(RenderableError):
    code = Code.REQUEST_ENTITY_INCOMPLETE


class RequestEntityTooLarge(RenderableError):
    code = Code.REQUEST_ENTITY_TOO_LARGE


class UnsupportedContentFormat(RenderableError):
    code = Code.UNSUPPORTED_CONTENT_FORMAT


class InternalServerError(RenderableError):
    code = Code.INTERNAL_SERVER_ERROR


class NotImplemented_(RenderableError):
    code = Code.NOT_IMPLEMENTED


class ServiceUnavailable(RenderableError):
    code = Code.SERVICE_UNAVAILABLE


class ProxyingNotSupported(RenderableError):
    code = Code.PROXYING_NOT_SUPPORTED


__all__ = [
    "CoapWireError",
    "CoapLocalError",
    "RenderableError",
    "BadRequest",
    "Unauthorized",
    "BadOption",
    "Forbidden",
    "NotFound",
    "MethodNotAllowed",
    "NotAcceptable",
    "RequestEntityIncomplete",
    "RequestEntityTooLarge",
    "UnsupportedContentFormat",
    "InternalServerError",
    "NotImplemented_",
    "ServiceUnavailable",
    "ProxyingNotSupported",
]
