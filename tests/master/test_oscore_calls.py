"""OSCORE on the master's side of the CoAP agent link, sans-IO (edgerm_master/oscore_calls.py):
what is refused and changes nothing, which answers reuse the request's nonce and which carry
the master's own sequence number, and how that number is persisted ahead and resumed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edgerm.coap.codes import Code
from edgerm.wire import decode, pb
from edgerm_master import records as rec
from edgerm_master.oscore_calls import MASTER_SEQ_RESERVE, Inner, Refusal, next_master_seq
from edgerm_master.testing import Cluster, ScriptedAgent

NewCluster = Callable[..., Cluster]


def registered(c: Cluster) -> ScriptedAgent:
    a = ScriptedAgent("pi")
    c.exchange(a)   # the first registration: plain, signed with the token's key
    assert a.agent_id
    return a


def protected_call(c: Cluster, a: ScriptedAgent, data: bytes | None = None
                   ) -> tuple[int, bytes, bytes, Inner | Refusal]:
    p = a.protect(data if data is not None else a.heartbeat_call())
    assert p is not None
    seq, option, ciphertext = p
    return seq, option, ciphertext, c.master.oscore_unprotect(option, ciphertext)


def answer(c: Cluster, inner: Inner) -> tuple[int, list[tuple[int, bytes]], bytes, Any]:
    result = c.master.agent_call_protected(inner, c.now, "coap", "x:1")
    code, options, ciphertext = c.master.oscore_protect(inner, Code.CHANGED, result.data)
    return code, options, ciphertext, result


def test_a_protected_heartbeat_is_answered_protected_with_the_request_nonce() -> None:
    c = Cluster()
    a = registered(c)
    seq, _, _, inner = protected_call(c, a)
    assert isinstance(inner, Inner) and inner.seq == seq and inner.path == ("a",)
    code, options, ciphertext, result = answer(c, inner)
    assert result.agent_id == a.agent_id and result.error == 0
    assert code == Code.CHANGED and options == [(9, b"")]   # the request's nonce reused
    piv, inner_code, reply = a.unprotect(seq, b"", ciphertext)
    assert piv is None and inner_code == Code.CHANGED
    msg = decode(pb.AgentReply, reply)
    assert msg.seq == 0 and not msg.mac and not msg.HasField("error")
    assert c.master.agents[a.agent_id].seq == seq


def test_the_steady_heartbeat_fast_path_takes_both_forms_and_reads_any_other_format(
        ) -> None:
    """The plaintext compare (no option parsing) takes a steady heartbeat without an inner
    Content-Format (the agents' form) and with 60 (older agents'); anything else is parsed,
    its Content-Format read for the handler to refuse (4.15: test_service_coap_inline)."""
    from edgerm_master import oscore_calls

    c = Cluster()
    a = registered(c)
    got = []
    for cf in (None, 60, 0):
        p = a.protect(a.heartbeat_call(), content_format=cf)
        assert p is not None
        inner = c.master.oscore_unprotect(p[1], p[2])
        assert isinstance(inner, Inner) and inner.path == ("a",)
        assert inner.payload == b"\xa1\x05\xa0"
        got.append((inner.content_format, inner.options))
    assert got[0] == (None, [(11, b"a")]) and got[0][1] is oscore_calls._STEADY_OPTIONS
    assert got[1][0] == 60 and got[1][1] is oscore_calls._STEADY_OPTIONS_CF
    assert got[2] == (0, [(11, b"a"), (12, b"")])


def test_refused_requests_change_nothing() -> None:
    c = Cluster()
    a = registered(c)
    seq, option, ciphertext, inner = protected_call(c, a)
    assert isinstance(inner, Inner)
    answer(c, inner)
    c.flush()
    committed, last = c.committed, c.master.agents[a.agent_id].seq
    # The same datagram again (a replay), a flipped bit, another kid, a truncated tag:
    # 4.01 with AgentReply{UNAUTHENTICATED}, unprotected.
    flipped = bytes([ciphertext[0] ^ 1]) + ciphertext[1:]
    _, option2, ciphertext2, _ = protected_call(c, a)
    other_kid = option2[:-1] + bytes([option2[-1] + 1])
    for opt, ct in ((option, ciphertext), (option2, flipped), (other_kid, ciphertext2),
                    (option2, ciphertext2[:-1]), (option2, b"")):
        refusal = c.master.oscore_unprotect(opt, ct)
        assert isinstance(refusal, Refusal) and refusal.code == Code.UNAUTHORIZED, opt
        assert decode(pb.AgentReply, refusal.payload).error.code == pb.UNAUTHENTICATED
    # A malformed OSCORE option: 4.02.
    for bad in (b"", b"\x08", b"\xe9\x01\x01", b"\x0d\x01"):
        refusal = c.master.oscore_unprotect(bad, ciphertext2)
        assert isinstance(refusal, Refusal) and refusal.code == Code.BAD_OPTION, bad
    c.flush()
    assert c.committed == committed and c.master.agents[a.agent_id].seq == last
    # The genuine one still goes through.
    assert isinstance(c.master.oscore_unprotect(option2, ciphertext2), Inner)


def test_a_stale_seq_racing_its_original_is_refused_plain_by_the_core() -> None:
    """Two copies with new message ids, both past the unprotect check before either reached
    the core: the second is refused unauthenticated (agent_id 0: the shell answers plain)."""
    c = Cluster()
    a = registered(c)
    _, option, ciphertext, first = protected_call(c, a)
    second = c.master.oscore_unprotect(option, ciphertext)
    assert isinstance(first, Inner) and isinstance(second, Inner)
    assert c.master.agent_call_protected(first, c.now).error == 0
    late = c.master.agent_call_protected(second, c.now)
    assert late.error == pb.UNAUTHENTICATED and late.agent_id == 0


def test_a_signed_call_other_than_a_first_registration_is_refused_on_coap() -> None:
    c = Cluster()
    a = registered(c)
    result = c.master.agent_call(a.heartbeat_call(), c.now, "coap", "x:1", mac_calls=False)
    assert result.error == pb.UNAUTHENTICATED and result.agent_id == 0
    assert "OSCORE" in decode(pb.AgentReply, result.data).error.message


def test_a_protected_call_carrying_agent_id_seq_or_mac_is_a_bad_request() -> None:
    c = Cluster()
    a = registered(c)
    seq = a.seq + 1
    a.seq = seq
    call = pb.AgentCall(seq=seq, heartbeat=pb.Heartbeat())
    from edgerm.oscore import protect_request
    from edgerm.wire import encode
    option, ct = protect_request(a.oscore_context(), seq, Code.POST,
                                 [(11, b"a"), (12, b"\x3c")], encode(call))
    inner = c.master.oscore_unprotect(option, ct)
    assert isinstance(inner, Inner)
    result = c.master.agent_call_protected(inner, c.now)
    assert result.error == pb.BAD_REQUEST and result.agent_id == a.agent_id


def test_answers_to_unsynced_agents_and_notifications_carry_the_master_seq(
        new_cluster: NewCluster) -> None:
    c = new_cluster()
    a = c.add_agent(ScriptedAgent("pi"))
    bound = c.master.state.master_seq_bound
    assert bound == c.master.state.master_seq + MASTER_SEQ_RESERVE
    c = new_cluster()   # a restart: the agent is not synced; its heartbeat's freshness unknown
    first = c.master.state.master_seq
    assert first == bound   # resumed at the stored bound: no number is used twice
    seq, _, _, inner = protected_call(c, a)
    assert isinstance(inner, Inner) and not inner.fresh
    code, options, ciphertext, result = answer(c, inner)
    value = options[0][1]
    assert value and value[0] == len(value) - 1            # flags | PIV, no kid
    piv, _, reply = a.unprotect(seq, value, ciphertext)
    assert piv == first
    assert decode(pb.AgentReply, reply).commands[0].HasField("reregister")
    # An Observe response (notification) always carries the master's own number.
    c.settle(a)
    seq, _, _, inner = protected_call(c, a)
    assert isinstance(inner, Inner) and inner.fresh
    result = c.master.agent_call_protected(inner, c.now)
    code, options, ciphertext = c.master.oscore_protect(inner, Code.CONTENT, result.data,
                                                        notification=True)
    assert code == Code.CONTENT
    assert a.unprotect(seq, options[0][1], ciphertext)[0] == first + 1


def test_the_next_bound_is_recorded_half_way() -> None:
    c = Cluster()
    st = c.master.state
    st.master_seq, st.master_seq_bound = 10, 10 + MASTER_SEQ_RESERVE
    c.master.take_records()
    for _ in range(MASTER_SEQ_RESERVE // 2):
        next_master_seq(st)
    assert c.master.take_records() == []
    n = next_master_seq(st)
    assert c.master.take_records() == [rec.SetOscoreSeqBound(n + MASTER_SEQ_RESERVE)]
    assert st.master_seq_bound == n + MASTER_SEQ_RESERVE


def test_a_first_registration_on_coap_is_pending_until_its_first_oscore_request() -> None:
    """Key confirmation: only an agent that derived the secret (holds the token) can protect
    a request, so a replayed first registration leaves nothing persisted, offered or shown."""
    c = Cluster()
    a = ScriptedAgent("pi")
    result = c.master.agent_call(a.register_call(), c.now, "coap", "x:1", mac_calls=False)
    a.handle_reply(result.data)
    c.flush()
    assert a.agent_id and c.committed == 0 and not c.master.agents
    assert a.agent_id in c.master.state.pending
    seq, _, _, inner = protected_call(c, a)
    assert isinstance(inner, Inner)
    assert c.master.agent_call_protected(inner, c.now, "coap").error == 0
    c.flush()
    assert list(c.master.agents) == [a.agent_id] and not c.master.state.pending
    assert c.master.agents[a.agent_id].seq == seq and c.committed >= 1


def test_unconfirmed_registrations_expire_and_are_bounded(monkeypatch: Any) -> None:
    from edgerm_master import agents

    monkeypatch.setattr(agents, "PENDING_KEPT", 8)
    PENDING_KEPT = 8
    c = Cluster()
    a = ScriptedAgent("late")
    a.handle_reply(c.master.agent_call(a.register_call(), c.now, "coap", "x:1",
                                       mac_calls=False).data)
    p = a.protect(a.heartbeat_call())
    assert p is not None
    late = c.now + c.master.config.unreachable_after_s
    refusal = c.master.oscore_unprotect(p[1], p[2], late)
    assert isinstance(refusal, Refusal) and refusal.code == Code.UNAUTHORIZED
    assert not c.master.state.pending and not c.master.agents
    for i in range(PENDING_KEPT + 5):
        c.master.agent_call(ScriptedAgent(f"p{i}").register_call(), c.now, "coap", "x:1",
                            mac_calls=False)
    assert len(c.master.state.pending) == PENDING_KEPT and not c.master.agents
    c.flush()
    assert c.committed == 0
