"""The example frameworks (examples/frameworks/) against the real master and two real Linux
agents: sensor sampling on every agent with the sensor, and a service that replaces a lost
replica."""

from __future__ import annotations

import importlib.util
import io
import subprocess
import sys
from types import ModuleType

import trio

from edgerm.wire import pb

from .conftest import ROOT

EXAMPLES = ROOT / "examples" / "frameworks"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module      # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_examples_are_runnable_scripts() -> None:
    for name in ("sensor_sampling", "service"):
        done = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py"), "--help"],
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        assert "--master" in done.stdout


async def test_sensor_sampling_runs_on_every_agent_with_the_sensor(real_cluster,
                                                                   wasm_modules) -> None:
    sampling = load("sensor_sampling")
    out = io.StringIO()
    args = sampling.build_parser().parse_args([
        "--master", real_cluster.url, "--token", "e2e-framework", "--sensor", "humidity",
        "--samples", "3", "--period-ms", "50", "--settle-s", "1.5"])
    with trio.fail_after(40):
        code = await sampling.main_async(args, out)
    text = out.getvalue()
    assert code == 0, text
    lines = text.splitlines()
    both = {real_cluster.agent_name, real_cluster.second_agent}
    launched = {line.split(" on ")[1] for line in lines if line.startswith("launched ")}
    assert launched == both
    readings = [line for line in lines if "humidity = " in line]
    assert len(readings) == 6
    for line in readings:
        assert 37.0 <= float(line.split("=")[1].split()[0]) <= 43.0    # sine 40 ± 2
    summary = lines[lines.index(next(x for x in lines if x.strip().startswith("agent"))):]
    assert len(summary) == 3 and all(row.endswith("FINISHED") for row in summary[1:])


async def test_sensor_sampling_skips_agents_without_the_sensor(real_cluster,
                                                               wasm_modules) -> None:
    sampling = load("sensor_sampling")
    out = io.StringIO()
    async with real_cluster.connect(name="sampling-temp") as fw:
        with trio.fail_after(40):
            state = await sampling.sample(fw, wasm_modules["sampler"], "temp", 2, 20, 1.5, out)
        await fw.teardown()
    assert set(state.agent_names.values()) == {real_cluster.agent_name}
    assert [len(v) for v in state.readings.values()] == [2]


async def test_service_keeps_its_replicas_and_replaces_a_lost_one(real_cluster, wasm_modules,
                                                                  nursery) -> None:
    service_mod = load("service")
    service = service_mod.Service(replicas=2, per_agent=1)
    out = io.StringIO()

    async def until(predicate, timeout: float = 20) -> None:  # type: ignore[no-untyped-def]
        with trio.fail_after(timeout):
            while not predicate():
                await trio.sleep(0.05)

    async with real_cluster.connect(name="service-e2e") as fw:
        module = await fw.upload(wasm_modules["sampler"])
        async with trio.open_nursery() as inner:
            inner.start_soon(service_mod.keep_running, fw, service, module, "humidity", 100, out,
                             0.2)
            await until(lambda: service.running() == 2)
            # per_agent=1: one replica on each agent.
            assert {r.agent_name for r in service.live.values()} == \
                {real_cluster.agent_name, real_cluster.second_agent}
            await until(lambda: all(r.last_reading is not None for r in service.live.values()))
            # A replica dies without the service asking for it.
            victim = next(iter(service.live))
            await fw.kill(victim)
            await until(lambda: victim not in service.live and service.running() == 2)
            assert service.launched == 3
            assert [r.task_id for r in service.ended] == [victim]
            assert service.ended[0].state == pb.KILLED
            await until(lambda: "2/2 running: replica-" in out.getvalue())   # the report
            inner.cancel_scope.cancel()
        await fw.teardown()
    text = out.getvalue()
    assert f"{victim} on" in text and "ended KILLED" in text and "1 to replace" in text
