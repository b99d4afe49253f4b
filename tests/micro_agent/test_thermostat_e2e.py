"""The thermostat example end to end: the real master, a Linux agent running the WASM controller
on wasm3 and a MicroPython agent (the real interpreter, the .mpy build) running its twin, and
the example framework (examples/frameworks/thermostat.py) placing one controller on each. Every
value a controller set is checked against its readings and against what the simulated actuator
recorded on the agent (the Linux agent's journal, the MicroPython agent's file)."""

from __future__ import annotations

import importlib.util
import io
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import trio

from edgerm_agent.actuators import read_journal
from edgerm_agent.testing import AgentProcess
from edgerm_cli.listing import StateError, fetch_state
from edgerm_master.testing_io import MasterProcess

from .conftest import needs_micropython

pytestmark = needs_micropython

ROOT = Path(__file__).resolve().parents[2]
SETPOINT = 24.0
STEPS = 8
# The MicroPython board's simulated sensor, read in turn: crosses the setpoint both ways.
MP_READINGS = [22.0, 25.0, 26.5, 23.5, 24.0, 24.5, 21.0, 30.0]


def _load_example() -> ModuleType:
    path = ROOT / "examples" / "frameworks" / "thermostat.py"
    spec = importlib.util.spec_from_file_location("example_thermostat", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module      # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_example_is_a_runnable_script() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "frameworks" /
                                               "thermostat.py"), "--help"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "--actuator" in done.stdout


async def test_thermostat_on_a_linux_and_a_micropython_agent(agent_factory,
                                                             tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    subprocess.run(["make", "-s", "-C", str(ROOT / "examples" / "wasm")], check=True)
    master = MasterProcess(str(tmp_path / "master"), agent_token="tok", heartbeat_ms=300)
    await trio.to_thread.run_sync(master.start)
    host, port = master.ws
    # A sine around the setpoint, sampled over more than one period: both states come up.
    linux = AgentProcess(tmp_path / "linux", f"ws://{host}:{port}/agent", name="linux-thermo",
                         token="tok", extra=f"""
[[devices]]
name = "room"
kind = "sensor"
unit = "Cel"
sine = {{ mean = {SETPOINT}, amplitude = 3.0, period_s = 0.9 }}
[[devices]]
name = "fan"
kind = "actuator"
""")
    fan_file = tmp_path / "mp-fan.values"
    try:
        linux.start()
        mp = agent_factory({
            "master": f"{master.coap[0]}:{master.coap[1]}", "token": "tok", "name": "mp-thermo",
            "heartbeat_ms": 300, "ack_timeout_ms": 200, "max_retransmit": 2, "block_szx": 3,
            "mem_mb": 0.0625,
            "sensors": [{"name": "room", "unit": "Cel", "sim": MP_READINGS},
                        {"name": "fan", "kind": "actuator", "sim": str(fan_file)}]})
        await mp.start()
        thermostat = _load_example()
        out = io.StringIO()
        args = thermostat.build_parser().parse_args([])  # the default controller paths
        url = f"ws://{host}:{port}"
        with trio.fail_after(30):  # both agents first, so that each gets a controller
            while True:
                try:
                    agents = (await fetch_state(url, "operator-token")).agents
                except StateError:
                    agents = []
                if {a.name for a in agents if a.state == "active"} >= {"linux-thermo",
                                                                        "mp-thermo"}:
                    break
                await trio.sleep(0.1)
        with trio.fail_after(90):
            async with thermostat.Framework.connect(url, name="thermostat-e2e",
                                                    token="framework-token") as fw:
                modules = {
                    thermostat.WASM: await fw.upload(args.wasm.read_bytes()),
                    thermostat.MICROPYTHON: await fw.upload(args.micropython.read_bytes(),
                                                            thermostat.pb.MICROPYTHON_SOURCE)}
                state = await thermostat.control(
                    fw, modules, "room", "fan", [f"{SETPOINT:g}", str(STEPS), "100", "0"],
                    settle_s=1.5, out=out)
                await fw.teardown()
    finally:
        await trio.to_thread.run_sync(linux.stop)
        print("--- linux agent ---\n" + linux.log())
        await trio.to_thread.run_sync(master.stop)
    text = out.getvalue()
    assert sorted(state.agent_names.values()) == ["linux-thermo", "mp-thermo"], text
    assert not state.pending(), text
    assert all(s.state == thermostat.pb.FINISHED for s in state.final.values()), text
    by_name = {state.agent_names[a]: state.steps[t] for a, t in state.task_of_agent.items()}
    for name, steps in by_name.items():
        assert len(steps) == STEPS, (name, text)
        # The loop, as the task ran it: on above the setpoint, off at or below it.
        assert all(value == (1.0 if reading > SETPOINT else 0.0) for reading, value in steps), \
            (name, steps)
    assert {v for _, v in by_name["linux-thermo"]} == {0.0, 1.0}, by_name
    assert [r for r, _ in by_name["mp-thermo"]] == MP_READINGS
    # What the actuators recorded is what the controllers said they set.
    journal = read_journal(str(tmp_path / "linux" / "actuators" / "fan.log"))
    assert [v for _, _, v in journal] == [v for _, v in by_name["linux-thermo"]]
    assert len({task for _, task, _ in journal}) == 1
    assert [float(x) for x in fan_file.read_text().split()] == [v for _, v in by_name["mp-thermo"]]
