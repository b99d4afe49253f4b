"""Trio shell for the CoAP core: a UDP server routing to async handlers, and a client.

All protocol decisions are in the sans-IO :class:`edgerm.coap.CoapEndpoint`; the shell moves
datagrams, runs handlers and arms one timer. It is split by job:

* :mod:`.coap_shell` — sockets, the receive loop, ``_transmit()`` and the one timer, shared
  by server and client (:class:`~.coap_shell.UdpShell`);
* :mod:`.coap_server` — :class:`Site` routing, :class:`CoapServer` with its pool of handler
  workers and watchdog, :class:`Observation` handles for notifications;
* :mod:`.fair_queue` — the queue in front of the workers, fair to peers under a flood;
* :mod:`.coap_client` — :class:`CoapClient`, :func:`open_coap_client`, client observations.

This module re-exports their public names: import from here.
"""

from __future__ import annotations

from edgerm.transport.coap_client import (
    ClientObservation,
    ClientResponse,
    CoapClient,
    CoapRequestError,
    CoapTimeout,
    open_coap_client,
)
from edgerm.transport.coap_server import (
    CoapServer,
    Handler,
    Observation,
    ObservationGone,
    Request,
    Response,
    Site,
    serve_coap,
)
from edgerm.transport.coap_shell import ShellStats

__all__ = [
    "Request", "Response", "Handler", "Site", "Observation", "ObservationGone",
    "CoapServer", "serve_coap", "ShellStats",
    "CoapClient", "ClientResponse", "ClientObservation", "CoapRequestError", "CoapTimeout",
    "open_coap_client",
]
