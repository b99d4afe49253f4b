"""Actuators on the Linux agent: their config, range checks, drivers and journals, and
`set_actuator` from a WASM task in the real wasm3 child (every return code of the ABI)."""

from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import Any

import pytest
import trio

from edgerm.wire import pb
from edgerm_agent.actuators import (
    JOURNAL_MAX_BYTES,
    ActuatorError,
    ActuatorSpec,
    drive,
    in_range,
    read_journal,
)
from edgerm_agent.config import ConfigError, parse_config
from edgerm_agent.executors.base import TaskContext
from edgerm_agent.executors.wasm import WasmExecutor
from edgerm_agent.inventory import detect_resources
from edgerm_agent.modules import ModuleStore, ModuleUnavailable
from edgerm_agent.sensors import SensorSpec
from tests.agent.test_wasm_executor import sha, wat

TS = pb.TaskState
BASE = {"master": {"url": "ws://127.0.0.1:1/agent", "token": "t"}}

# (name, value, the return code the ABI wants) for a task holding fan, dim, broken and temp.
CALLS = [
    ("fan", 1.0, 0),
    ("fan", 0.5, -6),           # a switch takes 0 or 1
    ("dim", 0.25, 0),
    ("dim", 1.5, -6),           # a duty cycle is 0..1
    ("temp", 1.0, -1),          # held, but a sensor
    ("lamp", 1.0, -2),          # an actuator of this agent, not held
    ("nope", 1.0, -2),          # held by nobody, known to nobody
    ("broken", 1.0, -3),        # its file cannot be written
    ("fan", math.nan, -6),
    ("dim", -0.0, 0),
    ("fan", 0.0, 0),
]


def _calls_wat() -> str:
    names = sorted({n for n, _, _ in CALLS})
    offsets, data, at = {}, "", 0
    for n in names:
        offsets[n] = at
        data += n
        at += len(n)
    body = ""
    for k, (n, v, _) in enumerate(CALLS):
        value = "nan" if math.isnan(v) else repr(v)
        body += (f"(i32.store8 (i32.const {512 + k}) (call $set (i32.const {offsets[n]}) "
                 f"(i32.const {len(n)}) (f64.const {value})))\n")
    return f"""(module
  (import "edgerm" "set_actuator" (func $set (param i32 i32 f64) (result i32)))
  (import "edgerm" "publish" (func $publish (param i32 i32) (result i32)))
  (memory (export "memory") 1 1)
  (data (i32.const 0) "{data}")
  (func (export "run") (result i32)
    {body}
    (drop (call $publish (i32.const 512) (i32.const {len(CALLS)})))
    (i32.const 0)))
"""


def test_config_declares_actuators_with_their_range(tmp_path: Path) -> None:
    cfg = parse_config({**BASE, "work_dir": str(tmp_path), "devices": [
        {"name": "relay", "kind": "actuator"},
        {"name": "fan", "kind": "actuator", "output": "pwm", "file": "/sys/x/duty_cycle",
         "scale": 20000},
        {"name": "valve", "kind": "actuator", "output": "level", "min": -5, "max": 40,
         "unit": "Cel"}]})
    relay, fan, valve = (d.actuator for d in cfg.devices)
    assert relay == ActuatorSpec("relay", "switch", 0.0, 1.0, "", 1.0,
                                 str(tmp_path / "actuators" / "relay.log"))
    assert fan is not None and (fan.output, fan.path, fan.scale) == ("pwm", "/sys/x/duty_cycle",
                                                                     20000.0)
    assert valve is not None and (valve.min, valve.max) == (-5.0, 40.0)
    res = detect_resources(cfg)
    # Exclusive (shares 0) and an ACTUATOR in the inventory the master gets.
    assert [(d.name, d.kind, d.shares) for d in res.devices] == [
        ("relay", pb.ACTUATOR, 0), ("fan", pb.ACTUATOR, 0), ("valve", pb.ACTUATOR, 0)]


@pytest.mark.parametrize("device, key", [
    ({"kind": "actuator", "shares": 2}, "shares"),
    ({"kind": "actuator", "output": "servo"}, "output"),
    ({"kind": "actuator", "output": "level", "min": 3}, "min, max"),
    ({"kind": "actuator", "output": "level", "min": 3, "max": 1}, "min, max"),
    ({"kind": "actuator", "min": 0, "max": 5}, "min/max"),
    ({"kind": "actuator", "constant": 1}, "constant"),
    ({"kind": "actuator", "scale": "big"}, "scale"),
    ({"kind": "sensor", "constant": 1, "output": "pwm"}, "output"),
    ({"kind": "actuator", "name": "../etc"}, "name"),
])
def test_bad_actuator_config_names_the_key(device: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=r"devices\[0\]\." + key.replace("/", ".")):
        parse_config({**BASE, "devices": [{"name": "a", **device}]})


def test_ranges() -> None:
    switch, pwm = ActuatorSpec("s"), ActuatorSpec("p", "pwm")
    level = ActuatorSpec("l", "level", min=-1.5, max=2.0)
    assert [in_range(switch, v) for v in (0, 1, 0.5, 2, -1, math.nan)] == [
        True, True, False, False, False, False]
    assert [in_range(pwm, v) for v in (0, 0.01, 1, 1.01, -0.01, math.inf)] == [
        True, True, True, False, False, False]
    assert [in_range(level, v) for v in (-1.5, 2, 0.3, 2.5)] == [True, True, True, False]


def test_drive_writes_the_file_and_journals(tmp_path: Path) -> None:
    node = tmp_path / "duty_cycle"
    journal = tmp_path / "j" / "fan.log"  # its directory is made on the first set
    spec = ActuatorSpec("fan", "pwm", path=str(node), scale=20000, journal=str(journal))
    drive(spec, 0.25, task=3, elapsed_ms=10)
    assert node.read_text() == "5000\n"
    drive(spec, 0.123456, task=3, elapsed_ms=20)
    assert node.read_text() == "2469.12\n"
    assert read_journal(str(journal)) == [(10, 3, 0.25), (20, 3, 0.123456)]
    gone = ActuatorSpec("x", path=str(tmp_path / "missing" / "value"), journal=str(journal))
    with pytest.raises(ActuatorError, match="x: "):
        drive(gone, 1, task=4, elapsed_ms=30)
    assert len(read_journal(str(journal))) == 2  # a failed set is not recorded


def test_journal_rotates(tmp_path: Path) -> None:
    journal = tmp_path / "relay.log"
    journal.write_text("1 1 0\n" * (JOURNAL_MAX_BYTES // 6 + 1))
    drive(ActuatorSpec("relay", journal=str(journal)), 1, task=2, elapsed_ms=5)
    assert read_journal(str(journal)) == [(5, 2, 1.0)]
    assert (tmp_path / "relay.log.1").stat().st_size > JOURNAL_MAX_BYTES


async def run_task(ex: WasmExecutor, ctx: TaskContext) -> None:
    """Run one task to its end on the executor `ex` (its wasm3 child started, then closed)."""
    async with trio.open_nursery() as n:
        await ex.start(n)
        with trio.fail_after(20):
            await ex.run(ctx)
        ex.close()
        n.cancel_scope.cancel()


async def test_set_actuator_from_a_wasm_task(tmp_path: Path) -> None:
    """Every code of set_actuator in the real wasm3 child; only the good sets are journaled."""
    cfg = parse_config({**BASE, "work_dir": str(tmp_path / "work"), "devices": [
        {"name": "fan", "kind": "actuator"},
        {"name": "dim", "kind": "actuator", "output": "pwm", "file": str(tmp_path / "dim"),
         "scale": 100},
        {"name": "lamp", "kind": "actuator"},
        {"name": "broken", "kind": "actuator", "file": str(tmp_path / "no" / "value")},
        {"name": "temp", "constant": 20}]})
    actuators = {d.name: d.actuator for d in cfg.devices if d.actuator is not None}
    mod = wat(tmp_path, _calls_wat())

    async def fetch(digest: bytes, size: int) -> bytes:
        if digest != sha(mod):
            raise ModuleUnavailable("no such module")
        return mod
    ex = WasmExecutor(ModuleStore(tmp_path / "modules", fetch),
                      sensors={"temp": SensorSpec("temp", "constant", value=20)},
                      actuators=actuators)
    reports: list[tuple[int, dict[str, Any]]] = []
    published: list[bytes] = []

    async def publish(data: bytes) -> None:
        published.append(data)

    async def flush() -> None:
        pass
    claim = pb.Resources(mem_mb=1)
    for name in ("fan", "dim", "broken", "temp"):
        claim.devices.add(name=name)
    ctx = TaskContext(task=7, spec=pb.TaskSpec(resources=claim, wasm=pb.WasmTask(
        sha256=sha(mod), size=len(mod))), report=lambda s, **kw: reports.append((s, kw)),
        publish=publish, flush=flush)
    await run_task(ex, ctx)
    assert [s for s, _ in reports] == [TS.RUNNING, TS.FINISHED], reports
    assert list(struct.unpack(f"{len(CALLS)}b", published[0])) == [c for _, _, c in CALLS]
    fan = read_journal(str(tmp_path / "work" / "actuators" / "fan.log"))
    assert [(t, v) for _, t, v in fan] == [(7, 1.0), (7, 0.0)]
    dim = read_journal(str(tmp_path / "work" / "actuators" / "dim.log"))
    assert [v for _, _, v in dim] == [0.25, 0.0]
    assert (tmp_path / "dim").read_text() == "0\n"
    assert not (tmp_path / "work" / "actuators" / "lamp.log").exists()
    assert not (tmp_path / "work" / "actuators" / "broken.log").exists()


async def test_an_import_newer_than_the_agent_fails_at_instantiation(tmp_path: Path) -> None:
    """How a v2 task fails on a v1 agent, one version up: before the entry runs, naming the
    import and the ABI the agent implements."""
    mod = wat(tmp_path, """(module
  (import "edgerm" "set_actuator" (func (param i32 i32 f64) (result i32)))
  (import "edgerm" "get_actuator" (func (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1 1)
  (func (export "run") (result i32) (i32.const 0)))""")

    async def fetch(digest: bytes, size: int) -> bytes:
        return mod
    ex = WasmExecutor(ModuleStore(tmp_path / "modules", fetch), sensors={})
    reports: list[tuple[int, dict[str, Any]]] = []

    async def nothing(*_: Any) -> None:
        pass
    ctx = TaskContext(task=1, spec=pb.TaskSpec(resources=pb.Resources(mem_mb=1),
                                               wasm=pb.WasmTask(sha256=sha(mod), size=len(mod))),
                      report=lambda s, **kw: reports.append((s, kw)), publish=nothing,
                      flush=nothing)
    await run_task(ex, ctx)
    assert [(s, kw["reason"]) for s, kw in reports] == [(TS.ERROR, pb.LAUNCH_FAILED)]
    assert "edgerm.get_actuator" in reports[0][1]["message"]
    assert "ABI v2" in reports[0][1]["message"]
