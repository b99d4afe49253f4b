"""The gateway's sans-IO core (edgerm_agent/gateway.py) with a hand-held clock: aggregation
windows, order per device, store and forward without lying acks, recovery of kept rows."""

from __future__ import annotations

import pytest

from edgerm.coap.codes import Code
from edgerm.wire import decode, encode, pb, sign
from edgerm_agent.gateway import (
    Answer,
    DeviceName,
    Forget,
    GatewayCore,
    GatewaySettings,
    Persist,
    Reading,
    Row,
    coap_code,
)

SECRET = bytes(range(16))


def call(agent_id: int, seq: int, **kw: object) -> bytes:
    return sign(pb.AgentCall(agent_id=agent_id, seq=seq, **kw), SECRET)  # type: ignore[arg-type]


def hb(agent_id: int, seq: int) -> bytes:
    return call(agent_id, seq, heartbeat=pb.Heartbeat())


def status(agent_id: int, seq: int, update_id: int) -> bytes:
    return call(agent_id, seq, status=pb.StatusUpdate(update_id=update_id, task=1,
                                                      state=pb.RUNNING))


def publish(agent_id: int, seq: int, update_id: int, data: bytes) -> bytes:
    return call(agent_id, seq, publish=pb.Publish(update_id=update_id, task=1, data=data,
                                                  topic="temp"))


def reply(seq: int, **kw: object) -> bytes:
    return encode(pb.AgentReply(seq=seq, mac=bytes(8), **kw))  # type: ignore[arg-type]


def durable(core: GatewayCore, effects: list) -> list:  # type: ignore[type-arg]
    """What the shell does with Persist: write, then tell the core."""
    for e in effects:
        if isinstance(e, Persist):
            core.row_durable(e.row.row_id)
    return effects


def answers(effects: list) -> dict[int, Answer]:  # type: ignore[type-arg]
    return {e.call_id: e for e in effects if isinstance(e, Answer)}


def test_calls_within_the_window_go_up_in_one_batch_and_replies_come_back_in_order() -> None:
    core = GatewayCore(GatewaySettings(window_s=0.005))
    assert core.next_timer() is None
    assert core.device_call(1, hb(1, 10), 100.0) == []
    assert core.next_timer() == pytest.approx(100.005)
    assert core.poll(100.004) is None
    core.device_call(2, hb(2, 20), 100.004)
    batch = core.poll(100.005)
    assert batch is not None and batch.calls == (hb(1, 10), hb(2, 20))  # the devices' bytes
    assert core.poll(100.005) is None  # one batch in flight at a time
    core.device_call(3, hb(3, 30), 100.006)
    effects = core.batch_result(batch.batch_id, [reply(10), reply(20, update_ack=3)], 100.01)
    got = answers(effects)
    assert got[1] == Answer(1, Code.CHANGED, reply(10))
    assert got[2].payload == reply(20, update_ack=3)
    assert 3 not in got
    # the call that came meanwhile opened a window of its own
    nxt = core.poll(100.02)
    assert nxt is not None and nxt.calls == (hb(3, 30),)


def test_a_full_batch_goes_at_once() -> None:
    core = GatewayCore(GatewaySettings(window_s=10.0, batch_max=3))
    for i in range(3):
        core.device_call(i + 1, hb(i + 1, 1), 0.0)
    assert core.next_timer() == 0.0
    batch = core.poll(0.0)
    assert batch is not None and len(batch.calls) == 3


def test_an_error_reply_keeps_the_masters_coap_code() -> None:
    err = encode(pb.AgentReply(error=pb.Error(code=pb.UNAUTHENTICATED, message="bad mac")))
    assert coap_code(err) == Code.UNAUTHORIZED
    assert coap_code(reply(1)) == Code.CHANGED
    assert coap_code(b"\xff") == Code.BAD_GATEWAY


def test_garbage_from_a_device_is_answered_here_and_never_goes_up() -> None:
    core = GatewayCore(GatewaySettings())
    (a,) = core.device_call(1, b"\xff\x00", 0.0)
    assert isinstance(a, Answer) and a.code == Code.BAD_REQUEST
    assert decode(pb.AgentReply, a.payload).error.code == pb.BAD_REQUEST
    assert core.poll(1.0) is None


def test_an_update_is_kept_before_it_goes_up_and_forgotten_when_the_master_answered() -> None:
    core = GatewayCore(GatewaySettings(window_s=0.0))
    effects = core.device_call(1, publish(7, 5, 3, b"21.5"), 0.0)
    assert Reading("7", "temp", b"21.5") in effects
    (persist,) = [e for e in effects if isinstance(e, Persist)]
    assert persist.row == Row(1, 7, 3, publish(7, 5, 3, b"21.5"))
    assert core.poll(0.0) is None  # not on disk yet: nothing may go up
    core.row_durable(1)
    batch = core.poll(0.0)
    assert batch is not None and batch.calls == (publish(7, 5, 3, b"21.5"),)
    effects = core.batch_result(batch.batch_id, [reply(5, update_ack=3)], 0.1)
    assert Forget((1,)) in effects
    assert answers(effects)[1].payload == reply(5, update_ack=3)
    assert core.queued == 0


def test_uplink_down_no_lying_ack_rows_first_when_it_returns() -> None:
    core = GatewayCore(GatewaySettings(window_s=0.0, retry_s=1.0))
    durable(core, core.device_call(1, status(7, 5, 3), 0.0))
    batch = core.poll(0.0)
    assert batch is not None
    effects = core.batch_result(batch.batch_id, None, 0.5)  # the uplink failed
    assert answers(effects)[1].code == Code.SERVICE_UNAVAILABLE
    assert decode(pb.AgentReply, answers(effects)[1].payload).error.code == pb.UNAVAILABLE
    assert not any(isinstance(e, Forget) for e in effects)
    assert core.queued == 1 and not core.up
    # while down: the device's retries (new seq, same update) are answered UNAVAILABLE at once
    # and not kept twice; a publish is kept; a heartbeat is not relayed at all
    effects = durable(core, core.device_call(2, status(7, 6, 3), 0.6))
    assert answers(effects)[2].code == Code.SERVICE_UNAVAILABLE
    assert not any(isinstance(e, Persist) for e in effects)
    effects = durable(core, core.device_call(3, publish(8, 9, 1, b"x"), 0.7))
    assert any(isinstance(e, Persist) for e in effects)
    assert answers(core.device_call(4, hb(9, 1), 0.8))[4].code == Code.SERVICE_UNAVAILABLE
    assert core.next_timer() == 1.5  # the retry, after retry_s
    probe = core.poll(1.5)
    assert probe is not None and probe.calls == (status(7, 5, 3), publish(8, 9, 1, b"x"))
    effects = core.batch_result(probe.batch_id, None, 2.0)  # still down: back-off doubles
    assert core.next_timer() == 4.0
    probe = core.poll(4.0)
    assert probe is not None
    effects = core.batch_result(probe.batch_id, [reply(5, update_ack=3), reply(9, update_ack=1)],
                                4.1)
    assert Forget((1, 2)) in effects and core.up and core.queued == 0
    assert not answers(effects)  # nobody waits for those any more: the devices retry
    # the device's next retry passes straight through and gets the master's own ack
    durable(core, core.device_call(5, status(7, 7, 3), 4.2))
    batch = core.poll(4.2)
    assert batch is not None and batch.calls == (status(7, 7, 3),)


def test_live_calls_never_overtake_a_kept_row_of_their_device() -> None:
    core = GatewayCore(GatewaySettings(window_s=0.0, batch_max=2))
    rows = (Row(1, 7, 3, status(7, 5, 3)), Row(2, 7, 4, status(7, 6, 4)))
    core = GatewayCore(GatewaySettings(window_s=0.0, batch_max=2), rows=rows)
    core.device_call(1, hb(7, 8), 0.0)
    first = core.poll(0.0)
    assert first is not None and first.calls == (status(7, 5, 3), status(7, 6, 4))
    core.batch_result(first.batch_id, [reply(5), reply(6)], 0.1)
    second = core.poll(0.1)
    assert second is not None and second.calls == (hb(7, 8),)


def test_rows_from_the_disk_go_first_and_numbering_continues() -> None:
    rows = (Row(5, 7, 3, status(7, 5, 3)),)
    core = GatewayCore(GatewaySettings(), rows=rows, names={7: "dev"})
    assert core.next_timer() == 0.0
    effects = core.device_call(1, publish(7, 6, 4, b"1"), 0.0)
    assert Reading("dev", "temp", b"1") in effects
    assert [e.row.row_id for e in effects if isinstance(e, Persist)] == [6]


def test_a_full_queue_refuses_without_an_ack() -> None:
    core = GatewayCore(GatewaySettings(queue_max=1))
    durable(core, core.device_call(1, status(7, 5, 3), 0.0))
    effects = core.device_call(2, status(8, 5, 1), 0.0)
    assert answers(effects)[2].code == Code.SERVICE_UNAVAILABLE
    assert not any(isinstance(e, Persist) for e in effects)
    assert core.stats["refused_full"] == 1


def test_a_registration_names_the_device_for_its_readings() -> None:
    core = GatewayCore(GatewaySettings(window_s=0.0))
    reg = encode(pb.AgentCall(seq=1, register=pb.Register(name="mote-1", nonce=bytes(8))))
    core.device_call(1, reg, 0.0)
    batch = core.poll(0.0)
    assert batch is not None
    effects = core.batch_result(batch.batch_id, [reply(1, registered=pb.Registered(
        agent_id=42, nonce=bytes(8)))], 0.1)
    assert DeviceName(42, "mote-1") in effects
    assert core.device(42) == "mote-1"


def test_a_device_that_stopped_waiting_is_not_sent() -> None:
    core = GatewayCore(GatewaySettings(window_s=1.0))
    core.device_call(1, hb(1, 1), 0.0)
    core.call_gone(1)
    assert core.next_timer() is None and core.poll(5.0) is None


def test_a_short_answer_leaves_the_rest_unanswered_by_the_master() -> None:
    core = GatewayCore(GatewaySettings(window_s=0.0))
    core.device_call(1, hb(1, 1), 0.0)
    core.device_call(2, hb(2, 1), 0.0)
    batch = core.poll(0.0)
    assert batch is not None
    got = answers(core.batch_result(batch.batch_id, [reply(1)], 0.1))
    assert got[1].code == Code.CHANGED and got[2].code == Code.SERVICE_UNAVAILABLE
