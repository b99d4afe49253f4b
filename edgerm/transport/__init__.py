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
from edgerm.transport.websocket import (
    Backoff,
    ConnectionClosed,
    WebSocketConfig,
    WsConnection,
    connect_websocket,
    run_with_reconnect,
    serve_websocket,
)

__all__ = [
    "Backoff", "ConnectionClosed", "WebSocketConfig", "WsConnection", "connect_websocket",
    "run_with_reconnect", "serve_websocket",
    "ClientObservation", "ClientResponse", "CoapClient", "CoapRequestError", "CoapServer",
    "CoapTimeout", "Observation", "ObservationGone", "Request", "Response", "Site",
    "open_coap_client", "serve_coap",
]
