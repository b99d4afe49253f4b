"""The answers of a master that will not serve a call now: pure builders, no I/O, no state.

Two reasons (the service, service.py, decides which applies and sends what these build):
- it is a STANDBY (docs/ha.md): the error NOT_LEADER naming the leader's URL for the call's
  transport (`MemberInfo.urls`; empty when no leader is known yet), unsigned (a standby need
  not hold the agent secrets; clients only follow a leader URL from their own configured list);
- the store cannot be written (no etcd quorum): UNAVAILABLE with the store's reason; the call
  changed nothing, so the client sends it again later.

An agent's refusal echoes the seq of its call and a framework's the call_id of its call (0 when
the call does not decode: a refusal never fails on bad input).
"""

from __future__ import annotations

from edgerm.coap.codes import Code
from edgerm.transport.coap import Response
from edgerm.wire import CONTENT_FORMAT_CBOR, DecodeError, decode, encode, pb
from edgerm_master.members import MemberInfo

__all__ = ["not_leader", "store_unavailable", "agent_error", "framework_error",
           "coap_agent_refusal", "coap_refusal"]


def not_leader(leader: MemberInfo | None, transport: str) -> pb.Error:
    """The refusal of a standby, naming `leader`'s URL for `transport` ("coap", "ws")."""
    url = leader.url(transport) if leader is not None else ""
    text = (f"this master is a standby; the leader is {url}" if url else
            "this master is a standby and knows no leader yet; try another master")
    return pb.Error(code=pb.ErrorCode.NOT_LEADER, message=text, leader=url)


def store_unavailable(why: str | None) -> pb.Error:
    """The refusal while the store cannot be written; `why`: the store's reason."""
    return pb.Error(code=pb.ErrorCode.UNAVAILABLE, message=f"the master cannot commit now: "
                    f"{why}; try again shortly")


def agent_error(call: bytes, error: pb.Error) -> bytes:
    """An AgentReply carrying `error`, with the seq of `call` (0 if it has none)."""
    try:
        seq = decode(pb.AgentCall, call).seq
    except DecodeError:
        seq = 0
    return encode(pb.AgentReply(seq=seq, error=error))


def framework_error(call: bytes, error: pb.Error) -> bytes:
    """A FrameworkEvent carrying `error`, with the call_id of `call` (0 if it has none)."""
    try:
        call_id = decode(pb.FrameworkCall, call).call_id
    except DecodeError:
        call_id = 0
    return encode(pb.FrameworkEvent(call_id=call_id, error=error))


def coap_agent_refusal(payload: bytes, error: pb.Error) -> Response:
    """The CoAP 5.03 answer to an agent call (`a`, `c`): an AgentReply echoing its seq."""
    return Response(Code.SERVICE_UNAVAILABLE, agent_error(payload, error), CONTENT_FORMAT_CBOR)


def coap_refusal(error: pb.Error) -> Response:
    """The CoAP 5.03 answer to a call that is no AgentCall (`m`, `s`): the bare Error."""
    return Response(Code.SERVICE_UNAVAILABLE, encode(error), CONTENT_FORMAT_CBOR)
