"""The master's side of gateways (docs/gateway.md): CoAP POST `g`, a `GatewayBatch` of several
devices' requests relayed by one gateway, answered with one `GatewayReplies`.

The batch is OSCORE-protected with the gateway's own agent's context (`service_oscore.py`
verified it before it was routed here; its answer is protected the same way). Each entry is a
device's own request, which the gateway could not read: an OSCORE-protected one
(`edgerm.oscore.pack_forwarded`: outer code, OSCORE option, ciphertext), unprotected and routed
exactly as if it had come alone (`a`, `m/<sha>`: same checks, records and durability) and
answered with its protected response in the same form; or a plain first registration (a CBOR
map), handled as on `a` and answered with the signed `Registered`. A refusal the master sends
unprotected (4.01 for an unknown kid, a stale Partial IV or a bad tag) is a plain
`AgentReply{error}` entry. The batch itself carries no authority over the devices: a gateway can
only pass on what they protected.

A batch of steady heartbeats only (a gateway's heartbeat round) is answered in the receive loop,
entry by entry through the same inline path as a lone steady heartbeat; the first entry that
path declines hands the rest (and what was done) to the queued handler, so nothing is applied
twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgerm.coap.codes import Code
from edgerm.oscore import OscoreError, pack_forwarded, unpack_forwarded
from edgerm.transport.coap import Request, Response
from edgerm.wire import CONTENT_FORMAT_CBOR, DecodeError, decode, encode, pb
from edgerm_master.members import Role
from edgerm_master.refusals import coap_refusal, not_leader

if TYPE_CHECKING:
    from edgerm_master.service import MasterService

__all__ = ["GATEWAY_BATCH_MAX", "gateway_batch", "gateway_inline"]

E = pb.ErrorCode
# Calls in one gateway batch; a gateway sends fewer (its [gateway] batch_max, 32 by default).
GATEWAY_BATCH_MAX = 64
_OSCORE = 9
# A protected entry's first byte is its outer code (< 0x80); a plain one is a CBOR map.
_PLAIN_FIRST = 0x80
# The error a plain refusal without an AgentReply payload stands for (a 4.02 has none).
_COAP_TO_ERROR: dict[int, pb.ErrorCode] = {
    Code.BAD_REQUEST: E.BAD_REQUEST, Code.UNAUTHORIZED: E.UNAUTHENTICATED,
    Code.BAD_OPTION: E.BAD_REQUEST, Code.FORBIDDEN: E.FORBIDDEN, Code.NOT_FOUND: E.NOT_FOUND,
    Code.SERVICE_UNAVAILABLE: E.UNAVAILABLE,
}


class _Progress:
    """How far the inline handler got: the reply entries so far, and the inner request of the
    entry it declined (None: it declined before the first entry's unprotection)."""

    __slots__ = ("replies", "pending")

    def __init__(self) -> None:
        self.replies: list[bytes] = []
        self.pending: Request | None = None


def gateway_inline(svc: MasterService, request: Request) -> Response | None:
    """A batch whose every entry is a steady protected heartbeat, answered in the receive loop
    (`MasterService._coap_agent_inline` per entry); else the queued `gateway_batch` goes on
    from where this stopped (`request.context`)."""
    if svc.role is not Role.LEADER or not _protected_batch(request):
        return None
    if request.content_format not in (None, CONTENT_FORMAT_CBOR):
        return None
    try:
        batch = decode(pb.GatewayBatch, request.payload)
    except DecodeError:
        return None
    if not 0 < len(batch.calls) <= GATEWAY_BATCH_MAX:
        return None
    _accept_batch_seq(svc, request)
    progress = _Progress()
    for entry in batch.calls:
        if not entry or entry[0] >= _PLAIN_FIRST:
            break          # a first registration: the queued handler
        inner = _unprotect(svc, request, entry)
        if isinstance(inner, bytes):
            progress.replies.append(inner)
            continue
        if inner.path != ("a",):
            progress.pending = inner
            break
        response = svc._coap_agent_inline(inner)
        if response is None:
            progress.pending = inner
            break
        progress.replies.append(_reply_entry(inner, response))
    if len(progress.replies) < len(batch.calls):
        request.context = progress
        return None
    return Response(Code.CHANGED, encode(pb.GatewayReplies(replies=progress.replies)),
                    CONTENT_FORMAT_CBOR, remember=True)


async def gateway_batch(svc: MasterService, request: Request) -> Response:
    """A gateway's batch (docs/gateway.md): each entry handled exactly as if it had come alone
    (see the module); the answers go back in one `GatewayReplies`, in order, once every record
    of them is durable."""
    progress = request.context if isinstance(request.context, _Progress) else None
    if progress is None:
        if svc.role is not Role.LEADER:
            return coap_refusal(not_leader(svc.leader, "coap"))
        if not _protected_batch(request):
            return Response(Code.UNAUTHORIZED, encode(pb.AgentReply(error=pb.Error(
                code=E.UNAUTHENTICATED, message="a gateway's batch must be OSCORE-protected "
                "with its own agent's context (edgerm-agent with [gateway])"))),
                CONTENT_FORMAT_CBOR)
        bad = svc._check_format(request)
        if bad is not None:
            return bad
    try:
        batch = decode(pb.GatewayBatch, request.payload)
    except DecodeError as e:
        return Response(Code.BAD_REQUEST, encode(pb.Error(
            code=E.BAD_REQUEST, message=f"not a GatewayBatch: {e}")), CONTENT_FORMAT_CBOR)
    if len(batch.calls) > GATEWAY_BATCH_MAX:
        return Response(Code.REQUEST_ENTITY_TOO_LARGE, encode(pb.Error(
            code=E.TOO_LARGE, message=f"{len(batch.calls)} calls in one batch; send at "
            f"most {GATEWAY_BATCH_MAX}")), CONTENT_FORMAT_CBOR)
    if progress is None:
        _accept_batch_seq(svc, request)
    replies: list[bytes] = []
    start = 0
    if progress is not None:
        replies = list(progress.replies)
        start = len(replies)
        if progress.pending is not None:
            replies.append(await _handle_inner(svc, progress.pending))
            start += 1
    for entry in batch.calls[start:]:
        replies.append(await _handle_entry(svc, request, entry))
    # Remembered: a retransmitted batch must not be applied twice (its entries' Partial IVs
    # would be refused as replays, and the gateway would relay those refusals).
    return Response(Code.CHANGED, encode(pb.GatewayReplies(replies=replies)),
                    CONTENT_FORMAT_CBOR, remember=True)


# -- one entry ------------------------------------------------------------------------------

async def _handle_entry(svc: MasterService, request: Request, entry: bytes) -> bytes:
    if entry and entry[0] >= _PLAIN_FIRST:
        # A plain call: a device's first registration (anything else the core refuses: on
        # CoAP only a first registration may be mac-signed).
        result = svc.core.agent_call(entry, svc.clock(), "coap", _peer(request))
        return await svc._agent_result(result)
    inner = _unprotect(svc, request, entry)
    if isinstance(inner, bytes):
        return inner
    return await _handle_inner(svc, inner)


async def _handle_inner(svc: MasterService, inner: Request) -> bytes:
    """A verified entry's inner request, routed as on the master's own CoAP port."""
    if inner.path == ("a",) and inner.method == Code.POST:
        response = await svc._coap_agent(inner)
    elif inner.path[:1] == ("m",) and inner.method == Code.GET:
        response = await svc._coap_module(inner)
    else:
        # `c` (Observe has no way down through a batch), a nested `g`, anything else.
        svc.core.oscore_accept_seq(inner.context)
        response = Response(Code.NOT_FOUND, b"not behind a gateway")
    return _reply_entry(inner, response)


def _unprotect(svc: MasterService, request: Request, entry: bytes) -> Request | bytes:
    """The verified inner request of a protected entry, or the plain reply entry refusing it
    (the same refusals as on the master's own port; nothing changed)."""
    from edgerm_master.service_oscore import oscore_request

    try:
        code, option, ciphertext = unpack_forwarded(entry)
    except OscoreError as e:
        return _plain(Response(Code.BAD_OPTION, str(e).encode()))
    outer = request.inner(code, (), ciphertext, None, [(_OSCORE, option)])
    outer.observation = None
    found = oscore_request(svc, outer)
    if isinstance(found, Response):
        return _plain(found)
    return found


def _reply_entry(inner: Request, response: Response) -> bytes:
    """The entry for the answer to a protected entry: protected with the device's context
    (`inner.protect`), or plain when the master answers it unprotected."""
    if inner.protect is None:
        return _plain(response)
    outer = inner.protect(response)
    value = next((v for n, v in outer.options if n == _OSCORE), None)
    if value is None:
        return _plain(outer)
    return pack_forwarded(outer.code, value, outer.payload)


def _plain(response: Response) -> bytes:
    """A plain reply entry: the refusal's `AgentReply{error}` as the master sent it, or one
    naming its code when it had none (the gateway reads the code back from the error)."""
    payload = response.payload
    if payload and payload[0] >= _PLAIN_FIRST:
        try:
            if decode(pb.AgentReply, payload).HasField("error"):
                return payload
        except DecodeError:
            pass
    return encode(pb.AgentReply(error=pb.Error(
        code=_COAP_TO_ERROR.get(response.code, E.INTERNAL),
        message=payload.decode("utf-8", "replace")[:200] or f"CoAP {response.code:#04x}")))


def _protected_batch(request: Request) -> bool:
    return request.protect is not None


def _accept_batch_seq(svc: MasterService, request: Request) -> None:
    """The gateway agent's Partial IV of this batch is used up (the core does not see `g`)."""
    svc.core.oscore_accept_seq(request.context)


def _peer(request: Request) -> str:
    from edgerm_master.service import peer_address

    return peer_address(request.remote)
