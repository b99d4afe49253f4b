"""Actuators on the MicroPython agent, for real under `micropython -X heapsize=64k` against a
scripted master: announced as ACTUATOR devices, and `set_actuator` from a task with every code
of the ABI (ok, denied, not an actuator, out of range, I/O error), simulated ones recording what
they were set to in their file."""

from __future__ import annotations

from pathlib import Path

import trio

from edgerm.wire import pb
from edgerm_master.testing_scripted_master import ScriptedMaster

from .conftest import needs_micropython

pytestmark = needs_micropython

# (name, value, the code set_actuator must return) for a task holding fan, dim, broken, temp.
CALLS = [
    ("fan", 1, 0),
    ("fan", 0.5, -6),         # a switch takes 0 or 1
    ("dim", 42.5, 0),         # a level from min to max
    ("dim", 101, -6),
    ("temp", 1, -1),          # held, but a sensor
    ("lamp", 1, -2),          # an actuator of this agent the task does not hold
    ("nope", 1, -2),
    ("broken", 1, -3),        # its file cannot be written
    ("gone", 1, -2),          # could not be opened: not announced, so not held
    ("fan", "nan", -6),
    ("fan", "x", -6),         # not a number
    ("fan", 0, 0),
]

TASK = """
async def main():
    codes = []
    for name, v in %r:
        codes.append(str(set_actuator(name, float(v) if v == "nan" else v)))
        await sleep_ms(0)
    publish(" ".join(codes), "codes")
""" % [(n, v) for n, v, _ in CALLS]


async def test_set_actuator_codes_and_recorded_values(agent_factory, tmp_path: Path
                                                      ) -> None:  # type: ignore[no-untyped-def]
    fan, dim, lamp = (tmp_path / f"{n}.values" for n in ("fan", "dim", "lamp"))
    async with trio.open_nursery() as n:
        m = ScriptedMaster(heartbeat_ms=300)
        await m.bind()
        n.start_soon(m.serve)
        a = agent_factory({
            "master": f"127.0.0.1:{m.port}", "token": "tok", "name": "mp-act",
            "heartbeat_ms": 300, "ack_timeout_ms": 150, "max_retransmit": 2, "block_szx": 2,
            "sensors": [{"name": "temp", "unit": "Cel", "sim": 20.5},
                        {"name": "fan", "kind": "actuator", "sim": str(fan)},
                        {"name": "dim", "kind": "actuator", "sim": str(dim), "min": 0,
                         "max": 100, "unit": "%"},
                        {"name": "lamp", "kind": "actuator", "sim": str(lamp)},
                        {"name": "broken", "kind": "actuator", "sim": "/dev/full"},
                        {"name": "gone", "kind": "actuator",
                         "sim": str(tmp_path / "no" / "such" / "dir")}]})
        await a.start()
        await m.wait_for(lambda: 1 in m.agents and m.agents[1].heartbeats >= 1)
        rec = m.agents[1]
        devices = rec.registrations[0].resources.devices
        assert [(d.name, d.kind) for d in devices] == [
            ("temp", pb.SENSOR), ("fan", pb.ACTUATOR), ("dim", pb.ACTUATOR),
            ("lamp", pb.ACTUATOR), ("broken", pb.ACTUATOR)]  # "gone" could not be opened
        assert "edgerm: device gone unavailable" in a.output()

        src = TASK.encode()
        sha = m.add_module(src)
        held = [pb.Device(name=d) for d in ("fan", "dim", "broken", "temp")]
        m.command(1, launch=pb.Launch(task=1, spec=pb.TaskSpec(
            name="act", resources=pb.Resources(devices=held),
            micropython=pb.MicroPythonTask(sha256=sha, size=len(src)))))
        await m.wait_for(lambda: pb.FINISHED in m.states(1, 1)
                         or pb.FAILED in m.states(1, 1), timeout=20)
        assert m.states(1, 1)[-1] == pb.FINISHED, rec.statuses[-1]
        assert [p.data.decode() for p in rec.publishes] == [
            " ".join(str(c) for _, _, c in CALLS)]
        n.cancel_scope.cancel()
    assert [float(x) for x in fan.read_text().split()] == [1.0, 0.0]
    assert [float(x) for x in dim.read_text().split()] == [42.5]
    assert lamp.read_text() == ""  # opened at start-up, never set
