"""The WASM task ABI (proto/wasm_abi.md, v2) gives the same results on every executor: the
Linux agent (wasm3 in a child process, `edgerm_agent.executors.wasm`), the POSIX agent with
wasm3 and the POSIX agent with WAMR (the portable executor the device runs, port/wamr/), the
two C ones built with ASan and UBSan and once without.

The same .wasm files run everywhere: examples/wasm (the thermostat's closed loop included) and
the dedicated tasks of tests/firmware/conformance (every host call and its error codes,
pointers outside memory, traps, memory growth past mem_mb, an initial memory over it, timeouts,
kills while sleeping and while spinning, several tasks at once, an import from a newer ABI).
A case's tasks start together; each task's state, reason, exit code, published bytes (and, for
FINISHED and EXITED_NONZERO, its log tail) must be identical across executors, and the
simulated actuators must have been set to the same values. Trap texts are each runtime's own
and are only checked to be there.

The C executors run through edgerm-wasm-run (firmware/zephyr/port/posix/run.c): the POSIX
port's executor and simulated devices without the agent core and its master link (the end to
end path is tests/firmware/test_posix_agent.py).
"""

from __future__ import annotations

import hashlib
import json
import struct
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

from edgerm.wire import pb
from edgerm_agent.actuators import ActuatorSpec, read_journal
from edgerm_agent.executors.base import TaskContext
from edgerm_agent.executors.wasm import WasmExecutor
from edgerm_agent.modules import ModuleStore, ModuleUnavailable
from edgerm_agent.sensors import SensorSpec

from .conftest import BUILD, CONFORMANCE, EXAMPLES, make, must

TS = pb.TaskState
C_EXECUTORS = ("wasm3-san", "wamr-san", "wasm3", "wamr")
SENSORS = {"temp": 21.5, "humidity": 40.0}
ACTUATORS = {"relay": (0.0, 1.0), "lamp": (0.0, 1.0)}
# Task slots of the POSIX build (CONFIG_EDGERM_WASM_MAX_SLOTS = CONFIG_EDGERM_MAX_TASKS: as
# many as the prototype ran).
C_SLOTS = 6
ONE_PAGE = 0.0625  # mem_mb of one 64 KiB page


@dataclass(frozen=True)
class Task:
    module: str  # "examples/hello" or "conformance/abi_calls"
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    devices: tuple[str, ...] = ()
    mem_mb: float = ONE_PAGE
    timeout_s: int = 0
    kill_after_ms: int = 0

    def path(self) -> Path:
        folder, name = self.module.split("/")
        base = EXAMPLES if folder == "examples" else CONFORMANCE
        return base / "build" / f"{name}.wasm"


@dataclass
class Result:
    state: int
    reason: int
    exit_code: int
    message: str
    published: list[bytes]

    def comparable(self) -> tuple[Any, ...]:
        """What every executor must agree on (a trap's text is the runtime's own)."""
        same_text = self.state == TS.FINISHED or self.reason == pb.EXITED_NONZERO
        return (TS.Name(self.state), pb.Reason.Name(self.reason), self.exit_code,
                self.published, self.message if same_text else None)


def _bounds(letters: str) -> list[Task]:
    return [Task("conformance/bounds", args=(c,), env=(("K", "v"),), devices=("temp", "relay"))
            for c in letters]


CASES: dict[str, list[Task]] = {
    "examples": [
        Task("examples/hello", args=("a", "bc"), env=(("GREETING", "hi"),)),
        Task("examples/sampler", args=("temp", "3", "10"), devices=("temp",)),
        Task("examples/fail"),
        Task("examples/trap"),
    ],
    "abi_calls": [
        Task("conformance/abi_calls", args=("alpha", "b"), env=(("K", "value"),),
             devices=("temp", "relay")),
    ],
    "bounds_host_calls_1": _bounds("abcd"),
    "bounds_host_calls_2": _bounds("efgh"),
    "bounds_wrap_and_too_big": _bounds("ij"),
    "traps_1": [Task("conformance/traps", args=(c,)) for c in "udm"],
    "traps_2": [Task("conformance/traps", args=(c,)) for c in "sc"],
    "memory": [
        Task("examples/grow", mem_mb=0.25),                # grows to its cap: MEMORY_LIMIT
        Task("conformance/big_initial", mem_mb=ONE_PAGE),  # refused before it runs
        Task("conformance/big_initial", mem_mb=0.25),      # fits
    ],
    "timeouts_and_kills": [
        Task("examples/spin", timeout_s=1),
        Task("conformance/sleeper", timeout_s=1),
        Task("examples/spin", kill_after_ms=300),
        Task("conformance/sleeper", kill_after_ms=300),
    ],
    "concurrent_slots": [
        Task("examples/sampler", args=("temp", "4", "20"), devices=("temp",)),
        Task("examples/sampler", args=("humidity", "3", "30"), devices=("humidity",)),
        Task("examples/hello", args=("x",)),
        Task("conformance/abi_calls", args=("alpha", "b"), env=(("K", "value"),),
             devices=("temp", "relay")),
    ],
    "newer_abi": [Task("conformance/newer_abi")],
    # The closed loop of examples/wasm: 21.5 above 20 switches the relay on, below 30 the lamp
    # stays off, at every step (two steps, 1 s apart: four arguments at most, the C agents'
    # CONFIG_EDGERM_WIRE_MAX_REPEATED).
    "thermostat": [
        Task("examples/thermostat", args=("temp", "relay", "20", "2"),
             devices=("temp", "relay")),
        Task("examples/thermostat", args=("temp", "lamp", "30", "2"),
             devices=("temp", "lamp")),
    ],
}


@pytest.fixture(scope="module")
def wasm_files() -> None:
    must(make(cwd=EXAMPLES))
    must(make(cwd=CONFORMANCE))


@pytest.fixture(scope="module")
def runners() -> dict[str, Path]:
    """edgerm-wasm-run for both C executors, plain and under ASan/UBSan. WAMR comes from the
    shared sources (WAMR_DIR): a checkout without them fails here with the way to get them."""
    must(make("wasm-run"))
    return {name: BUILD / f"wasm-run-{name}" for name in C_EXECUTORS}


# ---- the C executors -----------------------------------------------------------------------


def run_c(binary: Path, tasks: list[Task]) -> tuple[list[Result], dict[str, list[float]]]:
    cmd = [str(binary)]
    for name, value in SENSORS.items():
        cmd += ["--sensor", f"{name}={value}"]
    for name, (lo, hi) in ACTUATORS.items():
        cmd += ["--actuator", f"{name}={lo}:{hi}"]
    for t in tasks:
        cmd += ["--task", str(t.path()), "--mem-mb", str(t.mem_mb)]
        cmd += [x for a in t.args for x in ("--arg", a)]
        cmd += [x for k, v in t.env for x in ("--env", f"{k}={v}")]
        cmd += [x for d in t.devices for x in ("--device", d)]
        if t.timeout_s:
            cmd += ["--timeout-s", str(t.timeout_s)]
        if t.kill_after_ms:
            cmd += ["--kill-after-ms", str(t.kill_after_ms)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, (binary.name, proc.stdout[-2000:], proc.stderr[-4000:])
    assert "ERROR: AddressSanitizer" not in proc.stderr and "runtime error" not in proc.stderr, \
        proc.stderr[-4000:]
    published: dict[int, list[bytes]] = {i + 1: [] for i in range(len(tasks))}
    results: dict[int, Result] = {}
    actuators: dict[str, list[float]] = {}
    for line in proc.stdout.splitlines():
        event = json.loads(line)
        if event["event"] == "publish":
            published[event["task"]].append(bytes.fromhex(event["data"]))
        elif event["event"] == "actuator":
            actuators.setdefault(event["name"], []).append(float(event["value"]))
        elif event["event"] == "exit":
            assert event["task"] not in results, line  # one end per task
            results[event["task"]] = Result(event["state"], event["reason"], event["exit_code"],
                                            event["message"], published[event["task"]])
    assert sorted(results) == list(published), proc.stdout[-3000:]
    return [results[i + 1] for i in range(len(tasks))], actuators


# ---- the Linux agent's executor -----------------------------------------------------------


def run_linux(tasks: list[Task], work: Path) -> tuple[list[Result], dict[str, list[float]]]:
    modules = {}
    for t in tasks:
        data = t.path().read_bytes()
        modules[hashlib.sha256(data).digest()] = data

    async def fetch(sha: bytes, size: int) -> bytes:
        if sha not in modules:
            raise ModuleUnavailable("not a module of this case")
        return modules[sha]

    journals = work / "actuators"
    actuators = {name: ActuatorSpec(name, output="level", min=lo, max=hi,
                                    journal=str(journals / f"{name}.log"))
                 for name, (lo, hi) in ACTUATORS.items()}
    executor = WasmExecutor(
        ModuleStore(work / "modules", fetch),
        sensors={n: SensorSpec(n, "constant", value=v) for n, v in SENSORS.items()},
        actuators=actuators, fetch_retry_s=0.01)
    results: list[Result | None] = [None] * len(tasks)

    async def one(i: int, t: Task) -> None:
        data = t.path().read_bytes()
        published: list[bytes] = []
        reports: list[tuple[int, dict[str, Any]]] = []

        async def publish(b: bytes) -> None:
            published.append(b)

        async def flush() -> None:
            pass

        spec = pb.TaskSpec(
            resources=pb.Resources(mem_mb=t.mem_mb, devices=[
                pb.Device(name=d, shares=1) for d in t.devices]),
            wasm=pb.WasmTask(sha256=hashlib.sha256(data).digest(), size=len(data),
                             args=list(t.args), timeout_s=t.timeout_s,
                             env=[pb.EnvVar(name=k, value=v) for k, v in t.env]))
        ctx = TaskContext(task=i + 1, spec=spec, report=lambda s, **kw: reports.append((s, kw)),
                          publish=publish, flush=flush)
        async with trio.open_nursery() as n:
            if t.kill_after_ms:
                async def killer() -> None:
                    await trio.sleep(t.kill_after_ms / 1000)
                    ctx.killed.set()
                n.start_soon(killer)
            await executor.run(ctx)
            n.cancel_scope.cancel()
        state, kw = reports[-1]
        results[i] = Result(state, kw.get("reason", 0), kw.get("exit_code", 0),
                            kw.get("message", ""), published)

    async def main() -> None:
        async with trio.open_nursery() as n:
            await executor.start(n)
            with trio.fail_after(60):
                async with trio.open_nursery() as tasks_nursery:
                    for i, t in enumerate(tasks):
                        tasks_nursery.start_soon(one, i, t)
            executor.close()
            n.cancel_scope.cancel()

    trio.run(main)
    sets = {name: [v for _, _, v in read_journal(spec.journal)]
            for name, spec in actuators.items()}
    return [r for r in results if r is not None], {k: v for k, v in sets.items() if v}


# ---- the suite -----------------------------------------------------------------------------


@pytest.mark.usefixtures("wasm_files")
@pytest.mark.parametrize("case", sorted(CASES))
def test_same_results_on_every_executor(case: str, runners: dict[str, Path],
                                        tmp_path: Path) -> None:
    tasks = CASES[case]

    def timed_c(binary: Path) -> tuple[list[Result], dict[str, list[float]], float]:
        began = time.monotonic()
        got, sets = run_c(binary, tasks)
        return got, sets, time.monotonic() - began

    # The C executors run side by side while the Linux agent's runs here (separate processes
    # and devices: nothing is shared between them).
    with ThreadPoolExecutor(max_workers=len(runners)) as pool:
        c_runs = {name: pool.submit(timed_c, binary) for name, binary in runners.items()}
        began = time.monotonic()
        linux, linux_sets = run_linux(tasks, tmp_path)
        linux_s = time.monotonic() - began
        results = {name: run.result() for name, run in c_runs.items()}
    assert len(linux) == len(tasks)
    want = [r.comparable() for r in linux]
    for name, (got, sets, took) in results.items():
        assert [r.comparable() for r in got] == want, name
        assert sets == linux_sets, name
        # A kill does not wait for a 60 s sleep to end (generous bound: loaded CI machines).
        if case == "timeouts_and_kills":
            assert took < 30 and linux_s < 30, (name, took, linux_s)
        for r, t in zip(got, tasks, strict=True):
            if r.reason == pb.TRAPPED:
                assert r.message, (name, t)
            if r.reason == pb.LAUNCH_FAILED:
                assert "edgerm.teleport" in r.message, (name, r.message)
    check_case(case, linux, linux_sets)


def check_case(case: str, results: list[Result], sets: dict[str, list[float]]) -> None:
    """What the spec says, so that all executors agreeing on something wrong still fails."""
    states = [(TS.Name(r.state), pb.Reason.Name(r.reason)) for r in results]
    if case == "examples":
        assert states == [("FINISHED", "REASON_UNSPECIFIED"), ("FINISHED", "REASON_UNSPECIFIED"),
                          ("FAILED", "EXITED_NONZERO"), ("FAILED", "TRAPPED")]
        assert results[0].published == [b"a", b"bc"]
        assert results[0].message == "hello from wasm\nhi"
        assert results[1].published == [struct.pack("<d", 21.5)] * 3
        assert results[2].exit_code == 3
    elif case == "abi_calls":
        assert states == [("FINISHED", "REASON_UNSPECIFIED")]
        assert results[0].message == "abi calls\nabi done"
        codes = [int.from_bytes(p, "little", signed=True) for p in results[0].published
                 if len(p) == 4]
        # arg_count 2; arg 0 "alpha" 5, truncated 5, arg 1 "b" 1, no arg 2 -1; env K 5,
        # truncated 5, missing -1; temp 0; humidity -2; nosuch -1; relay as a sensor -1;
        # relay 1.0 ok, 7.0 -6, NaN -6, lamp -2, nosuch -2, temp -1, relay 0.0 ok;
        # 1025 bytes -4; the sleep lasted 30 ms: 1.
        assert codes == [2, 5, 5, 1, -1, 5, 5, -1, 0, -2, -1, -1,
                         0, -6, -6, -2, -2, -1, 0, -4, 1]
        assert sets == {"relay": [1.0, 0.0]}
    elif case.startswith(("bounds", "traps")):
        assert all(s == ("FAILED", "TRAPPED") for s in states)
    elif case == "memory":
        assert states == [("FAILED", "MEMORY_LIMIT"), ("ERROR", "MEMORY_LIMIT"),
                          ("FINISHED", "REASON_UNSPECIFIED")]
        assert results[0].exit_code == 3
    elif case == "timeouts_and_kills":
        assert states == [("FAILED", "TIMEOUT"), ("FAILED", "TIMEOUT"),
                          ("KILLED", "KILL_REQUESTED"), ("KILLED", "KILL_REQUESTED")]
    elif case == "concurrent_slots":
        assert all(s == ("FINISHED", "REASON_UNSPECIFIED") for s in states)
        assert len(results[0].published) == 4 and len(results[1].published) == 3
        assert sets == {"relay": [1.0, 0.0]}
    elif case == "newer_abi":
        assert states == [("ERROR", "LAUNCH_FAILED")]
    elif case == "thermostat":
        assert all(s == ("FINISHED", "REASON_UNSPECIFIED") for s in states)
        assert results[0].published == [struct.pack("<dd", 21.5, 1.0)] * 2
        assert results[1].published == [struct.pack("<dd", 21.5, 0.0)] * 2
        assert sets == {"relay": [1.0] * 2, "lamp": [0.0] * 2}
    else:
        raise AssertionError(f"no expectation for {case}")


@pytest.mark.usefixtures("wasm_files")
@pytest.mark.parametrize("name", ["wasm3-san", "wamr-san"])
def test_a_task_beyond_the_slots_is_refused_and_the_others_run(
        name: str, runners: dict[str, Path]) -> None:
    """The C agents run CONFIG_EDGERM_WASM_MAX_SLOTS tasks at once (the Linux agent has no such
    limit: the master never offers more than its resources): one more is ERROR
    RESOURCES_UNAVAILABLE, and the ones in the slots are not disturbed by it."""
    tasks = [Task("examples/sampler", args=("temp", "3", "20"), devices=("temp",))] * C_SLOTS
    tasks = tasks + [Task("examples/hello")]
    got, _ = run_c(runners[name], tasks)
    assert [(r.state, r.reason) for r in got] == \
        [(TS.FINISHED, 0)] * C_SLOTS + [(TS.ERROR, pb.RESOURCES_UNAVAILABLE)]
    assert all(len(r.published) == 3 for r in got[:C_SLOTS])
