"""The master's side of gateways (docs/gateway.md): CoAP POST `g`, a `GatewayBatch` of several
devices' calls relayed by one gateway, answered with one `GatewayReplies`.

Each entry is a device's own signed AgentCall, handled exactly as if it had come on `a` (same
checks, records and durability; the same signed reply); the batch itself carries no authority:
a gateway can only pass on what its devices signed. A batch of steady heartbeats only (a
gateway's heartbeat round) is answered in the receive loop, like a lone steady heartbeat.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgerm.coap.codes import Code
from edgerm.transport.coap import Request, Response
from edgerm.wire import CONTENT_FORMAT_CBOR, DecodeError, decode, encode, pb
from edgerm_master.core import AgentResult
from edgerm_master.fastpath import parse_steady_heartbeat_untrusted
from edgerm_master.members import Role

if TYPE_CHECKING:
    from edgerm_master.service import MasterService

__all__ = ["GATEWAY_BATCH_MAX", "gateway_batch", "gateway_inline"]

E = pb.ErrorCode
# Calls in one gateway batch; a gateway sends fewer (its [gateway] batch_max, 32 by default).
GATEWAY_BATCH_MAX = 64


def gateway_inline(svc: MasterService, request: Request) -> Response | None:
    """A batch of steady heartbeats only (a gateway's heartbeat round), answered in the
    receive loop like a lone steady heartbeat (`MasterService._coap_agent_inline`); anything
    else, or calls that did emit records, goes to `gateway_batch` (with the results in
    `request.context`, so nothing is applied twice)."""
    if svc.role is not Role.LEADER or request.content_format not in (
            None, CONTENT_FORMAT_CBOR):
        return None
    core = svc.core
    if svc._durable < core.records_emitted:
        return None
    try:
        batch = decode(pb.GatewayBatch, request.payload)
    except DecodeError:
        return None
    if not 0 < len(batch.calls) <= GATEWAY_BATCH_MAX:
        return None
    for call in batch.calls:
        steady = parse_steady_heartbeat_untrusted(call)
        if steady is None or steady[4]:
            return None
    peer = _peer(request)
    now = svc.clock()
    results = [core.agent_call(call, now, "coap", peer) for call in batch.calls]
    if core.records_emitted > svc._durable or any(r.module is not None for r in results):
        request.context = results
        return None
    svc._after_core()
    return Response(Code.CHANGED, encode(pb.GatewayReplies(replies=[r.data for r in results])),
                    CONTENT_FORMAT_CBOR, remember=True)


async def gateway_batch(svc: MasterService, request: Request) -> Response:
    """A gateway's batch (docs/gateway.md): each entry is a device's own signed AgentCall,
    handled exactly as if it had come on `a` (same checks, same records, same signed
    reply); the answers go back in one `GatewayReplies`, in order, once every record of
    them is durable. The batch itself carries no authority: a gateway can only pass on
    what its devices signed."""
    results: list[AgentResult] | None = request.context  # applied by the inline handler
    if results is not None:
        return Response(Code.CHANGED, encode(pb.GatewayReplies(
            replies=[await svc._agent_result(r) for r in results])),
            CONTENT_FORMAT_CBOR, remember=True)
    if svc.role is not Role.LEADER:
        return Response(Code.SERVICE_UNAVAILABLE, encode(svc._not_leader("coap")),
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
    peer = _peer(request)
    now = svc.clock()
    results = [svc.core.agent_call(call, now, "coap", peer) for call in batch.calls]
    replies = [await svc._agent_result(result) for result in results]
    # Remembered: a retransmitted batch must not be applied twice (its calls' seqs would be
    # refused as replays, and the gateway would relay those refusals).
    return Response(Code.CHANGED, encode(pb.GatewayReplies(replies=replies)),
                    CONTENT_FORMAT_CBOR, remember=True)


def _peer(request: Request) -> str:
    from edgerm_master.service import peer_address

    return peer_address(request.remote)
