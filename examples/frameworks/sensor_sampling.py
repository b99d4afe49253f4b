"""Sensor sampling: run a WASM sampler on every agent that offers a given sensor, collect the
readings and show them.

    python examples/frameworks/sensor_sampling.py --sensor temp --samples 5 --period-ms 200

How it works: the framework uploads `examples/wasm/build/sampler.wasm` (built with
`make -C examples/wasm`), then watches offers. Each offer from an agent it has not sampled yet
that has the sensor and the WASM executor gets one sampler task (`sampler SENSOR COUNT
PERIOD_MS`, which publishes each reading as a little-endian f64); every other offer is declined.
Readings are printed as they arrive. When every launched sampler has ended and no new agent has
turned up for `--settle-s` seconds, it prints a summary per agent and exits: 0 when every sampler
FINISHED, 1 otherwise, 3 when no agent offered the sensor at all.

The master address and token come from --master/--token, EDGERM_MASTER/EDGERM_TOKEN, or a local
cluster's state file (`python -m edgerm_cli.cluster --keep-running`).
"""

from __future__ import annotations

import argparse
import statistics
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import trio

from edgerm.framework import (
    WASM,
    Constraints,
    Framework,
    FrameworkError,
    OffersEvent,
    OutputEvent,
    UpdateEvent,
    reason_name,
    state_name,
    wasm_task,
)
from edgerm.wire import pb
from edgerm_cli.target import add_target_arguments, resolve_target

SAMPLER = Path(__file__).resolve().parents[1] / "wasm" / "build" / "sampler.wasm"


@dataclass
class Sampling:
    """What the framework knows: one sampler per agent, its readings and its final state."""

    sensor: str
    task_of_agent: dict[int, str] = field(default_factory=dict)
    agent_names: dict[int, str] = field(default_factory=dict)
    units: dict[int, str] = field(default_factory=dict)
    readings: dict[str, list[float]] = field(default_factory=dict)
    final: dict[str, pb.TaskStatus] = field(default_factory=dict)

    def pending(self) -> list[str]:
        return [t for t in self.task_of_agent.values() if t not in self.final]


def decode_reading(data: bytes) -> float | None:
    return struct.unpack("<d", data)[0] if len(data) == 8 else None


async def sample(fw: Framework, module_bytes: bytes, sensor: str, samples: int, period_ms: int,
                 settle_s: float, out: TextIO, wait_first_s: float = 30.0) -> Sampling:
    """Launch one sampler per agent offering `sensor`; return when all have ended and no new
    agent showed up for `settle_s` seconds (or none at all within `wait_first_s`)."""
    module = await fw.upload(module_bytes, name="sampler.wasm")
    want = Constraints(cpus=0.05, mem_mb=8, devices=[sensor], executors=[WASM])
    state = Sampling(sensor)
    quiet_since = trio.current_time()
    print(f"sampling '{sensor}' on every agent that offers it ({samples} readings, "
          f"{period_ms} ms apart)", file=out, flush=True)
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
                task_id = f"sample-{sensor}-{offer.agent_id}"
                spec = wasm_task(module, name=task_id, resources=want.resources(offer),
                                 args=[sensor, str(samples), str(period_ms)],
                                 timeout_s=max(10, samples * period_ms // 1000 * 3 + 10))
                await fw.launch(offer, task_id, spec)
                state.task_of_agent[offer.agent_id] = task_id
                state.agent_names[offer.agent_id] = offer.agent_name
                state.units[offer.agent_id] = next(
                    (d.unit for d in offer.resources.devices if d.name == sensor), "")
                state.readings[task_id] = []
                quiet_since = trio.current_time()
                print(f"launched {task_id} on {offer.agent_name}", file=out, flush=True)
        elif isinstance(ev, OutputEvent) and ev.task_id in state.readings:
            value = decode_reading(ev.data)
            if value is None:
                continue
            state.readings[ev.task_id].append(value)
            agent = _agent_of(state, ev.task_id)
            print(f"{state.agent_names[agent]:>16}  {sensor} = {value:.2f} "
                  f"{state.units.get(agent, '')}".rstrip(), file=out, flush=True)
        elif isinstance(ev, UpdateEvent) and ev.task_id in state.readings and ev.terminal:
            state.final[ev.task_id] = ev.status
            quiet_since = trio.current_time()
            if ev.state != pb.FINISHED:
                print(f"{ev.task_id} ended {state_name(ev.state)} ({reason_name(ev.status.reason)})"
                      f" {ev.status.message.strip()}".rstrip(), file=out, flush=True)


def _agent_of(state: Sampling, task_id: str) -> int:
    return next(a for a, t in state.task_of_agent.items() if t == task_id)


def summary(state: Sampling) -> str:
    lines = [f"{'agent':>16}  {'n':>3}  {'min':>8}  {'mean':>8}  {'max':>8}  state"]
    for agent, task_id in sorted(state.task_of_agent.items()):
        values = state.readings[task_id]
        final = state.final.get(task_id)
        end = state_name(final.state) if final else "unknown"
        if values:
            lines.append(f"{state.agent_names[agent]:>16}  {len(values):>3}  {min(values):>8.2f}  "
                         f"{statistics.fmean(values):>8.2f}  {max(values):>8.2f}  {end}")
        else:
            lines.append(f"{state.agent_names[agent]:>16}  {0:>3}  {'-':>8}  {'-':>8}  "
                         f"{'-':>8}  {end}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_target_arguments(p)
    p.add_argument("--sensor", default="temp", help="sensor to sample (default temp)")
    p.add_argument("--samples", type=int, default=5, help="readings per agent")
    p.add_argument("--period-ms", type=int, default=200, help="between readings")
    p.add_argument("--settle-s", type=float, default=3.0,
                   help="stop once no new agent turned up for this long after the last sampler")
    p.add_argument("--wait-s", type=float, default=30.0,
                   help="give up when no agent offers the sensor within this long")
    p.add_argument("--module", type=Path, default=SAMPLER,
                   help="the sampler module (default examples/wasm/build/sampler.wasm)")
    return p


async def main_async(args: argparse.Namespace, out: TextIO) -> int:
    try:
        module_bytes = args.module.read_bytes()
    except OSError as e:
        print(f"cannot read the sampler ({e}); build it with `make -C examples/wasm`",
              file=sys.stderr)
        return 2
    target = resolve_target(args)
    try:
        async with Framework.connect(list(target.masters), name="sensor-sampling",
                                     token=target.framework_token,
                                     ca_file=target.ca_file) as fw:
            state = await sample(fw, module_bytes, args.sensor, args.samples, args.period_ms,
                                 args.settle_s, out, wait_first_s=args.wait_s)
            await fw.teardown()
    except FrameworkError as e:
        print(f"sensor_sampling: {e}", file=sys.stderr)
        return 4
    if not state.task_of_agent:
        print(f"no agent offered a '{args.sensor}' sensor with the WASM executor", file=out)
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
