"""The framework side: how fast the SDK core handles events, and how long a task launch takes
end to end (framework -> master -> Linux agent -> WASM -> back) on loopback.

    python bench/framework_sdk.py [--launches 20]

Prints JSON lines {"metric", "value", "unit", "goal"}. The end-to-end part starts a real master
(`python -m edgerm_master`) and a real Linux agent with the WASM executor, both on loopback, and
launches `examples/wasm/build/hello.wasm` (built with `make -C examples/wasm`) one task at a
time, measuring from the `accept` call to the RUNNING and to the FINISHED update.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgerm.framework import (  # noqa: E402
    WASM,
    Constraints,
    Framework,
    FrameworkProtocol,
    OffersEvent,
    UpdateEvent,
    wasm_task,
)
from edgerm.wire import decode, encode, pb  # noqa: E402


def emit(metric: str, value: float, unit: str, goal: str = "") -> None:
    print(json.dumps({"metric": metric, "value": round(value, 3), "unit": unit, "goal": goal}),
          flush=True)


def bench_core(n: int = 20000) -> None:
    core = FrameworkProtocol("bench", "tok")
    first = decode(pb.FrameworkCall, core.connection_made(0.0))
    core.receive_frame(encode(pb.FrameworkEvent(call_id=first.call_id, subscribed=pb.Subscribed(
        framework_id="fw-1", heartbeat_interval_s=5))), 0.0)
    frames = [encode(pb.FrameworkEvent(update=pb.TaskStatus(
        task_id=f"task-{i % 500}", state=pb.RUNNING, agent_id=7, uuid=i.to_bytes(16, "big"),
        timestamp=1.7e9))) for i in range(n)]
    t0 = time.perf_counter()
    for frame in frames:
        core.receive_frame(frame, 1.0)
        core.frames_to_send()
    dt = time.perf_counter() - t0
    emit("core_updates_with_ack_per_s", n / dt, "1/s", ">= 10000")

    offers = pb.Offers()
    for i in range(100):
        o = offers.offers.add(offer_id=f"{i}-1", agent_id=i, agent_name=f"agent-{i}",
                              executors=[pb.WASM, pb.DOCKER], expires_in_s=30)
        o.resources.cpus, o.resources.mem_mb = 4, 4096
        o.resources.devices.add(name="temp", kind=pb.SENSOR, shares=4)
        o.attributes.add(name="os", text="linux")
    frame = encode(pb.FrameworkEvent(offers=offers))
    want = Constraints(cpus=0.1, mem_mb=16, devices=["temp"], executors=[WASM],
                       attributes={"os": "linux"})
    rounds = 200
    t0 = time.perf_counter()
    for _ in range(rounds):
        [event] = core.receive_frame(frame, 1.0)
        assert isinstance(event, OffersEvent)
        matched = [o for o in event.offers if want.match(o)]
    dt = (time.perf_counter() - t0) / rounds
    assert len(matched) == 100
    emit("core_offers_100_agents_decode_and_match", dt * 1000, "ms", "<= 20")


async def bench_launches(launches: int) -> None:
    from edgerm_cli.cluster_processes import ClusterSettings, linux_agent_toml
    from edgerm_cli.listing import fetch_state
    from edgerm_master.testing_io import MasterProcess

    module_bytes = (ROOT / "examples" / "wasm" / "build" / "hello.wasm").read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        master = MasterProcess(str(base / "master"), agent_token="a", framework_token="f",
                               operator_token="o", heartbeat_ms=1000).start()
        url = "ws://{}:{}".format(*master.ws)
        settings = ClusterSettings()
        settings.sensors = {}
        config = base / "agent.toml"
        config.write_text(linux_agent_toml("bench", url, "a", base / "work", ["wasm"], settings))
        agent = subprocess.Popen([sys.executable, "-m", "edgerm_agent", str(config)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 env=dict(os.environ))
        try:
            with trio.fail_after(30):
                while not any(a.name == "bench" for a in (await fetch_state(url, "o")).agents):
                    await trio.sleep(0.1)
            to_running: list[float] = []
            to_finished: list[float] = []
            async with Framework.connect(url, name="bench", token="f") as fw:
                module = await fw.upload(module_bytes)
                want = Constraints(cpus=0.1, mem_mb=16, executors=[WASM])
                for i in range(launches):
                    task_id = f"hello-{i}"
                    started = None
                    async for ev in fw.events():
                        if isinstance(ev, OffersEvent) and started is None:
                            offer = next((o for o in ev.offers if want.match(o)), None)
                            if offer is None:
                                continue
                            started = time.perf_counter()
                            await fw.launch(offer, task_id, wasm_task(
                                module, resources=want.resources(offer), args=["x"]))
                        elif isinstance(ev, UpdateEvent) and ev.task_id == task_id:
                            assert started is not None
                            if ev.state == pb.RUNNING:
                                to_running.append(time.perf_counter() - started)
                            if ev.terminal:
                                assert ev.state == pb.FINISHED, ev.status
                                to_finished.append(time.perf_counter() - started)
                                break
                await fw.teardown()
        finally:
            agent.send_signal(signal.SIGTERM)
            agent.wait(15)
            master.stop()
    emit("launch_to_running_median", statistics.median(to_running) * 1000, "ms", "<= 500")
    emit("launch_to_finished_median", statistics.median(to_finished) * 1000, "ms", "<= 1000")
    emit("launch_to_finished_max", max(to_finished) * 1000, "ms", "")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--launches", type=int, default=20)
    p.add_argument("--no-e2e", action="store_true", help="only the core numbers")
    args = p.parse_args()
    bench_core()
    if not args.no_e2e:
        trio.run(bench_launches, args.launches)


if __name__ == "__main__":
    main()
