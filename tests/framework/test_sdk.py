"""The Trio `Framework` against the scripted fake master, over a real WebSocket on loopback."""

from __future__ import annotations

import hashlib
import random

import pytest
import trio

from edgerm.framework import (
    WASM,
    Backoff,
    CallError,
    ConnectionLost,
    Constraints,
    Disconnected,
    Event,
    FailoverExpired,
    Framework,
    FrameworkError,
    OffersEvent,
    OutputEvent,
    Subscribed,
    UpdateEvent,
    endpoint_url,
    wasm_task,
)
from edgerm.wire import pb


async def next_of(fw: Framework, kind: type[Event], timeout: float = 5.0) -> Event:
    with trio.fail_after(timeout):
        while True:
            ev = await fw.next_event()
            if isinstance(ev, kind):
                return ev


def connect(master: object, **kw: object) -> object:
    opts: dict[str, object] = {"name": "test", "token": "fw-token", "connect_timeout_s": 3.0,
                               "call_timeout_s": 3.0}
    opts.update(kw)
    return Framework.connect(master.url, **opts)  # type: ignore[attr-defined]


async def test_launch_follow_output_and_finish(fake_master) -> None:
    fake_master.script = lambda info: fake_master.TaskScript(outputs=[b"21.5", b"21.6"])
    async with connect(fake_master) as fw:
        sub = await fw.next_event()
        assert isinstance(sub, Subscribed) and sub.framework_id == fw.framework_id
        module = await fw.upload(b"\0asm\1\0\0\0", name="t.wasm")
        assert module.sha256 == hashlib.sha256(b"\0asm\1\0\0\0").digest()
        await fake_master.push(pb.FrameworkEvent(offers=pb.Offers(offers=[
            fake_master.offer(offer_id="o-small", cpus=0.01),
            fake_master.offer(offer_id="o-big")])))
        offers = await next_of(fw, OffersEvent)
        c = Constraints(cpus=0.1, mem_mb=32, devices=["temp"], executors=[WASM])
        [fit] = [o for o in offers.offers if c.match(o)]
        assert fit.offer_id == "o-big"
        await fw.launch(fit, "t1", wasm_task(module, resources=c.resources(fit)))
        await fw.decline("o-small", refuse_seconds=5)
        states, outputs = [], []
        with trio.fail_after(5):
            async for ev in fw.events():
                if isinstance(ev, UpdateEvent):
                    states.append(ev.state)
                    if ev.terminal:
                        break
                elif isinstance(ev, OutputEvent):
                    outputs.append(ev.data)
        assert states == [pb.STAGING, pb.RUNNING, pb.FINISHED]
        assert outputs == [b"21.5", b"21.6"]
        assert fw.tasks["t1"].state == pb.FINISHED
        # Every update was acknowledged automatically, each uuid at least once.
        with trio.fail_after(2):
            while len({u for _, u in fake_master.acks}) < 3:
                await trio.sleep(0.01)
    accept = fake_master.calls_of("accept")[0].accept
    assert list(accept.offer_ids) == ["o-big"]
    assert accept.launch[0].spec.wasm.sha256 == module.sha256
    assert accept.launch[0].spec.resources.devices[0].name == "temp"
    assert fake_master.calls_of("decline")[0].decline.refuse_seconds == 5


async def test_refused_accept_raises_call_error(fake_master) -> None:
    fake_master.refuse_accept = pb.Error(code=pb.INVALID_OFFER, message="offer o1 expired")
    async with connect(fake_master) as fw:
        with pytest.raises(CallError, match="INVALID_OFFER: offer o1 expired") as info:
            await fw.accept("o1", [])
        assert info.value.code == pb.INVALID_OFFER


async def test_kill_and_reconcile(fake_master) -> None:
    fake_master.script = lambda info: fake_master.TaskScript(hold=True)
    async with connect(fake_master) as fw:
        await fw.accept("o1", [pb.TaskInfo(task_id="t1")])
        while (await next_of(fw, UpdateEvent)).state != pb.RUNNING:
            pass
        await fw.kill("t1")
        ev = await next_of(fw, UpdateEvent)
        assert (ev.state, ev.status.reason) == (pb.KILLED, pb.KILL_REQUESTED)
        await fw.reconcile(["t1", "nope"])
        answers = {}
        while len(answers) < 2:
            ev = await next_of(fw, UpdateEvent)
            if ev.status.reason in (pb.RECONCILIATION, pb.TASK_UNKNOWN):
                answers[ev.task_id] = ev.state
        assert answers == {"t1": pb.KILLED, "nope": pb.LOST}


async def test_wrong_token_fails_the_connect(fake_master) -> None:
    with pytest.raises(CallError, match="UNAUTHENTICATED"):
        async with connect(fake_master, token="wrong"):
            pass


async def test_unreachable_master_fails_after_the_connect_timeout() -> None:
    with trio.socket.socket() as s:     # a port nobody listens on
        await s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(FrameworkError, match="cannot subscribe"):
        async with Framework.connect(f"ws://127.0.0.1:{port}", name="x", token="t",
                                     connect_timeout_s=0.3):
            pass


async def test_failover_keeps_the_framework_and_its_tasks(fake_master) -> None:
    fake_master.script = lambda info: fake_master.TaskScript(hold=True)
    async with connect(fake_master) as fw:
        fid = fw.framework_id
        await fw.accept("o1", [pb.TaskInfo(task_id="t1")])
        while (await next_of(fw, UpdateEvent)).state != pb.RUNNING:
            pass
        await fake_master.drop()
        lost = await next_of(fw, ConnectionLost)
        assert "closed" in lost.reason
        sub = await next_of(fw, Subscribed)
        assert sub.failover and sub.framework_id == fid
        assert fake_master.subscribes[-1].name == "test"
        # After a failover the SDK reconciles by itself; the answer (still RUNNING) tells the
        # user nothing new, so the next update it sees is the kill's.
        with trio.fail_after(5):
            while not any(c.WhichOneof("call") == "reconcile" for c in fake_master.calls):
                await fake_master.call_received.wait()
                fake_master.call_received = trio.Event()
        await fw.kill("t1")
        ev = await next_of(fw, UpdateEvent)
        assert (ev.task_id, ev.state) == ("t1", pb.KILLED)
        assert fw.tasks["t1"].state == pb.KILLED


async def test_calls_wait_through_a_reconnect(fake_master) -> None:
    async with connect(fake_master) as fw:
        await fake_master.drop()
        await next_of(fw, ConnectionLost)
        module = await fw.upload(b"abc")   # waits for the re-subscription, then goes through
        assert module.size == 3


async def test_a_call_in_flight_when_the_link_drops_raises_disconnected(fake_master) -> None:
    async with connect(fake_master) as fw:
        async def drop_on_accept() -> None:
            await fake_master.wait_for_call("accept")
            await fake_master.drop()
        fake_master.refuse_accept = None
        original = fake_master._on_call

        async def swallow_accept(ws, call):  # the master never answers this accept
            if call.WhichOneof("call") != "accept":
                await original(ws, call)
        fake_master._on_call = swallow_accept
        async with trio.open_nursery() as nursery:
            nursery.start_soon(drop_on_accept)
            with pytest.raises(Disconnected):
                await fw.accept("o1", [pb.TaskInfo(task_id="t1")])


async def test_failover_window_passed_ends_the_framework(fake_master) -> None:
    fake_master.failover_window_s = 0.0
    async with connect(fake_master, failover_timeout_s=5.0) as fw:
        await fake_master.drop()
        await next_of(fw, ConnectionLost)
        with pytest.raises(FailoverExpired):
            await next_of(fw, Subscribed)
        with pytest.raises(FailoverExpired):
            await fw.kill("t1")


async def test_silent_master_is_detected_by_missing_pings(fake_master) -> None:
    fake_master.heartbeat_interval_s = 0.05
    async with connect(fake_master) as fw:
        # Pings never come from the fake: after 3 intervals the SDK re-connects on its own.
        lost = await next_of(fw, ConnectionLost, timeout=3)
        assert "heartbeat" in lost.reason
        assert (await next_of(fw, Subscribed)).failover


async def test_garbage_from_the_master_changes_nothing(fake_master) -> None:
    async with connect(fake_master) as fw:
        await fake_master.push_raw(b"\xff\x00garbage")
        await fake_master.push(pb.FrameworkEvent(output=pb.TaskOutput(task_id="t", seq=1,
                                                                      data=b"x")))
        ev = await next_of(fw, OutputEvent)
        assert ev.data == b"x"
        assert fw.core.bad_frames == 1


async def test_teardown_ends_the_event_stream(fake_master) -> None:
    async with connect(fake_master) as fw:
        await fw.teardown()
        with trio.fail_after(3):
            async for _ in fw.events():
                pass
        assert fake_master.calls_of("teardown")
        with pytest.raises(FrameworkError):
            await fw.kill("t")


def test_backoff_doubles_to_its_cap_with_bounded_jitter() -> None:
    b = Backoff(first=0.1, cap=1.0, jitter=0.2, rng=random.Random(0))
    delays = [b.next_delay() for _ in range(6)]
    for got, base in zip(delays, [0.1, 0.2, 0.4, 0.8, 1.0, 1.0], strict=True):
        assert base * 0.8 <= got <= base * 1.2
    b.reset()
    assert b.next_delay() <= 0.12


def test_endpoint_urls() -> None:
    assert endpoint_url("ws://h:5690", "/framework") == "ws://h:5690/framework"
    assert endpoint_url("h:5690", "/state") == "ws://h:5690/state"
    assert endpoint_url("ws://h:5690/framework", "/state") == "ws://h:5690/state"
