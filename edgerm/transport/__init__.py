"""Trio transports of EdgeRM: CoAP over UDP (:mod:`.coap`) and WebSocket (:mod:`.websocket`).

Both carry the same CBOR messages; this package only moves bytes, the protocol cores live in
:mod:`edgerm.coap` and the master/agent packages.

The names below are loaded on first use, so that a process importing only
:mod:`edgerm.transport.websocket` (a Linux agent on WebSocket) does not also load the CoAP stack.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_WEBSOCKET = ("Backoff", "ConnectionClosed", "WebSocketConfig", "WsConnection",
              "connect_websocket", "run_with_reconnect", "serve_websocket")
_COAP = ("ClientObservation", "ClientResponse", "CoapClient", "CoapRequestError", "CoapServer",
         "CoapTimeout", "Observation", "ObservationGone", "Request", "Response", "Site",
         "open_coap_client", "serve_coap")

__all__ = [
    "Backoff", "ConnectionClosed", "WebSocketConfig", "WsConnection", "connect_websocket",
    "run_with_reconnect", "serve_websocket",
    "ClientObservation", "ClientResponse", "CoapClient", "CoapRequestError", "CoapServer",
    "CoapTimeout", "Observation", "ObservationGone", "Request", "Response", "Site",
    "open_coap_client", "serve_coap",
]


def __getattr__(name: str) -> Any:
    if name in _WEBSOCKET:
        return getattr(importlib.import_module("edgerm.transport.websocket"), name)
    if name in _COAP:
        return getattr(importlib.import_module("edgerm.transport.coap"), name)
    raise AttributeError(f"module 'edgerm.transport' has no attribute {name!r}")
