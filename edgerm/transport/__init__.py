"""Trio transports of EdgeRM: CoAP over UDP (:mod:`.coap`) and WebSocket (:mod:`.websocket`).

Both carry the same CBOR messages; this package only moves bytes, the protocol cores live in
:mod:`edgerm.coap` and the master/agent packages.
"""

from edgerm.transport.coap import (
    ClientObservation,
    ClientResponse,
    CoapClient,
    CoapRequestError,
    CoapServer,
    CoapTimeout,
    Observation,
    ObservationGone,
    Request,
    Response,
    Site,
    open_coap_client,
    serve_coap,
)

__all__ = [
    "ClientObservation", "ClientResponse", "CoapClient", "CoapRequestError", "CoapServer",
    "CoapTimeout", "Observation", "ObservationGone", "Request", "Response", "Site",
    "open_coap_client", "serve_coap",
]
