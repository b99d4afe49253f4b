"""EdgeRM's CoAP core (RFC 7252, 7959, 7641, 6690), sans-IO: no sockets, no clock, no sleeping.

The Trio shell lives in :mod:`edgerm.transport.coap`. Re-exports the public names of
the modules below; each module's docstring explains its one job.
"""

from edgerm.coap.codes import ACK, CON, NON, RST, Code, code_str, is_success
from edgerm.coap.config import CoapConfig
from edgerm.coap.endpoint import CoapEndpoint, CoapStats
from edgerm.coap.errors import (
    BadOption,
    BadRequest,
    CoapLocalError,
    CoapWireError,
    Forbidden,
    InternalServerError,
    MethodNotAllowed,
    NotAcceptable,
    NotFound,
    RenderableError,
    RequestEntityIncomplete,
    RequestEntityTooLarge,
    ServiceUnavailable,
    Unauthorized,
    UnsupportedContentFormat,
)
from edgerm.coap.events import (
    Event,
    ObserverGone,
    RequestFailed,
    RequestReceived,
    ResponseReceived,
)
from edgerm.coap.linkformat import Link, format_links, parse_links
from edgerm.coap.message import Message, decode_message_untrusted, encode_message
from edgerm.coap.options import CF_CBOR, CF_LINK_FORMAT, CF_TEXT, BlockValue

__all__ = [
    "ACK", "CON", "NON", "RST", "Code", "code_str", "is_success",
    "CoapConfig", "CoapEndpoint", "CoapStats",
    "BadOption", "BadRequest", "CoapLocalError", "CoapWireError", "Forbidden",
    "InternalServerError", "MethodNotAllowed", "NotAcceptable", "NotFound", "RenderableError",
    "RequestEntityIncomplete", "RequestEntityTooLarge", "ServiceUnavailable", "Unauthorized",
    "UnsupportedContentFormat",
    "Event", "ObserverGone", "RequestFailed", "RequestReceived", "ResponseReceived",
    "Link", "format_links", "parse_links",
    "Message", "decode_message_untrusted", "encode_message",
    "CF_CBOR", "CF_LINK_FORMAT", "CF_TEXT", "BlockValue",
]
