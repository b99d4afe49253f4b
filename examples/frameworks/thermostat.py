"""Thermostat: close a loop on every agent that has a sensor and an actuator — read a
temperature, drive a fan or a relay — with a controller task on the device itself.

    python examples/frameworks/thermostat.py --sensor temp --actuator fan --setpoint 24 \
        --steps 20 --period-ms 500

How it works: the framework uploads both controllers, `examples/wasm/build/thermostat.wasm`
(built with `make -C examples/wasm`; for agents with the WASM executor) and
`micro_agent/examples/thermostat.py` (for MicroPython boards). Each offer from an agent it has
not placed a controller on yet that has both devices gets one (`thermostat SENSOR ACTUATOR
SETPOINT STEPS PERIOD_MS HYSTERESIS`), holding the sensor (a share) and the actuator (whole:
an actuator is one task's at a time, so no second controller can fight over the fan); every
other offer is declined. The loop runs on the device, so it keeps working over a slow or
broken link; each step's reading and the value the controller set come back as task output and
are printed. When every controller has ended and no new agent has turned up for `--settle-s`
seconds, it prints a summary per agent and exits: 0 when every controller FINISHED, 1
otherwise, 3 when no agent offered both devices.

The master address and token come from --master/--token, EDGERM_MASTER/EDGERM_TOKEN, or a local
cluster's state file (`python -m edgerm_cli.cluster --keep-running`).
"""

from __future__ import annotations

import argparse
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import trio

from edgerm.framework import (
    MICROPYTHON,
    WASM,
    Constraints,
    Framework,
    FrameworkError,
    Module,
    OffersEvent,
    OutputEvent,
    UpdateEvent,
    micropython_task,
    reason_name,
    state_name,
    wasm_task,
)
from edgerm.wire import pb
from edgerm_cli.target import add_target_arguments, resolve_target

ROOT = Path(__file__).resolve().parents[2]
WASM_CONTROLLER = ROOT / "examples" / "wasm" / "build" / "thermostat.wasm"
MICROPYTHON_CONTROLLER = ROOT / "micro_agent" / "examples" / "thermostat.py"


@dataclass
class Control:
    """What the framework knows: one controller per agent, its steps and its final state."""

    sensor: str
    actuator: str
    task_of_agent: dict[int, str] = field(default_factory=dict)
    agent_names: dict[int, str] = field(default_factory=dict)
    steps: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # (reading, set)
    final: dict[str, pb.TaskStatus] = field(default_factory=dict)

    def pending(self) -> list[str]:
        return [t for t in self.task_of_agent.values() if t not in self.final]


def decode_step(data: bytes) -> tuple[float, float] | None:
    """A controller's output: 16 bytes (two f64) from WASM, "reading value" from MicroPython."""
    if len(data) == 16:
        reading, value = struct.unpack("<dd", data)
        return reading, value
    try:
        reading_text, value_text = data.decode().split()
        return float(reading_text), float(value_text)
    except ValueError:
        return None


async def control(fw: Framework, modules: dict[int, Module], sensor: str, actuator: str,
                  args: list[str], settle_s: float, out: TextIO,
                  wait_first_s: float = 30.0) -> Control:
    """Place one controller per agent offering both devices; return when all have ended and no
    new agent showed up for `settle_s` seconds (or none at all within `wait_first_s`).
    `modules` maps an executor (WASM, MICROPYTHON) to its uploaded controller."""
    # One 64 KiB page is all the WASM controller uses (and what a small board offers).
    want = Constraints(cpus=0.05, mem_mb=0.0625, devices=[sensor, actuator],
                       executors=list(modules))
    state = Control(sensor, actuator)
    quiet_since = trio.current_time()
    print(f"keeping '{sensor}' at {args[0]} with '{actuator}' on every agent that has both",
          file=out, flush=True)
    while True:
        if state.task_of_agent:
            deadline = quiet_since + settle_s if not state.pending() else float("inf")
        else:
            deadline = quiet_since + wait_first_s
        ev = None
        with trio.move_on_at(deadline):
            ev = await fw.next_event()
        if ev is None:
            return state
        if isinstance(ev, OffersEvent):
            for offer in ev.offers:
                if offer.agent_id in state.task_of_agent or not want.match(offer):
                    await fw.decline(offer.offer_id, refuse_seconds=settle_s)
                    continue
                await _place(fw, modules, want, offer, state, args, out)
                quiet_since = trio.current_time()
        elif isinstance(ev, OutputEvent) and ev.task_id in state.steps:
            step = decode_step(ev.data)
            if step is None:
                continue
            state.steps[ev.task_id].append(step)
            agent = next(a for a, t in state.task_of_agent.items() if t == ev.task_id)
            print(f"{state.agent_names[agent]:>16}  {sensor} = {step[0]:.2f}  ->  "
                  f"{actuator} = {step[1]:g}", file=out, flush=True)
        elif isinstance(ev, UpdateEvent) and ev.task_id in state.steps and ev.terminal:
            state.final[ev.task_id] = ev.status
            quiet_since = trio.current_time()
            if ev.state != pb.FINISHED:
                print(f"{ev.task_id} ended {state_name(ev.state)} ({reason_name(ev.status.reason)})"
                      f" {ev.status.message.strip()}".rstrip(), file=out, flush=True)


async def _place(fw: Framework, modules: dict[int, Module], want: Constraints, offer: pb.Offer,
                 state: Control, args: list[str], out: TextIO) -> None:
    task_id = f"thermostat-{offer.agent_id}"
    resources = want.resources(offer)
    # The WASM controller sleeps between steps: timeout after twice its run time, at least 30 s.
    timeout_s = max(30, 2 * int(args[1]) * int(args[2]) // 1000) if int(args[1]) else 0
    if WASM in offer.executors and WASM in modules:
        spec = wasm_task(modules[WASM], name=task_id, resources=resources,
                         args=[state.sensor, state.actuator, *args], timeout_s=timeout_s)
    else:
        spec = micropython_task(modules[MICROPYTHON], name=task_id, resources=resources,
                                args=[state.sensor, state.actuator, *args],
                                timeout_s=timeout_s)
    await fw.launch(offer, task_id, spec)
    state.task_of_agent[offer.agent_id] = task_id
    state.agent_names[offer.agent_id] = offer.agent_name
    state.steps[task_id] = []
    print(f"launched {task_id} on {offer.agent_name}", file=out, flush=True)


def summary(state: Control) -> str:
    lines = [f"{'agent':>16}  {'steps':>5}  {'on':>4}  {'last':>8}  state"]
    for agent, task_id in sorted(state.task_of_agent.items()):
        steps = state.steps[task_id]
        final = state.final.get(task_id)
        end = state_name(final.state) if final else "unknown"
        on = sum(1 for _, v in steps if v)
        last = f"{steps[-1][1]:g}" if steps else "-"
        lines.append(f"{state.agent_names[agent]:>16}  {len(steps):>5}  {on:>4}  {last:>8}  "
                     f"{end}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_target_arguments(p, master_help="master address (env EDGERM_MASTER)")
    p.add_argument("--sensor", default="temp", help="the temperature sensor (default temp)")
    p.add_argument("--actuator", default="fan", help="the fan or relay (default fan)")
    p.add_argument("--setpoint", type=float, default=25.0,
                   help="switch on above this reading (default 25)")
    p.add_argument("--hysteresis", type=float, default=0.0,
                   help="switch off at setpoint - hysteresis (default 0)")
    p.add_argument("--steps", type=int, default=10, help="control steps per agent (0: forever)")
    p.add_argument("--period-ms", type=int, default=1000, help="between steps")
    p.add_argument("--settle-s", type=float, default=3.0,
                   help="stop once no new agent turned up for this long after the last one")
    p.add_argument("--wait-s", type=float, default=30.0,
                   help="give up when no agent offers both devices within this long")
    p.add_argument("--wasm", type=Path, default=WASM_CONTROLLER,
                   help="the WASM controller (default examples/wasm/build/thermostat.wasm)")
    p.add_argument("--micropython", type=Path, default=MICROPYTHON_CONTROLLER,
                   help="the MicroPython controller (default micro_agent/examples/thermostat.py)")
    return p


async def main_async(args: argparse.Namespace, out: TextIO) -> int:
    try:
        wasm_bytes = args.wasm.read_bytes()
        mp_bytes = args.micropython.read_bytes()
    except OSError as e:
        print(f"cannot read a controller ({e}); build the WASM one with `make -C examples/wasm`",
              file=sys.stderr)
        return 2
    target = resolve_target(args)
    task_args = [f"{args.setpoint:g}", str(args.steps), str(args.period_ms),
                 f"{args.hysteresis:g}"]
    try:
        async with Framework.connect(list(target.masters), name="thermostat",
                                     token=target.framework_token,
                                     ca_file=target.ca_file) as fw:
            modules: dict[int, Module] = {
                WASM: await fw.upload(wasm_bytes, name="thermostat.wasm"),
                MICROPYTHON: await fw.upload(mp_bytes, pb.MICROPYTHON_SOURCE,
                                             name="thermostat.py")}
            state = await control(fw, modules, args.sensor, args.actuator, task_args,
                                  args.settle_s, out, wait_first_s=args.wait_s)
            await fw.teardown()
    except FrameworkError as e:
        print(f"thermostat: {e}", file=sys.stderr)
        return 4
    if not state.task_of_agent:
        print(f"no agent offered both '{args.sensor}' and '{args.actuator}'", file=out)
        return 3
    print(summary(state), file=out, flush=True)
    finished = all(s.state == pb.FINISHED for s in state.final.values())
    return 0 if finished and not state.pending() else 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return trio.run(main_async, args, sys.stdout)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
