"""The MicroPython agent (the .mpy build, `micropython -X heapsize=64k`) against the real master
(`python -m edgerm_master`) over loopback UDP, with a framework on the real WebSocket API:
register, offers, launch/finish/fail/kill, garbage datagrams, a master crash and restart on the
same data directory, an agent restart.

Between agent and master sits a plain UDP relay in this test, so that garbage can reach the
agent from the master's own address (the agent reads datagrams from any source anyway)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio
from trio_websocket import open_websocket_url

from edgerm.wire import pb
from edgerm_master.testing import ScriptedFramework
from edgerm_master.testing_io import MasterProcess, UdpRelay, WsFrameworkClient

from .conftest import needs_micropython, precompiled

pytestmark = needs_micropython

EXAMPLES = Path(__file__).resolve().parents[2] / "micro_agent" / "examples"
SAMPLER = (EXAMPLES / "sampler.py").read_bytes()
FAILER = b"async def main():\n    await sleep_ms(1)\n    raise ValueError('boom')\n"
SLEEPER = b"async def main():\n    while True:\n        await sleep_ms(20)\n"


async def _until(c: WsFrameworkClient, pred: Any, timeout: float = 15.0) -> None:
    """Receive events until `pred()` holds, acknowledging every status update on the way (the
    master forwards a task's next update only after the previous one is acknowledged)."""
    try:
        with trio.fail_after(timeout):
            while not pred():
                ev = await c.receive()
                if ev.WhichOneof("event") == "update" and ev.update.uuid:
                    await c.send(c.fw.acknowledge(ev.update))
    except trio.TooSlowError:
        raise AssertionError(f"timed out; updates {list(c.fw.updates)} outputs "
                             f"{list(c.fw.outputs)} errors {c.fw.errors}") from None


def _spec(sha: bytes, size: int, *args: str, devices: tuple[str, ...] = (),
          mpy: bool = False) -> pb.TaskSpec:
    return pb.TaskSpec(name="mp", resources=pb.Resources(
        cpus=0.1, devices=[pb.Device(name=d) for d in devices]),
        micropython=pb.MicroPythonTask(sha256=sha, size=size, mpy=mpy, args=list(args)))


async def _upload(c: WsFrameworkClient, data: bytes, fmt: int = pb.MICROPYTHON_SOURCE) -> bytes:
    before = len(c.fw.events)
    await c.send(c.fw.upload(data, fmt, "t"))
    await _until(c, lambda: _answer(c.fw, before) is not None)
    ev = _answer(c.fw, before)
    assert ev is not None and ev.WhichOneof("event") == "module_stored", ev
    return bytes(ev.module_stored.sha256)


def _answer(fw: ScriptedFramework, before: int) -> pb.FrameworkEvent | None:
    """The event that answers the last call sent (events after index `before`)."""
    for ev in fw.events[before:]:
        if ev.call_id == fw.call_id:
            return ev
    return None


async def _launch(c: WsFrameworkClient, task_id: str, spec: pb.TaskSpec) -> None:
    fw = c.fw
    await _until(c, lambda: any(o.agent_name == "mp-e2e" for o in fw.offers.values()))
    offer = next(o for o in fw.offers.values() if o.agent_name == "mp-e2e")
    before = len(fw.events)
    await c.send(fw.accept([offer.offer_id], [pb.TaskInfo(task_id=task_id, spec=spec)]))
    await _until(c, lambda: _answer(fw, before) is not None)
    ev = _answer(fw, before)
    assert ev is not None and ev.WhichOneof("event") == "accepted", ev


def _last(fw: ScriptedFramework, task_id: str) -> pb.TaskStatus:
    return [u for u in fw.updates if u.task_id == task_id][-1]


async def test_against_the_real_master(agent_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    master = MasterProcess(str(tmp_path / "master"), agent_token="tok", heartbeat_ms=300)
    await trio.to_thread.run_sync(master.start)
    try:
        async with trio.open_nursery() as n:
            relay = UdpRelay(master.coap)
            await relay.bind()
            n.start_soon(relay.run)
            agent = agent_factory({
                "master": f"127.0.0.1:{relay.port}", "token": "tok", "name": "mp-e2e",
                "heartbeat_ms": 300, "ack_timeout_ms": 200, "max_retransmit": 2,
                "log_level": 2, "block_szx": 3, "mem_mb": 0.0625,
                "sensors": [{"name": "temp", "unit": "Cel", "sim": [20.5, 21.0, 21.5]}]})
            await agent.start()
            host, port = master.ws
            async with open_websocket_url(f"ws://{host}:{port}/framework") as ws:
                c = WsFrameworkClient(ws, ScriptedFramework(name="fw", token="framework-token"))
                await c.send(c.fw.subscribe())
                await c.until_kind("subscribed")
                fw = c.fw
                await _until(c, lambda: any(o.agent_name == "mp-e2e" for o in fw.offers.values()))
                offer = next(o for o in fw.offers.values() if o.agent_name == "mp-e2e")
                agent_id = offer.agent_id
                assert list(offer.executors) == [pb.MICROPYTHON]
                assert [d.name for d in offer.resources.devices] == ["temp"]

                # finish: three readings published, in order
                sampler = await _upload(c, SAMPLER)
                await _launch(c, "s1", _spec(sampler, len(SAMPLER), "3", devices=("temp",)))
                await _until(c, lambda: pb.FINISHED in fw.states("s1"))
                readings = [o.data for o in fw.outputs if o.task_id == "s1"]
                assert readings == [b"20.5", b"21.0", b"21.5"]
                assert fw.states("s1")[-1] == pb.FINISHED

                # fail
                failer = await _upload(c, FAILER)
                await _launch(c, "f1", _spec(failer, len(FAILER)))
                await _until(c, lambda: pb.FAILED in fw.states("f1"))
                assert _last(fw, "f1").reason == pb.TRAPPED
                assert "ValueError: boom" in _last(fw, "f1").message

                # kill
                sleeper = await _upload(c, SLEEPER)
                await _launch(c, "k1", _spec(sleeper, len(SLEEPER)))
                await _until(c, lambda: pb.RUNNING in fw.states("k1"))
                await c.send(fw.kill("k1"))
                await _until(c, lambda: pb.KILLED in fw.states("k1"))

                # garbage from the master's address, then the agent still works
                for junk in (b"", b"\xff" * 50, b"\x40\x00", b"\x62\x44\x00\x01\xab\xcd\xff\xa1",
                             b"\x42\x45\x00\x01\x01\x02\xff\x9f\x9f\x9f\x9f"):
                    await relay.inject(junk)

                # the master crashes and comes back on the same ports and data directory
                await _launch(c, "k2", _spec(sleeper, len(SLEEPER)))
                await _until(c, lambda: pb.RUNNING in fw.states("k2"))
                await trio.to_thread.run_sync(master.kill)
                await trio.sleep(1.0)
                await trio.to_thread.run_sync(master.start)
            async with open_websocket_url(f"ws://{host}:{port}/framework") as ws:
                c = WsFrameworkClient(ws, ScriptedFramework(name="fw2", token="framework-token"))
                await c.send(c.fw.subscribe())
                await c.until_kind("subscribed")
                fw = c.fw
                await _until(c, lambda: any(o.agent_name == "mp-e2e" for o in fw.offers.values()),
                             timeout=30)
                assert next(o for o in fw.offers.values()
                            if o.agent_name == "mp-e2e").agent_id == agent_id
                # from here on the tasks go as .mpy (see _mpy); the source path is covered above
                sampler_mpy = precompiled(SAMPLER, tmp_path)
                sleeper_mpy = precompiled(SLEEPER, tmp_path)
                sampler = await _upload(c, sampler_mpy, pb.MICROPYTHON_MPY)
                await _launch(c, "s2", _spec(sampler, len(sampler_mpy), "2", devices=("temp",),
                                             mpy=True))
                await _until(c, lambda: pb.FINISHED in fw.states("s2"))

                # the agent restarts: same identity, a task it was running is not left RUNNING
                sleeper = await _upload(c, sleeper_mpy, pb.MICROPYTHON_MPY)
                await _launch(c, "k3", _spec(sleeper, len(sleeper_mpy), mpy=True))
                await _until(c, lambda: pb.RUNNING in fw.states("k3"))
                await agent.stop()
                await agent.start()
                await _until(c, lambda: fw.states("k3")[-1] != pb.RUNNING, timeout=30)
                k3 = _last(fw, "k3")
                assert (k3.state, k3.reason) == (pb.FAILED, pb.AGENT_RESTARTED), k3
                await _launch(c, "s3", _spec(sampler, len(sampler_mpy), "1", devices=("temp",),
                                             mpy=True))
                await _until(c, lambda: pb.FINISHED in fw.states("s3"))
                assert agent.alive(), agent.output()
            n.cancel_scope.cancel()
    finally:
        await trio.to_thread.run_sync(master.stop)


async def test_observe_brings_a_launch_well_before_the_next_heartbeat(agent_factory,
                                                                      tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    heartbeat_s = 30.0
    master = MasterProcess(str(tmp_path / "master"), agent_token="tok",
                           heartbeat_ms=int(heartbeat_s * 1000))
    await trio.to_thread.run_sync(master.start)
    try:
        agent = agent_factory({
            "master": "{}:{}".format(*master.coap), "token": "tok", "name": "mp-e2e",
            "heartbeat_ms": int(heartbeat_s * 1000), "ack_timeout_ms": 500, "log_level": 2,
            "block_szx": 3, "observe": True})
        await agent.start()
        host, port = master.ws
        async with open_websocket_url(f"ws://{host}:{port}/framework") as ws:
            c = WsFrameworkClient(ws, ScriptedFramework(name="fw", token="framework-token"))
            await c.send(c.fw.subscribe())
            await c.until_kind("subscribed")
            fw = c.fw
            failer = await _upload(c, FAILER)
            await _until(c, lambda: any(o.agent_name == "mp-e2e" for o in fw.offers.values()))
            await trio.sleep(1.0)  # the agent's first heartbeat (FETCH c + Observe) is done
            t0 = trio.current_time()
            await _launch(c, "o1", _spec(failer, len(FAILER)))
            await _until(c, lambda: pb.FAILED in fw.states("o1"), timeout=heartbeat_s)
            took = trio.current_time() - t0
            # pushed, not picked up by the next heartbeat (which is up to 30 s away)
            assert took < heartbeat_s / 5, took
            assert "pushed 1 commands" in agent.output()
            assert _last(fw, "o1").reason == pb.TRAPPED
    finally:
        await trio.to_thread.run_sync(master.stop)
