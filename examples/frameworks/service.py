"""A service framework: keep N replicas of a WASM task running, replace the ones that end.

    python examples/frameworks/service.py --replicas 3 --sensor temp

Each replica is a long-running WASM sampler (`sampler SENSOR 1000000000 PERIOD_MS`: a reading
every PERIOD_MS, for ever), so the service is "publish this sensor from N places". The framework
launches replicas on offers until N are alive (STAGING, STARTING, RUNNING or UNREACHABLE count as
alive: an unreachable agent may come back), at most `--per-agent` on one agent, and declines the
rest. When a replica ends — it failed, was killed, its agent restarted or was lost — it launches a
replacement on the next offer. It prints every change and, every `--report-s` seconds, a line
with the replicas and their last readings. Ctrl-C (or `--duration`) tears the service down: the
master kills the replicas.

The master address and token come from --master/--token, EDGERM_MASTER/EDGERM_TOKEN, or a local
cluster's state file (`python -m edgerm_cli.cluster --keep-running`).
"""

from __future__ import annotations

import argparse
import itertools
import signal
import struct
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import trio

from edgerm.framework import (
    TERMINAL_STATES,
    WASM,
    Constraints,
    Framework,
    FrameworkError,
    Module,
    OffersEvent,
    OutputEvent,
    Subscribed,
    UpdateEvent,
    reason_name,
    state_name,
    wasm_task,
)
from edgerm.wire import pb
from edgerm_cli.target import add_target_arguments, resolve_target

SAMPLER = Path(__file__).resolve().parents[1] / "wasm" / "build" / "sampler.wasm"


@dataclass
class Replica:
    task_id: str
    agent_id: int
    agent_name: str
    state: int = pb.STAGING
    last_reading: float | None = None


@dataclass
class Service:
    """The desired and the actual replicas. Pure bookkeeping: `Framework` calls happen in
    `keep_running`."""

    replicas: int
    per_agent: int
    live: dict[str, Replica] = field(default_factory=dict)
    ended: list[Replica] = field(default_factory=list)
    launched: int = 0
    _numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def missing(self) -> int:
        return max(0, self.replicas - len(self.live))

    def on_agent(self, agent_id: int) -> int:
        return sum(1 for r in self.live.values() if r.agent_id == agent_id)

    def new_task_id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._numbers)}"

    def update(self, status: pb.TaskStatus) -> Replica | None:
        """Apply a status; returns the replica if it just ended."""
        replica = self.live.get(status.task_id)
        if replica is None:
            return None
        replica.state = status.state
        if status.state in TERMINAL_STATES:
            del self.live[status.task_id]
            self.ended.append(replica)
            return replica
        return None

    def running(self) -> int:
        return sum(1 for r in self.live.values() if r.state == pb.RUNNING)


def _stamp() -> str:
    return time.strftime("%H:%M:%S")


async def keep_running(fw: Framework, service: Service, module: Module, sensor: str,
                       period_ms: int, out: TextIO, report_s: float = 10.0,
                       prefix: str = "replica") -> None:
    """Maintain the replicas until cancelled."""
    want = Constraints(cpus=0.05, mem_mb=8, devices=[sensor] if sensor else [],
                       executors=[WASM])
    next_report = trio.current_time() + report_s

    def say(text: str) -> None:
        print(f"{_stamp()}  {text}", file=out, flush=True)

    while True:
        ev = None
        with trio.move_on_at(next_report):
            ev = await fw.next_event()
        if ev is None:
            next_report = trio.current_time() + report_s
            readings = ", ".join(
                f"{r.task_id}@{r.agent_name}="
                + (f"{r.last_reading:.2f}" if r.last_reading is not None else "-")
                for r in service.live.values())
            say(f"{service.running()}/{service.replicas} running: {readings or 'none'}")
            continue
        if isinstance(ev, OffersEvent):
            for offer in ev.offers:
                launched_here: list[str] = []
                # Launch what is missing on this offer, within the per-agent cap and what fits.
                left = pb.Offer()
                left.CopyFrom(offer)
                tasks: list[pb.TaskInfo] = []
                while (service.missing() > len(tasks)
                       and service.on_agent(offer.agent_id) + len(tasks) < service.per_agent
                       and want.match(left)):
                    task_id = service.new_task_id(prefix)
                    res = want.resources(left)
                    tasks.append(pb.TaskInfo(task_id=task_id, spec=wasm_task(
                        module, name=task_id, resources=res,
                        args=[sensor, "1000000000", str(period_ms)])))
                    _subtract(left, res)
                    launched_here.append(task_id)
                if not tasks:
                    # Nothing needed here: do not hear about this agent again for a while,
                    # unless a replica ends (then `revive`).
                    await fw.decline(offer.offer_id, refuse_seconds=5)
                    continue
                try:
                    await fw.accept([offer.offer_id], tasks)
                except FrameworkError as e:
                    say(f"launch on {offer.agent_name} refused: {e}")
                    continue
                for task_id in launched_here:
                    service.live[task_id] = Replica(task_id, offer.agent_id, offer.agent_name)
                    service.launched += 1
                    say(f"launched {task_id} on {offer.agent_name}")
        elif isinstance(ev, UpdateEvent):
            replica = service.live.get(ev.task_id)
            before = replica.state if replica else None
            ended = service.update(ev.status)
            if ended is not None:
                why = reason_name(ev.status.reason) if ev.status.reason else ""
                say(f"{ended.task_id} on {ended.agent_name} ended {state_name(ev.state)} "
                    f"{why}".rstrip() + f"; {service.missing()} to replace")
                await fw.revive()      # offers declined earlier are wanted again
            elif replica is not None and ev.state != before:
                say(f"{ev.task_id} on {replica.agent_name}: {state_name(ev.state)}")
        elif isinstance(ev, OutputEvent) and ev.task_id in service.live:
            if len(ev.data) == 8:
                service.live[ev.task_id].last_reading = struct.unpack("<d", ev.data)[0]
        elif isinstance(ev, Subscribed) and ev.failover:
            say("re-subscribed after a connection loss; reconciling")


def _subtract(offer: pb.Offer, res: pb.Resources) -> None:
    """What is left of `offer` once a task takes `res` (scalars and device shares)."""
    r = offer.resources
    r.cpus -= res.cpus
    r.mem_mb -= res.mem_mb
    r.disk_mb -= res.disk_mb
    taken = Counter(d.name for d in res.devices)
    keep = []
    for dev in r.devices:
        if dev.name in taken:
            if dev.shares == 0 or dev.shares <= taken[dev.name]:
                continue          # exclusive, or no share left
            dev.shares -= taken[dev.name]
        keep.append(dev)
    del r.devices[:]
    r.devices.extend(keep)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_target_arguments(p)
    p.add_argument("--replicas", type=int, default=3)
    p.add_argument("--per-agent", type=int, default=2, help="most replicas on one agent")
    p.add_argument("--sensor", default="temp", help="the sensor each replica publishes")
    p.add_argument("--period-ms", type=int, default=1000, help="between a replica's readings")
    p.add_argument("--report-s", type=float, default=10.0, help="status line period")
    p.add_argument("--duration", type=float, default=0.0,
                   help="run this many seconds, then tear down (0: until Ctrl-C)")
    p.add_argument("--name", default="service", help="framework name")
    p.add_argument("--module", type=Path, default=SAMPLER,
                   help="the replica's module (default examples/wasm/build/sampler.wasm)")
    return p


async def main_async(args: argparse.Namespace, out: TextIO) -> int:
    try:
        module_bytes = args.module.read_bytes()
    except OSError as e:
        print(f"cannot read the module ({e}); build it with `make -C examples/wasm`",
              file=sys.stderr)
        return 2
    target = resolve_target(args)
    service = Service(args.replicas, args.per_agent)
    try:
        async with Framework.connect(list(target.masters), name=args.name,
                                     token=target.framework_token,
                                     failover_timeout_s=60, ca_file=target.ca_file) as fw:
            module = await fw.upload(module_bytes, name=args.module.name)
            print(f"{_stamp()}  service {fw.framework_id}: keeping {args.replicas} replicas "
                  f"publishing '{args.sensor}'", file=out, flush=True)
            with trio.move_on_after(args.duration or float("inf")):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_cancel_on_sigint, nursery.cancel_scope)
                    await keep_running(fw, service, module, args.sensor, args.period_ms, out,
                                       args.report_s)
            print(f"{_stamp()}  tearing down ({service.launched} replicas launched, "
                  f"{len(service.ended)} replaced or ended)", file=out, flush=True)
            await fw.teardown()
    except FrameworkError as e:
        print(f"service: {e}", file=sys.stderr)
        return 4
    return 0


async def _cancel_on_sigint(scope: trio.CancelScope) -> None:
    import threading
    if threading.current_thread() is not threading.main_thread():
        await trio.sleep_forever()
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            scope.cancel()
            return


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return trio.run(main_async, args, sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
