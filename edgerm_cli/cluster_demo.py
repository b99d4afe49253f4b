"""The local cluster's demo framework: build the example WASM tasks, upload the sampler, launch
it (and the MicroPython sampler when that agent is up) on agents offering a `temp` sensor, and
show each state transition and reading as it arrives. Run by `edgerm_cli.cluster`.
"""

from __future__ import annotations

import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from edgerm.framework import (
    MICROPYTHON,
    WASM,
    ConnectionLost,
    Constraints,
    Framework,
    FrameworkError,
    OffersEvent,
    OutputEvent,
    UpdateEvent,
    micropython_task,
    reason_name,
    state_name,
    wasm_task,
)
from edgerm.wire import pb
from edgerm_cli.cluster_processes import (
    REPO,
    ClusterSettings,
    Console,
    RunningCluster,
    shown_path,
)
from edgerm_cli.run import format_output


class DemoFailed(Exception):
    pass


WASM_EXAMPLES = REPO / "examples" / "wasm"


async def build_examples(console: Console) -> Path:
    """Every example WASM task (`examples/wasm/build/*.wasm`: the demo's sampler, and hello.wasm
    &c. that the hints and the README name), built with the example Makefile when missing or
    stale. Returns the build directory; DemoFailed when nothing usable is there."""
    build = WASM_EXAMPLES / "build"
    if not (WASM_EXAMPLES / "Makefile").exists():
        if (build / "sampler.wasm").exists():
            return build
        raise DemoFailed(f"{WASM_EXAMPLES} is missing: run from a clone of the repository")
    if shutil.which("make") is None or shutil.which("clang") is None:
        if (build / "sampler.wasm").exists():
            return build
        raise DemoFailed("building the WASM examples needs make and clang (with lld): "
                         "apt-get install make clang lld")
    result = await trio.run_process(["make", "-s", "-C", str(WASM_EXAMPLES)],
                                    capture_stdout=True, capture_stderr=True, check=False)
    if result.returncode != 0:
        raise DemoFailed("building the WASM examples failed:\n"
                         + result.stderr.decode(errors="replace")[-2000:])
    built = sorted(p.name for p in build.glob("*.wasm"))
    console.say(f"built the WASM examples in {shown_path(build)}: {', '.join(built)}")
    return build


async def build_sampler(console: Console) -> bytes:
    """examples/wasm/build/sampler.wasm (with the other examples, see build_examples)."""
    return (await build_examples(console) / "sampler.wasm").read_bytes()


def format_reading(data: bytes, unit: str) -> str:
    """A reading as published: the WASM sampler sends a little-endian f64, the MicroPython
    sampler text."""
    shown = format_output(data, "auto")
    if len(data) == 8 or shown == data.decode("utf-8", "replace").rstrip("\n"):
        try:
            return f"{float(shown):.2f} {unit}".strip()
        except ValueError:
            pass
    return shown


@dataclass
class DemoJob:
    """One sampler of the demo: what it needs, what it runs, what became of it."""

    label: str                      # "WASM sampler"
    want: Constraints
    build: Any                      # (offer) -> pb.TaskSpec
    unit: str
    task_id: str = ""
    agent: str = ""
    readings: int = 0
    final: pb.TaskStatus | None = None


MICRO_SAMPLER = REPO / "micro_agent" / "examples" / "sampler.py"


async def run_demo(cluster: RunningCluster, settings: ClusterSettings, console: Console,
                   timeout_s: float = 60.0) -> bool:
    """Upload the WASM sampler, launch it on a `temp`-offering WASM agent (and, when the
    MicroPython agent is up, the MicroPython sampler on it), show progress and readings.
    True when every sampler FINISHED."""
    wasm_bytes = await build_sampler(console)
    sensor = "temp"
    samples, period = str(settings.samples), str(settings.period_ms)
    with trio.fail_after(timeout_s):
        async with Framework.connect(cluster.master_ws, name="edgerm-demo",
                                     token=cluster.tokens.framework,
                                     failover_timeout_s=10, ca_file=cluster.ca_file) as fw:
            console.say(f"demo framework subscribed ({fw.framework_id})")
            wasm = await fw.upload(wasm_bytes, name="sampler.wasm")
            console.say(f"uploaded sampler.wasm, sha256 {wasm.hex[:16]}…")
            wasm_want = Constraints(cpus=0.1, mem_mb=16, devices=[sensor], executors=[WASM])
            jobs = [DemoJob("WASM sampler", wasm_want, lambda offer: wasm_task(
                wasm, name="sampler", resources=wasm_want.resources(offer),
                args=[sensor, samples, period]), settings.sensors.get(sensor, ("",))[0])]
            if "micro-1" in cluster.agents and MICRO_SAMPLER.exists():
                mp = await fw.upload(MICRO_SAMPLER.read_bytes(), pb.MICROPYTHON_SOURCE,
                                     name="sampler.py")
                mp_want = Constraints(cpus=0.01, devices=[sensor], executors=[MICROPYTHON],
                                      agent_name="micro-1")
                jobs.append(DemoJob("MicroPython sampler", mp_want, lambda offer: micropython_task(
                    mp, name="sampler", resources=mp_want.resources(offer), args=[samples],
                    env={"PERIOD_MS": period}), "Cel"))
            by_task: dict[str, DemoJob] = {}
            async for ev in fw.events():
                if isinstance(ev, OffersEvent):
                    for offer in ev.offers:
                        job = next((j for j in jobs if not j.task_id and j.want.match(offer)),
                                   None)
                        if job is None:
                            await fw.decline(offer.offer_id, refuse_seconds=5)
                            continue
                        task_id = f"demo-{job.label.split()[0].lower()}-{secrets.token_hex(3)}"
                        await fw.launch(offer, task_id, job.build(offer))
                        job.task_id, job.agent = task_id, offer.agent_name
                        by_task[task_id] = job
                        console.say(f"launched {task_id} ({job.label}) on {offer.agent_name}: "
                                    f"{samples} readings of {sensor}, {period} ms apart")
                elif isinstance(ev, UpdateEvent) and ev.task_id in by_task:
                    job, st = by_task[ev.task_id], ev.status
                    extra = f" ({reason_name(st.reason)})" if st.reason else ""
                    extra += f": {st.message.strip()}" if st.message.strip() else ""
                    console.say(f"{job.label} on {job.agent}: task {state_name(st.state)}{extra}")
                    if ev.terminal:
                        job.final = st
                        if all(j.final is not None for j in jobs):
                            break
                elif isinstance(ev, OutputEvent) and ev.task_id in by_task:
                    job = by_task[ev.task_id]
                    job.readings += 1
                    console.say(f"{job.label} on {job.agent}: reading {job.readings}: "
                                f"{sensor} = {format_reading(ev.data, job.unit)}")
                elif isinstance(ev, ConnectionLost):
                    console.say(f"demo framework lost its connection ({ev.reason}); "
                                f"re-connecting")
            await fw.teardown()
    ok = all(j.final is not None and j.final.state == pb.FINISHED for j in jobs)
    console.say(f"demo {'finished' if ok else 'failed'}: " + ", ".join(
        f"{j.readings} readings from {j.agent or 'no agent'} ({j.label})" for j in jobs))
    return ok


async def run_demo_reporting(cluster: RunningCluster, settings: ClusterSettings,
                             console: Console) -> bool:
    """`run_demo`, its failure reported on the console: True when every sampler FINISHED."""
    try:
        return await run_demo(cluster, settings, console)
    except (DemoFailed, FrameworkError) as e:
        console.say(f"demo failed: {e}")
    except trio.TooSlowError:
        console.say("demo failed: it did not finish in time")
    return False


async def hello_example(console: Console) -> Path | None:
    """examples/wasm/build/hello.wasm for the hint, built when the demo did not build it."""
    hello = WASM_EXAMPLES / "build" / "hello.wasm"
    if not hello.exists():
        try:
            await build_examples(console)
        except DemoFailed as e:
            console.say(f"no example WASM tasks: {e}")
    return hello if hello.exists() else None
