"""The MicroPython agent (the .mpy build under `micropython -X heapsize=64k`) on a link that
loses datagrams, and the example sampler when the agent's update queue is full (issue 10,
item 6). A scripted master over loopback UDP; between it and the agent, a relay that loses the
datagrams a test picks (`lossy_relay.py`)."""

from __future__ import annotations

import trio

from edgerm.coap.message import Message
from edgerm.wire import pb
from edgerm_master.testing_scripted_master import ScriptedMaster

from .conftest import MICRO, needs_micropython
from .lossy_relay import LossyRelay

pytestmark = needs_micropython

# A task of four 64-byte blocks (block_szx 2 below).
MODULE = b"# " + b"x" * 200 + b"\nasync def main():\n    log('complete')\n"
TS = pb.TaskState


def _config(port: int, **more: object) -> dict:  # type: ignore[type-arg]
    cfg = {"master": f"127.0.0.1:{port}", "token": "tok", "name": "mp-lossy",
           "heartbeat_ms": 300, "ack_timeout_ms": 150, "max_retransmit": 2, "log_level": 2,
           "block_szx": 2, "sensors": [{"name": "temp", "unit": "Cel", "sim": [21.5]}]}
    cfg.update(more)
    return cfg


def _mp_task(sha: bytes, size: int, *args: str, devices: tuple[str, ...] = ()) -> pb.TaskSpec:
    return pb.TaskSpec(
        name="t", resources=pb.Resources(devices=[pb.Device(name=d) for d in devices]),
        micropython=pb.MicroPythonTask(sha256=sha, size=size, args=list(args)))


async def test_a_block_whose_answers_are_lost_is_asked_for_again(agent_factory) -> None:  # type: ignore[no-untyped-def]
    # The relay loses the master's first five answers to the GET of block 2: the whole first
    # exchange for it (three transmissions with max_retransmit 2) and two of the second. The
    # download goes on with that block, and the task runs.
    # The Block2 option is inside OSCORE, so the relay asks the master which block an answer
    # (by its message id) carries.
    lost = [0]
    m = ScriptedMaster(heartbeat_ms=300)

    def drop(direction: str, msg: Message | None) -> bool:
        if direction == "down" and msg is not None and msg.mtype == 2 \
                and m.block_answers.get(msg.mid) == 2 and lost[0] < 5:
            lost[0] += 1
            return True
        return False

    async with trio.open_nursery() as n:
        await m.bind()
        n.start_soon(m.serve)
        relay = LossyRelay(("127.0.0.1", m.port), drop)
        await relay.bind()
        n.start_soon(relay.run)
        a = agent_factory(_config(relay.port))
        await a.start()
        await m.wait_for(lambda: 1 in m.agents and m.agents[1].heartbeats >= 1)
        sha = m.add_module(MODULE)
        m.command(1, launch=pb.Launch(task=1, spec=_mp_task(sha, len(MODULE))))
        await m.wait_for(lambda: any(s >= TS.FINISHED for s in m.states(1, 1)), timeout=20)
        last = m.agents[1].statuses[-1]
        assert m.states(1, 1) == [TS.STARTING, TS.RUNNING, TS.FINISHED], (last, a.output())
        assert last.message == "complete\n"
        assert lost[0] == 5 and relay.lost["down"] == 5
        assert a.alive(), a.output()
        n.cancel_scope.cancel()


async def test_the_example_sampler_keeps_a_reading_the_full_queue_refused(  # type: ignore[no-untyped-def]
        agent_factory) -> None:
    # The master answers the first publish "unavailable" twice, so the agent backs off (1 s,
    # then 2 s) while the sampler reads 20 values in ~0.2 s: its queue (12 updates) fills and
    # publish() answers -5. The sampler keeps each refused reading and offers it again; every
    # reading arrives once, in order.
    sampler = (MICRO / "examples" / "sampler.py").read_bytes()
    values = [float(i) for i in range(20)]
    async with trio.open_nursery() as n:
        m = ScriptedMaster(heartbeat_ms=300)
        await m.bind()
        n.start_soon(m.serve)
        a = agent_factory(_config(m.port, sensors=[{"name": "temp", "sim": values}]))
        await a.start()
        await m.wait_for(lambda: 1 in m.agents and m.agents[1].heartbeats >= 1)
        rec = m.agents[1]
        m.refuse[3] = (pb.UNAVAILABLE, 2)  # 1 STARTING, 2 RUNNING, 3 the first reading
        sha = m.add_module(sampler)
        m.command(1, launch=pb.Launch(task=1, spec=_mp_task(sha, len(sampler), "20",
                                                            devices=("temp",))))
        await m.wait_for(lambda: any(s >= TS.FINISHED for s in m.states(1, 1)), timeout=30)
        assert m.states(1, 1) == [TS.STARTING, TS.RUNNING, TS.FINISHED], a.output()
        assert rec.refused == [3, 3]
        assert [p.data for p in rec.publishes] == [str(v).encode() for v in values]
        assert {p.topic for p in rec.publishes} == {"temp"}
        assert rec.statuses[-1].message == "sampled 20\n"
        n.cancel_scope.cancel()
