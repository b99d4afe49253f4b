"""Agent benchmarks: idle RSS, WASM accept→RUNNING latency, Docker accept→RUNNING latency.

    python bench/agent.py [--runs N] [--no-docker] [--sqlite-synchronous FULL|NORMAL]

Idle RSS is measured for an agent with Docker disabled and one with Docker enabled (engine
reachable, no Docker task run yet: the SDK is not loaded), each against its own master; then
after the Docker tasks ran (SDK loaded).

Starts a master process, an agent process (WebSocket) and a framework on loopback; the Docker
part starts a private dockerd with a busybox image (as the tests do). Prints JSON lines.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
from pathlib import Path

import trio

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgerm.wire import pb  # noqa: E402
from edgerm_agent.testing import BUSYBOX_IMAGE, AgentProcess  # noqa: E402
from edgerm_master.testing import docker_spec, wasm_spec  # noqa: E402
from edgerm_master.testing_io import MasterProcess, open_framework  # noqa: E402

TS = pb.TaskState


def emit(metric: str, value: float, unit: str, goal: str | None = None) -> None:
    print(json.dumps({"metric": metric, "value": round(value, 2), "unit": unit, "goal": goal}),
          flush=True)


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def children_rss_mb(pid: int) -> float:
    total = 0.0
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            stat = (p / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            total += rss_mb(int(p.name))
    return total


async def latencies(f, launches, runs: int) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for i in range(runs):
        task_id, spec = launches(i)
        await f.wait_for(lambda: next(iter(f.fw.offers.values()), None), 30)
        f.fw.errors.clear()
        await f.launch(task_id, spec)
        try:
            await f.wait_state(task_id, TS.RUNNING, TS.FINISHED, TS.FAILED, TS.ERROR,
                               timeout=60)
        except AssertionError:
            raise RuntimeError(f"{task_id}: no state; framework errors: {f.fw.errors}") from None
        if f.fw.errors:
            raise RuntimeError(f"{task_id}: {f.fw.errors}")
        t = f.state_at.get((task_id, TS.RUNNING))
        if t is None:
            raise RuntimeError(f"{task_id} never RUNNING: {f.last(task_id)}")
        out.append((t - f.accepted_at[task_id]) * 1000)
        await f.wait_state(task_id, TS.FINISHED, TS.FAILED, TS.ERROR, TS.KILLED, timeout=60)
    return out


async def idle_rss(tmp: Path, name: str, executors: tuple[str, ...],
                   docker_host: str | None) -> tuple[float, float]:
    """RSS of an agent (and of its spare WASM child) 3 s after it registered, before any
    task: each in its own master so that no offer of it outlives the measurement."""
    master = MasterProcess(str(tmp / f"master-{name}"), heartbeat_ms=1000).start()
    host, port = master.ws
    agent = AgentProcess(tmp / f"agent-{name}", f"ws://{host}:{port}/agent",
                         executors=executors, docker_host=docker_host).start()
    try:
        async with trio.open_nursery() as nursery:
            f = await open_framework(nursery, master.ws)
            await f.wait_for(lambda: f.fw.offers, 30)
            await trio.sleep(3)  # settle: imports done, spare WASM child started
            assert agent.proc is not None
            rss = rss_mb(agent.proc.pid), children_rss_mb(agent.proc.pid)
            nursery.cancel_scope.cancel()
    finally:
        agent.stop()
        master.stop()
    return rss


async def main(runs: int, with_docker: bool, sqlite_synchronous: str | None) -> None:
    import subprocess

    subprocess.run(["make", "-s", "-C", str(REPO / "examples/wasm")], check=True)
    hello = (REPO / "examples/wasm/build/hello.wasm").read_bytes()
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        docker_host = None
        if with_docker:
            from edgerm_agent.testing import private_docker_engine

            docker_host = stack.enter_context(private_docker_engine())
        executors = ("wasm", "docker") if with_docker else ("wasm",)
        rss, child = await idle_rss(Path(tmp), "wasm", ("wasm",), None)
        emit("agent_idle_rss_docker_disabled", rss, "MB", "<= 40")
        emit("agent_spare_wasm_child_rss", child, "MB")
        if with_docker:
            rss, _ = await idle_rss(Path(tmp), "docker", executors, docker_host)
            emit("agent_idle_rss_docker_enabled", rss, "MB", "<= 40")
        extra = ["--allocation-interval-s", "0.05"]
        if sqlite_synchronous:
            extra += ["--sqlite-synchronous", sqlite_synchronous]
        master = MasterProcess(str(Path(tmp) / "master"), heartbeat_ms=1000,
                               extra=extra).start()
        stack.callback(master.stop)
        host, port = master.ws
        agent = AgentProcess(Path(tmp) / "agent", f"ws://{host}:{port}/agent",
                             executors=executors, docker_host=docker_host).start()
        stack.callback(agent.stop)
        async with trio.open_nursery() as nursery:
            f = await open_framework(nursery, master.ws)
            await f.wait_for(lambda: f.fw.offers, 30)
            await trio.sleep(3)  # the spare WASM child is up
            sha = await f.upload(hello)
            lat = await latencies(f, lambda i: (f"w{i}", wasm_spec(sha, len(hello), "x")), runs)
            emit("wasm_accept_to_running_p50", statistics.median(lat), "ms", "<= 100")
            emit("wasm_accept_to_running_max", max(lat), "ms")
            if with_docker:
                image = BUSYBOX_IMAGE
                await f.wait_for(lambda: any(pb.DOCKER in o.executors
                                             for o in f.fw.offers.values()), 30)
                lat = await latencies(f, lambda i: (f"d{i}", docker_spec(image, "true")),
                                      max(3, runs // 4))
                emit("docker_accept_to_running_p50", statistics.median(lat), "ms")
                emit("docker_accept_to_running_max", max(lat), "ms")
                await trio.sleep(1)
                assert agent.proc is not None
                emit("agent_rss_after_docker_tasks", rss_mb(agent.proc.pid), "MB")
            nursery.cancel_scope.cancel()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--no-docker", action="store_true")
    ap.add_argument("--sqlite-synchronous", choices=["FULL", "NORMAL"],
                    help="the master's SQLite mode (default: the master's own default)")
    args = ap.parse_args()
    trio.run(main, args.runs, not args.no_docker, args.sqlite_synchronous)
