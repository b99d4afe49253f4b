"""The agent core on an OSCORE link (CoAP): after the first registration its calls go out
bare for the link to protect, and only verified replies (or plain refusals) are taken; joined
to a real master core, with the protection done by edgerm.oscore as the CoAP link does it."""

from __future__ import annotations

import random

from edgerm.coap.codes import Code
from edgerm.oscore import protect_request, unprotect_response
from edgerm.wire import decode, encode, pb, sign
from edgerm_agent.core import AgentCore
from edgerm_agent.events import OutgoingCall
from edgerm_master.oscore_calls import Inner
from edgerm_master.testing import Cluster

from .pair import core_config


def oscore_core() -> AgentCore:
    core = AgentCore(core_config(), rng=random.Random(1))
    core.oscore = True
    return core


def send(c: Cluster, core: AgentCore, out: OutgoingCall, notification: bool = False
         ) -> tuple[bytes, bool]:
    """What the CoAP link and the master do with one call: (reply bytes, protected)."""
    if not out.protected:
        result = c.master.agent_call(out.data, c.now, "coap", "x:1", mac_calls=False)
        c.flush()
        return result.data, False
    ctx = core.oscore_context()
    option, ct = protect_request(ctx, out.seq, Code.POST, [(11, b"a"), (12, b"\x3c")],
                                 out.data)
    inner = c.master.oscore_unprotect(option, ct)
    assert isinstance(inner, Inner)
    result = c.master.agent_call_protected(inner, c.now, "coap", "x:1")
    c.flush()
    if not result.agent_id:
        return result.data, False
    _, options, ciphertext = c.master.oscore_protect(inner, Code.CHANGED, result.data,
                                                     notification=notification)
    _, _, _, payload = unprotect_response(ctx, out.seq, options[0][1], ciphertext)
    return payload, True


def registered(c: Cluster) -> AgentCore:
    core = oscore_core()
    core.start(c.now)
    out = core.next_call(c.now)
    assert out is not None and out.kind == "register" and not out.protected  # plain, signed
    core.receive_reply(*send(c, core, out)[:1], c.now)
    assert core.registered and core.agent_id
    return core


def test_calls_after_the_first_registration_go_out_bare_and_replies_verified() -> None:
    c = Cluster()
    core = registered(c)
    c.step(10)
    out = core.next_call(c.now)
    assert out is not None and out.protected and out.kind == "heartbeat"
    call = decode(pb.AgentCall, out.data)
    assert call.agent_id == 0 and call.seq == 0 and not call.mac   # OSCORE carries them
    assert out.seq == core.seq
    data, protected = send(c, core, out)
    assert protected
    core.receive_reply(data, c.now, protected=True)
    assert core.stats["bad_replies"] == 0 and core.stats["failed_calls"] == 0
    assert c.master.agents[core.agent_id].seq == core.seq


def test_a_signed_reply_to_a_protected_call_is_dropped_no_downgrade() -> None:
    c = Cluster()
    core = registered(c)
    c.step(10)
    out = core.next_call(c.now)
    assert out is not None and out.protected
    forged = sign(pb.AgentReply(seq=out.seq), core.secret)   # what the mac link would take
    core.receive_reply(forged, c.now)
    assert core.stats["bad_replies"] == 1 and core.stats["failed_calls"] == 1


def test_a_plain_refusal_is_taken_like_an_unsigned_error() -> None:
    c = Cluster()
    core = registered(c)
    c.step(10)
    out = core.next_call(c.now)
    assert out is not None and out.protected
    refusal = encode(pb.AgentReply(error=pb.Error(code=pb.UNAUTHENTICATED, message="no")))
    core.receive_reply(refusal, c.now)
    assert not core.registered   # re-registers (as after an unsigned UNAUTHENTICATED)
    out = core.next_call(c.now)
    assert out is not None and out.kind == "register" and out.protected   # same identity
    data, protected = send(c, core, out)
    core.receive_reply(data, c.now, protected)
    assert core.registered and core.stats["bad_replies"] == 0


def test_pushes_are_taken_only_verified_on_an_oscore_link() -> None:
    c = Cluster()
    core = registered(c)
    signed_push = sign(pb.AgentReply(commands=[pb.Command(id=1, kill=pb.Kill(task=9))]),
                       core.secret)
    core.receive_push(signed_push, c.now)
    assert core.stats["bad_replies"] == 1 and core.stats["commands"] == 0
    bare = encode(pb.AgentReply(commands=[pb.Command(id=1, kill=pb.Kill(task=9))]))
    core.receive_push(bare, c.now, protected=True)
    assert core.stats["bad_replies"] == 1 and core.command_ack == 1
