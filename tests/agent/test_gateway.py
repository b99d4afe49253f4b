"""The gateway's sans-IO core (edgerm_agent/gateway.py) with a hand-held clock: aggregation
windows, order per device, blind store and forward without lying acks, recovery of kept rows,
and the entries it relays (protected as they came, plain first registrations as they are)."""

from __future__ import annotations

import pytest

from edgerm.coap.codes import Code
from edgerm.oscore import OscoreError, pack_forwarded, unpack_forwarded
from edgerm.wire import decode, encode, pb
from edgerm_agent.gateway import (
    Answer,
    Forget,
    GatewayCore,
    GatewaySettings,
    Persist,
    Row,
    coap_code,
    is_protected,
)

POST, FETCH, CHANGED = 0x02, 0x05, 0x44


pack = pack_forwarded


def option(piv: int, kid: bytes | None) -> bytes:
    p = piv.to_bytes(max(1, (piv.bit_length() + 7) // 8), "big")
    return bytes([(0x08 if kid is not None else 0) | len(p)]) + p + (kid or b"")


def req(agent_id: int, piv: int, body: bytes = b"\x5a" * 9) -> bytes:
    """A device's protected request as the shell hands it over (ciphertext: opaque bytes)."""
    return pack(POST, option(piv, bytes([agent_id])), body)


def resp(body: bytes = b"\x33" * 9, opt: bytes = b"") -> bytes:
    """The master's protected response entry (empty option: the request's nonce reused)."""
    return pack(CHANGED, opt, body)


def durable(core: GatewayCore, effects: list) -> list:  # type: ignore[type-arg]
    """What the shell does with Persist: write, then tell the core."""
    for e in effects:
        if isinstance(e, Persist):
            core.row_durable(e.row.row_id)
    return effects


def answers(effects: list) -> dict[int, Answer]:  # type: ignore[type-arg]
    return {e.call_id: e for e in effects if isinstance(e, Answer)}


def test_entries_tell_protected_from_plain_by_their_first_byte() -> None:
    e = pack(POST, b"\x09\x05\x07", b"ct")
    assert e == b"\x02\x03\x09\x05\x07ct"
    assert unpack_forwarded(e) == (POST, b"\x09\x05\x07", b"ct")
    plain = encode(pb.AgentReply(error=pb.Error(code=pb.UNAUTHENTICATED)))
    assert is_protected(e) and is_protected(pack(CHANGED, b"", b"x"))
    assert not is_protected(plain) and not is_protected(b"")
    assert not is_protected(encode(pb.AgentReply()))   # even an empty map
    reg = encode(pb.AgentCall(seq=1, register=pb.Register(name="m", nonce=bytes(8))))
    assert not is_protected(reg)
    for bad in (b"\x02", b"\x02\x05\x09"):
        with pytest.raises(OscoreError):
            unpack_forwarded(bad)


def test_calls_within_the_window_go_up_in_one_batch_and_replies_come_back_in_order() -> None:
    core = GatewayCore(GatewaySettings(window_s=0.005))
    assert core.next_timer() is None
    assert core.device_call(1, req(1, 10), 100.0) == []
    assert core.next_timer() == pytest.approx(100.005)
    assert core.poll(100.004) is None
    core.device_call(2, req(2, 20), 100.004)
    batch = core.poll(100.005)
    assert batch is not None and batch.calls == (req(1, 10), req(2, 20))  # the devices' bytes
    assert core.poll(100.005) is None  # one batch in flight at a time
    core.device_call(3, req(3, 30), 100.006)
    # the second reply carries the master's own Partial IV (it could not reuse the nonce)
    effects = core.batch_result(batch.batch_id, [resp(b"r1"), resp(b"r2", b"\x01\x07")], 100.01)
    got = answers(effects)
    assert got[1] == Answer(1, CHANGED, b"r1", b"")
    assert got[2] == Answer(2, CHANGED, b"r2", b"\x01\x07")
    assert 3 not in got
    # the call that came meanwhile opened a window of its own
    nxt = core.poll(100.02)
    assert nxt is not None and nxt.calls == (req(3, 30),)


def test_a_full_batch_goes_at_once() -> None:
    core = GatewayCore(GatewaySettings(window_s=10.0, batch_max=3))
    for i in range(3):
        core.device_call(i + 1, req(i + 1, 1), 0.0)
    assert core.next_timer() == 0.0
    batch = core.poll(0.0)
    assert batch is not None and len(batch.calls) == 3


def test_a_plain_refusal_keeps_the_masters_coap_code() -> None:
    err = encode(pb.AgentReply(error=pb.Error(code=pb.UNAUTHENTICATED, message="bad tag")))
    assert coap_code(err) == Code.UNAUTHORIZED
    assert coap_code(b"\xff") == Code.BAD_GATEWAY
    core = GatewayCore(GatewaySettings(window_s=0.0))
    core.device_call(1, req(1, 5), 0.0)
    core.device_call(2, req(2, 5), 0.0)
    batch = core.poll(0.0)
    assert batch is not None
    got = answers(core.batch_result(batch.batch_id, [err, b"\x44\x09"], 0.1))
    assert got[1] == Answer(1, Code.UNAUTHORIZED, err, None)   # plain: no OSCORE option
    assert got[2].code == Code.BAD_GATEWAY and got[2].oscore is None  # a truncated entry


def test_garbage_and_bad_options_are_answered_here_and_never_go_up() -> None:
    core = GatewayCore(GatewaySettings())
    (a,) = core.device_call(1, b"\xff\x00", 0.0)
    assert isinstance(a, Answer) and a.code == Code.BAD_REQUEST and a.oscore is None
    assert decode(pb.AgentReply, a.payload).error.code == pb.BAD_REQUEST
    for call_id, bad in enumerate((
            pack(POST, b"\xe1\x05\x07", b"ct"),     # reserved flag bits
            pack(POST, b"\x01\x05", b"ct"),         # no kid
            pack(POST, b"\x08\x07", b"ct"),         # no Partial IV
            b"\x02\x09\x01"), start=2):             # shorter than its option
        (a,) = core.device_call(call_id, bad, 0.0)
        assert isinstance(a, Answer) and a.code == Code.BAD_OPTION, bad
    (a,) = core.device_call(9, pack(POST, option(5, b""), b"ct"), 0.0)   # the master's kid
    assert isinstance(a, Answer) and a.code == Code.UNAUTHORIZED
    assert core.poll(1.0) is None


def test_a_plain_first_registration_passes_through_as_it_is() -> None:
    core = GatewayCore(GatewaySettings(window_s=0.0))
    reg = encode(pb.AgentCall(seq=1, register=pb.Register(name="mote-1", nonce=bytes(8)),
                              mac=bytes(8)))
    assert core.device_call(1, reg, 0.0) == []
    batch = core.poll(0.0)
    assert batch is not None and batch.calls == (reg,)
    registered = encode(pb.AgentReply(seq=1, mac=bytes(8), registered=pb.Registered(
        agent_id=42, nonce=bytes(8))))
    got = answers(core.batch_result(batch.batch_id, [registered], 0.1))
    assert got[1] == Answer(1, Code.CHANGED, registered, None)
    assert core.stats["plain"] == 1


def test_uplink_down_no_lying_ack_kept_requests_first_when_it_returns() -> None:
    core = GatewayCore(GatewaySettings(window_s=0.0, retry_s=1.0))
    core.device_call(1, req(7, 5), 0.0)
    batch = core.poll(0.0)
    assert batch is not None
    effects = core.batch_result(batch.batch_id, None, 0.5)  # the uplink failed
    assert answers(effects)[1].code == Code.SERVICE_UNAVAILABLE
    assert decode(pb.AgentReply, answers(effects)[1].payload).error.code == pb.UNAVAILABLE
    assert core.queued == 0 and not core.up   # a call in a failed batch is not kept
    # while down: each protected request is answered UNAVAILABLE at once and kept (blind: the
    # gateway cannot tell an update from a heartbeat); a first registration is not kept
    effects = durable(core, core.device_call(2, req(7, 6), 0.6))
    assert answers(effects)[2].code == Code.SERVICE_UNAVAILABLE
    assert [e.row for e in effects if isinstance(e, Persist)] == [Row(1, 7, 6, req(7, 6))]
    durable(core, core.device_call(3, req(8, 9), 0.7))
    reg = encode(pb.AgentCall(seq=1, register=pb.Register(name="m", nonce=bytes(8))))
    effects = core.device_call(4, reg, 0.8, ("fe80::1", 5683))
    assert answers(effects)[4].code == Code.SERVICE_UNAVAILABLE
    assert not any(isinstance(e, Persist) for e in effects)
    assert core.next_timer() == 1.5  # the retry, after retry_s
    probe = core.poll(1.5)
    assert probe is not None and probe.calls == (req(7, 6), req(8, 9))
    core.batch_result(probe.batch_id, None, 2.0)  # still down: back-off doubles
    assert core.next_timer() == 4.0
    probe = core.poll(4.0)
    assert probe is not None
    effects = core.batch_result(probe.batch_id, [resp(), resp()], 4.1)
    assert Forget((1, 2)) in effects and core.up and core.queued == 0
    assert not answers(effects)  # nobody waits for those any more: the devices retry
    # the device's next request passes straight through, not kept
    effects = core.device_call(5, req(7, 7), 4.2)
    assert not any(isinstance(e, Persist) for e in effects)
    batch = core.poll(4.2)
    assert batch is not None and batch.calls == (req(7, 7),)


def test_a_cut_keeps_the_first_requests_of_each_device_and_the_queue_bound() -> None:
    core = GatewayCore(GatewaySettings(window_s=0.0, keep_per_device=2, queue_max=3))
    core.up = False
    kept = [e.row.piv for i in range(5)
            for e in core.device_call(i, req(7, 10 + i), 0.0) if isinstance(e, Persist)]
    assert kept == [10, 11]    # the first two of device 7
    # the same Partial IV again (a replay on the mesh) is not kept twice
    core.up = True
    assert core.device_call(8, req(7, 20), 0.0) == []
    core.up = False
    assert len([e for e in core.device_call(9, req(8, 1), 0.0) if isinstance(e, Persist)]) == 1
    assert not [e for e in core.device_call(10, req(9, 1), 0.0) if isinstance(e, Persist)]
    assert core.queued == 3 and core.stats["refused_full"] == 4


def test_live_calls_never_overtake_a_kept_row_of_their_device() -> None:
    rows = (Row(1, 7, 5, req(7, 5)), Row(2, 7, 6, req(7, 6)))
    core = GatewayCore(GatewaySettings(window_s=0.0, batch_max=2), rows=rows)
    core.device_call(1, req(7, 8), 0.0)
    first = core.poll(0.0)
    assert first is not None and first.calls == (req(7, 5), req(7, 6))
    core.batch_result(first.batch_id, [resp(), resp()], 0.1)
    second = core.poll(0.1)
    assert second is not None and second.calls == (req(7, 8),)


def test_rows_from_the_disk_go_first_and_numbering_continues() -> None:
    rows = (Row(5, 7, 3, req(7, 3)),)
    core = GatewayCore(GatewaySettings(), rows=rows)
    assert core.next_timer() == 0.0
    core.up = False
    effects = core.device_call(1, req(7, 4), 0.0)
    assert [e.row.row_id for e in effects if isinstance(e, Persist)] == [6]


def test_a_device_that_stopped_waiting_is_not_sent() -> None:
    core = GatewayCore(GatewaySettings(window_s=1.0))
    core.device_call(1, req(1, 1), 0.0)
    core.call_gone(1)
    assert core.next_timer() is None and core.poll(5.0) is None


def test_a_short_answer_leaves_the_rest_unanswered_by_the_master() -> None:
    core = GatewayCore(GatewaySettings(window_s=0.0))
    core.device_call(1, req(1, 1), 0.0)
    core.device_call(2, req(2, 1), 0.0)
    batch = core.poll(0.0)
    assert batch is not None
    got = answers(core.batch_result(batch.batch_id, [resp()], 0.1))
    assert got[1].code == CHANGED and got[2].code == Code.SERVICE_UNAVAILABLE
