"""The master shell's side of OSCORE on CoAP (docs/protocol.md "Authentication of the agent
link"): the `Site.oscore` hook that unprotects every request carrying an OSCORE option
before it is routed, and the `protect` it leaves on the inner request, through which every
answer to it goes out.

A request that fails (unknown kid, stale Partial IV, bad tag: plain 4.01 with
`AgentReply{error UNAUTHENTICATED}`; malformed option: 4.02) is answered in the receive loop
unprotected and changes nothing; a verified one is routed by its inner Uri-Path (`a`, `c`,
`m/<sha>`, `g`) to the same handlers as before, which find the verified `Inner`
(edgerm_master.oscore_calls) in `request.context` and call `core.agent_call_protected`.
A standby answers with its plain NOT_LEADER refusal (it holds no agent's context; a forged
refusal can at most make an agent try its next master).

Gateways (edgerm_master/gateways.py) use the same pieces: `core.oscore_unprotect(option,
ciphertext)` -> `Inner | Refusal`, `core.agent_call_protected(inner, ...)`,
`core.oscore_protect(inner, code, payload, ...)`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from edgerm.coap.codes import Code
from edgerm.transport.coap import Request, Response
from edgerm.wire import CONTENT_FORMAT_CBOR
from edgerm_master.listen import peer_address
from edgerm_master.logs import log_agents
from edgerm_master.members import Role
from edgerm_master.oscore_calls import Inner, Refusal
from edgerm_master.refusals import coap_agent_refusal, not_leader

if TYPE_CHECKING:
    from edgerm_master.service import MasterService

__all__ = ["oscore_request", "inner_of", "plain"]

_OPTION_OSCORE = 9


def oscore_request(svc: MasterService, request: Request) -> Request | Response:
    """`Site.oscore`: the verified inner request (`context` the `Inner`, `protect` set) or
    the plain answer to send."""
    if svc.role is not Role.LEADER:
        return coap_agent_refusal(b"", not_leader(svc.leader, "coap"))
    option = b""
    for num, value in request.options:
        if num == _OPTION_OSCORE:
            option = value
            break
    core = svc.core
    found = core.oscore_unprotect(option, request.payload, svc.clock())
    if isinstance(found, Refusal):
        core.state.refusal_log.log(
            log_agents, logging.WARNING, svc.clock(),
            f"refused an OSCORE request from {peer_address(request.remote)}: {found.reason}",
            {"event": "agent_refused", "agent_id": 0, "peer": peer_address(request.remote),
             "code": "UNAUTHENTICATED" if found.code == Code.UNAUTHORIZED else "BAD_OPTION"})
        return Response(found.code, found.payload,
                        CONTENT_FORMAT_CBOR if found.payload else None)
    inner = request.inner(found.code, found.path, found.payload, found.content_format,
                          found.options)
    inner.context = found
    inner.protect = _protector(svc, found)
    return inner


def _protector(svc: MasterService, found: Inner) -> Callable[[Response], Response]:
    core = svc.core

    def protect(response: Response) -> Response:
        code, options, ciphertext = core.oscore_protect(
            found, response.code, response.payload, response.content_format,
            list(response.options) if response.options else None,
            notification=response.observe)
        if core.records_emitted > svc._durable:
            svc._after_core()   # a new bound of the master's sequence number to commit
        return Response(code, ciphertext, None, options, observe=response.observe,
                        remember=response.remember)
    return protect


def inner_of(request: Request) -> Inner | None:
    """The verified `Inner` of a protected request (None for a plain one)."""
    ctx = request.context
    if request.protect is None:
        return None
    return ctx if isinstance(ctx, Inner) else ctx[0] if isinstance(ctx, tuple) else None


def plain(request: Request, response: Response) -> Response:
    """Send `response` unprotected (a refusal the core made without authenticating: a stale
    seq racing its original)."""
    request.protect = None
    return response
