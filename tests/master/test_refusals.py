"""The refusals a standby or a master without its store answers with (edgerm_master/refusals.py):
built from the call's bytes alone, echoing its seq / call_id, never failing on garbage."""

from __future__ import annotations

from edgerm.coap.codes import Code
from edgerm.wire import CONTENT_FORMAT_CBOR, decode, encode, pb
from edgerm_master.members import MemberInfo
from edgerm_master.refusals import (
    agent_error,
    coap_agent_refusal,
    coap_refusal,
    framework_error,
    not_leader,
    store_unavailable,
)

LEADER = MemberInfo("m1", {"coap": "coap://10.0.0.1:5683", "ws": "ws://10.0.0.1:8080"})


def test_not_leader_names_the_leaders_url_for_the_transport() -> None:
    for transport, url in (("coap", "coap://10.0.0.1:5683"), ("ws", "ws://10.0.0.1:8080")):
        error = not_leader(LEADER, transport)
        assert error.code == pb.ErrorCode.NOT_LEADER
        assert error.leader == url
        assert error.message == f"this master is a standby; the leader is {url}"


def test_not_leader_without_a_known_leader_or_url_says_to_try_another_master() -> None:
    for error in (not_leader(None, "coap"), not_leader(LEADER, "http")):
        assert error.code == pb.ErrorCode.NOT_LEADER
        assert error.leader == ""
        assert "try another master" in error.message


def test_store_unavailable_gives_the_reason_and_what_to_do() -> None:
    error = store_unavailable("etcd has no quorum")
    assert error.code == pb.ErrorCode.UNAVAILABLE
    assert error.message == ("the master cannot commit now: etcd has no quorum; "
                             "try again shortly")


def test_an_agent_error_echoes_the_calls_seq_and_0_for_garbage() -> None:
    error = not_leader(LEADER, "ws")
    call = encode(pb.AgentCall(agent_id=7, seq=41))
    reply = decode(pb.AgentReply, agent_error(call, error))
    assert reply.seq == 41 and reply.error == error
    for garbage in (b"", b"\xff\x00 not cbor"):
        reply = decode(pb.AgentReply, agent_error(garbage, error))
        assert reply.seq == 0 and reply.error == error


def test_a_framework_error_echoes_the_calls_call_id_and_0_for_garbage() -> None:
    error = store_unavailable("down")
    call = encode(pb.FrameworkCall(call_id=12))
    event = decode(pb.FrameworkEvent, framework_error(call, error))
    assert event.call_id == 12 and event.error == error
    event = decode(pb.FrameworkEvent, framework_error(b"\xff", error))
    assert event.call_id == 0 and event.error == error


def test_coap_refusals_are_5_03_in_cbor() -> None:
    error = not_leader(LEADER, "coap")
    response = coap_agent_refusal(encode(pb.AgentCall(seq=5)), error)
    assert response.code == Code.SERVICE_UNAVAILABLE
    assert response.content_format == CONTENT_FORMAT_CBOR
    reply = decode(pb.AgentReply, response.payload)
    assert reply.seq == 5 and reply.error.leader == "coap://10.0.0.1:5683"
    bare = coap_refusal(error)
    assert bare.code == Code.SERVICE_UNAVAILABLE
    assert bare.content_format == CONTENT_FORMAT_CBOR
    assert decode(pb.Error, bare.payload) == error
