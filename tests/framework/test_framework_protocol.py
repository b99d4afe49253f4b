"""The framework's sans-IO core, driven by hand with a fake clock: no sockets."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgerm.framework_protocol import (
    TERMINAL_STATES,
    CallAnswered,
    CallError,
    ErrorEvent,
    FailoverExpired,
    FrameworkProtocol,
    OffersEvent,
    OutputEvent,
    RescindEvent,
    Subscribed,
    UpdateEvent,
)
from edgerm.wire import decode, encode, pb


def ev(**kw: object) -> bytes:
    return encode(pb.FrameworkEvent(**kw))  # type: ignore[arg-type]


def sent(frames: list[bytes]) -> list[pb.FrameworkCall]:
    return [decode(pb.FrameworkCall, f) for f in frames]


def subscribed_core(auto_ack: bool = True) -> FrameworkProtocol:
    core = FrameworkProtocol("demo", "tok", failover_timeout_s=10, role="r", auto_ack=auto_ack)
    first = decode(pb.FrameworkCall, core.connection_made(now=0.0))
    events = core.receive_frame(ev(call_id=first.call_id, subscribed=pb.Subscribed(
        framework_id="fw-7", heartbeat_interval_s=2.0, weight=1.0)), now=0.0)
    assert events == [Subscribed("fw-7", 2.0, 1.0, failover=False)]
    return core


def test_subscribe_frame_carries_name_token_role_and_no_framework_id() -> None:
    core = FrameworkProtocol("demo", "tok", failover_timeout_s=12.5, role="sensors")
    call = decode(pb.FrameworkCall, core.connection_made(now=0.0))
    assert call.WhichOneof("call") == "subscribe"
    assert call.framework_id == "" and call.call_id == 1
    assert (call.subscribe.name, call.subscribe.token, call.subscribe.role) == \
        ("demo", "tok", "sensors")
    assert call.subscribe.failover_timeout_s == 12.5


def test_calls_need_a_subscription_and_carry_the_framework_id() -> None:
    core = FrameworkProtocol("demo", "tok")
    with pytest.raises(Exception, match="not subscribed"):
        core.call(kill=pb.KillTask(task_id="t"))
    core = subscribed_core()
    call_id, frame = core.call(kill=pb.KillTask(task_id="t"))
    call = decode(pb.FrameworkCall, frame)
    assert call.framework_id == "fw-7" and call.call_id == call_id
    assert call.kill.task_id == "t"


def test_offers_are_tracked_until_used_declined_or_rescinded() -> None:
    core = subscribed_core()
    offers = [pb.Offer(offer_id=f"o{i}", agent_id=i) for i in (1, 2, 3)]
    [event] = core.receive_frame(ev(offers=pb.Offers(offers=offers)), now=1.0)
    assert isinstance(event, OffersEvent) and len(event.offers) == 3
    assert set(core.offers) == {"o1", "o2", "o3"}
    assert core.receive_frame(ev(rescind=pb.Rescind(offer_id="o1")), 1.0) == [RescindEvent("o1")]
    core.decline(["o2"])
    core.accept(["o3"], [])
    assert core.offers == {}


def test_offers_expire_when_the_master_says() -> None:
    core = subscribed_core()
    offers = [pb.Offer(offer_id="short", expires_in_s=2), pb.Offer(offer_id="long",
                                                                   expires_in_s=30)]
    core.receive_frame(ev(offers=pb.Offers(offers=offers)), now=10.0)
    core.receive_frame(ev(ping=pb.Ping()), now=12.5)
    assert set(core.offers) == {"long"}


def test_updates_with_a_uuid_are_acknowledged_once_delivered_and_resends_hidden() -> None:
    core = subscribed_core()
    status = pb.TaskStatus(task_id="t1", state=pb.RUNNING, uuid=b"u1")
    [event] = core.receive_frame(ev(update=status), now=1.0)
    assert isinstance(event, UpdateEvent) and event.state == pb.RUNNING and not event.terminal
    [ack] = sent(core.frames_to_send())
    assert (ack.acknowledge.task_id, ack.acknowledge.uuid) == ("t1", b"u1")
    assert core.tasks["t1"].state == pb.RUNNING
    # The master did not get the ack and re-sends: acknowledge again, tell nobody.
    assert core.receive_frame(ev(update=status), now=2.0) == []
    assert [c.acknowledge.uuid for c in sent(core.frames_to_send())] == [b"u1"]
    # A reconciliation answer has no uuid: delivered, never acknowledged.
    recon = pb.TaskStatus(task_id="t1", state=pb.RUNNING, reason=pb.RECONCILIATION)
    assert len(core.receive_frame(ev(update=recon), now=3.0)) == 1
    assert core.frames_to_send() == []


def test_ended_tasks_beyond_the_limit_are_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    import edgerm.framework_protocol as framework_protocol
    monkeypatch.setattr(framework_protocol, "MAX_ENDED_TASKS", 2)
    core = subscribed_core()
    core.receive_frame(ev(update=pb.TaskStatus(task_id="live", state=pb.RUNNING)), 1.0)
    for i in range(4):
        core.receive_frame(ev(update=pb.TaskStatus(task_id=f"t{i}", state=pb.FINISHED,
                                                   uuid=b"u")), 1.0)
    assert set(core.tasks) == {"live", "t2", "t3"}


def test_without_auto_ack_nothing_is_acknowledged() -> None:
    core = subscribed_core(auto_ack=False)
    core.receive_frame(ev(update=pb.TaskStatus(task_id="t", state=pb.FINISHED, uuid=b"u")), 1.0)
    assert core.frames_to_send() == []


def test_output_repeats_are_dropped() -> None:
    core = subscribed_core()
    out = pb.TaskOutput(task_id="t", seq=1, data=b"21.5", topic="temp")
    assert core.receive_frame(ev(output=out), 1.0) == [OutputEvent("t", 1, b"21.5", "temp")]
    assert core.receive_frame(ev(output=out), 1.0) == []
    out.seq = 2
    assert len(core.receive_frame(ev(output=out), 1.0)) == 1


def test_answers_to_awaited_calls_go_to_the_shell_others_to_the_user() -> None:
    core = subscribed_core()
    call_id, _ = core.accept(["o1"], [])
    answer = pb.FrameworkEvent(call_id=call_id, accepted=pb.Accepted(task_ids=["t"]))
    assert core.receive_frame(encode(answer), 1.0) == [CallAnswered(call_id, answer)]
    kill_id, _ = core.call(kill=pb.KillTask(task_id="zz"))
    refusal = ev(call_id=kill_id, error=pb.Error(code=pb.NOT_FOUND, message="no task zz"))
    assert core.receive_frame(refusal, 1.0) == [ErrorEvent(pb.NOT_FOUND, "no task zz", kill_id)]


def test_bad_frames_are_counted_and_change_nothing() -> None:
    core = subscribed_core()
    for junk in (b"", b"\xff", b"\xa1\x03\x63abc", b"\x00" * 10):
        assert core.receive_frame(junk, 1.0) == []
    assert core.bad_frames == 4
    assert core.framework_id == "fw-7" and core.subscribed


def test_ping_keeps_the_connection_alive() -> None:
    core = subscribed_core()
    assert core.liveness_deadline() == 6.0   # 3 intervals of 2 s after the last frame at 0
    assert core.receive_frame(ev(ping=pb.Ping()), now=5.0) == []
    assert core.liveness_deadline() == 11.0


def test_failover_resubscribes_with_the_id_and_reconciles() -> None:
    core = subscribed_core()
    pending, _ = core.accept(["o1"], [])
    assert core.connection_lost(now=3.0) == [pending]
    assert core.failover_deadline() == 13.0
    assert core.liveness_deadline() == math.inf
    call = decode(pb.FrameworkCall, core.connection_made(now=4.0))
    assert call.framework_id == "fw-7"
    core.connection_lost(now=5.0)            # a failed attempt does not move the deadline
    assert core.failover_deadline() == 13.0
    call = decode(pb.FrameworkCall, core.connection_made(now=6.0))
    events = core.receive_frame(ev(call_id=call.call_id, subscribed=pb.Subscribed(
        framework_id="fw-7", heartbeat_interval_s=2.0)), now=6.0)
    assert events == [Subscribed("fw-7", 2.0, 0.0, failover=True)]
    [recon] = sent(core.frames_to_send())
    assert recon.WhichOneof("call") == "reconcile" and list(recon.reconcile.task_ids) == []
    assert core.failover_deadline() is None


def test_the_framework_secret_is_kept_with_the_id_and_proves_it_on_resubscription() -> None:
    core = FrameworkProtocol("demo", "tok", failover_timeout_s=10)
    first = decode(pb.FrameworkCall, core.connection_made(now=0.0))
    assert first.subscribe.framework_secret == b""
    core.receive_frame(ev(call_id=first.call_id, subscribed=pb.Subscribed(
        framework_id="fw-7", heartbeat_interval_s=2.0, framework_secret=b"s" * 16)), now=0.0)
    assert core.framework_secret == b"s" * 16
    core.connection_lost(now=1.0)
    call = decode(pb.FrameworkCall, core.connection_made(now=2.0))
    assert (call.framework_id, call.subscribe.framework_secret) == ("fw-7", b"s" * 16)
    # The failover's Subscribed carries no secret: the one kept stays.
    core.receive_frame(ev(call_id=call.call_id, subscribed=pb.Subscribed(
        framework_id="fw-7", heartbeat_interval_s=2.0)), now=2.0)
    assert core.framework_secret == b"s" * 16
    # A new process taking over passes both.
    other = FrameworkProtocol("demo", "tok", framework_id="fw-7", framework_secret=b"s" * 16)
    call = decode(pb.FrameworkCall, other.connection_made(now=3.0))
    assert (call.framework_id, call.subscribe.framework_secret) == ("fw-7", b"s" * 16)


def test_a_resubscription_without_the_right_secret_is_an_error_not_an_expiry() -> None:
    core = FrameworkProtocol("demo", "tok", framework_id="fw-7")
    call = decode(pb.FrameworkCall, core.connection_made(now=0.0))
    with pytest.raises(CallError, match="FORBIDDEN") as info:
        core.receive_frame(ev(call_id=call.call_id, error=pb.Error(
            code=pb.FORBIDDEN, message="framework_secret is missing or wrong")), 0.0)
    assert not isinstance(info.value, FailoverExpired)


def test_refused_resubscription_means_the_framework_is_gone() -> None:
    core = subscribed_core()
    core.connection_lost(now=1.0)
    call = decode(pb.FrameworkCall, core.connection_made(now=20.0))
    with pytest.raises(FailoverExpired):
        core.receive_frame(ev(call_id=call.call_id, error=pb.Error(code=pb.NOT_FOUND)), 20.0)


def test_refused_first_subscription_raises_the_masters_error() -> None:
    core = FrameworkProtocol("demo", "bad")
    call = decode(pb.FrameworkCall, core.connection_made(now=0.0))
    with pytest.raises(CallError, match="UNAUTHENTICATED: wrong token"):
        core.receive_frame(ev(call_id=call.call_id, error=pb.Error(
            code=pb.UNAUTHENTICATED, message="wrong token")), 0.0)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_frames_never_raise(data: bytes) -> None:
    core = subscribed_core()
    events = core.receive_frame(data, now=1.0)
    assert all(not isinstance(e, Subscribed) for e in events)
    assert core.framework_id == "fw-7" and core.subscribed


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["t1", "t2"]), st.integers(1, 11),
                          st.binary(min_size=0, max_size=2)), max_size=30))
def test_every_update_with_a_uuid_is_acknowledged_and_delivered_once(updates) -> None:
    core = subscribed_core()
    delivered: list[tuple[str, bytes]] = []
    acked: set[tuple[str, bytes]] = set()
    for task_id, state, uuid in updates:
        status = pb.TaskStatus(task_id=task_id, state=state, uuid=uuid)
        for e in core.receive_frame(ev(update=status), 1.0):
            assert isinstance(e, UpdateEvent)
            delivered.append((task_id, uuid))
        for call in sent(core.frames_to_send()):
            acked.add((call.acknowledge.task_id, call.acknowledge.uuid))
    with_uuid = {(t, u) for t, _, u in updates if u}
    assert acked == with_uuid
    # Delivered once each, up to the task's first end: an end is final, what follows is hidden.
    expected: set[tuple[str, bytes]] = set()
    ended: set[str] = set()
    for task_id, state, uuid in updates:
        if task_id in ended or (task_id, uuid) in expected:
            continue   # after the end, or a re-send of an update already delivered
        if uuid:
            expected.add((task_id, uuid))
        if state in TERMINAL_STATES:
            ended.add(task_id)
    assert sorted(d for d in delivered if d[1]) == sorted(expected)


def failed_over_core() -> tuple[FrameworkProtocol, int]:
    """A core that lost its connection and subscribed again; returns it and the call id of
    the reconciliation it sent by itself."""
    core = subscribed_core()
    core.connection_lost(now=1.0)
    call = decode(pb.FrameworkCall, core.connection_made(now=2.0))
    core.receive_frame(ev(call_id=call.call_id, subscribed=pb.Subscribed(
        framework_id="fw-7", heartbeat_interval_s=2.0)), now=2.0)
    [recon] = sent(core.frames_to_send())
    assert recon.WhichOneof("call") == "reconcile"
    return core, recon.call_id


def test_implicit_reconciliation_delivers_only_news() -> None:
    core = subscribed_core()
    for tid, state in (("t1", pb.RUNNING), ("t2", pb.RUNNING)):
        core.receive_frame(ev(update=pb.TaskStatus(task_id=tid, state=state, uuid=tid.encode())),
                           1.0)
    core.frames_to_send()
    core.connection_lost(now=1.0)
    call = decode(pb.FrameworkCall, core.connection_made(now=2.0))
    core.receive_frame(ev(call_id=call.call_id, subscribed=pb.Subscribed(
        framework_id="fw-7", heartbeat_interval_s=2.0)), now=2.0)
    [recon] = sent(core.frames_to_send())
    same = pb.TaskStatus(task_id="t1", state=pb.RUNNING, reason=pb.RECONCILIATION)
    assert core.receive_frame(ev(call_id=recon.call_id, update=same), 3.0) == []
    # News (the master lost the task) is delivered; so is a never-heard-of task.
    lost = pb.TaskStatus(task_id="t2", state=pb.LOST, reason=pb.TASK_UNKNOWN)
    assert [e.state for e in core.receive_frame(ev(call_id=recon.call_id, update=lost), 3.0)
            ] == [pb.LOST]  # type: ignore[attr-defined]
    other = pb.TaskStatus(task_id="t9", state=pb.RUNNING, reason=pb.RECONCILIATION)
    assert len(core.receive_frame(ev(call_id=recon.call_id, update=other), 3.0)) == 1
    # An explicit reconcile is the user's question: its answers are all delivered.
    user_id, _ = core.call(reconcile=pb.Reconcile(task_ids=["t1"]))
    assert len(core.receive_frame(ev(call_id=user_id, update=same), 3.0)) == 1
    assert core.frames_to_send() == []


def test_an_end_is_delivered_once_even_after_a_reconciliation_reported_it() -> None:
    """Before: the implicit reconciliation's FINISHED/RECONCILIATION and then the master's own
    FINISHED: the user saw the task end twice."""
    core, recon_id = failed_over_core()
    core.receive_frame(ev(update=pb.TaskStatus(task_id="t1", state=pb.RUNNING, uuid=b"r")), 2.0)
    core.frames_to_send()
    recon = pb.TaskStatus(task_id="t1", state=pb.FINISHED, reason=pb.RECONCILIATION)
    delivered = core.receive_frame(ev(call_id=recon_id, update=recon), 3.0)
    real = pb.TaskStatus(task_id="t1", state=pb.FINISHED, uuid=b"f", exit_code=0)
    delivered += core.receive_frame(ev(update=real), 3.0)
    assert [e.state for e in delivered] == [pb.FINISHED]  # type: ignore[attr-defined]
    [ack] = sent(core.frames_to_send())
    assert ack.acknowledge.uuid == b"f"   # acknowledged, so the master stops re-sending it


def test_an_update_after_a_delivered_end_is_acknowledged_even_without_auto_ack() -> None:
    core = subscribed_core(auto_ack=False)
    user_id, _ = core.call(reconcile=pb.Reconcile(task_ids=["t1"]))
    core.receive_frame(ev(call_id=user_id, update=pb.TaskStatus(
        task_id="t1", state=pb.KILLED, reason=pb.RECONCILIATION)), 1.0)
    assert core.receive_frame(ev(update=pb.TaskStatus(task_id="t1", state=pb.KILLED,
                                                      uuid=b"k")), 1.0) == []
    assert [c.acknowledge.uuid for c in sent(core.frames_to_send())] == [b"k"]


def test_a_gap_in_output_seq_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    core = subscribed_core()
    core.accept(["o1"], [pb.TaskInfo(task_id="mine")])
    out = pb.TaskOutput(task_id="mine", seq=2, data=b"b")
    with caplog.at_level("WARNING", logger="edgerm.framework"):
        [event] = core.receive_frame(ev(output=out), 1.0)
    assert event == OutputEvent("mine", 2, b"b", "", missed=1)
    assert core.outputs_missed == 1 and "1 output(s) before seq 2 never arrived" in caplog.text
    out.seq = 5
    [event] = core.receive_frame(ev(output=out), 1.0)
    assert event.missed == 2 and core.outputs_missed == 3  # type: ignore[attr-defined]
    # A task first heard of now (a framework process that failed over) has no known start.
    other = pb.TaskOutput(task_id="older", seq=40, data=b"x")
    [event] = core.receive_frame(ev(output=other), 1.0)
    assert event.missed == 0 and core.outputs_missed == 3  # type: ignore[attr-defined]
