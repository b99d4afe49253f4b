"""How long a WASM child lives: as long as its task, or as long as the agent process for the
warm spare — not as long as the Trio worker thread that happened to start it — and every child
is reaped.

Trio starts a child from one of its worker threads and retires a worker after
`trio._core._thread_cache.IDLE_TIMEOUT` (10 s) without work; a child tied to that thread (as
PR_SET_PDEATHSIG does) was killed about 10 s after its launch. The executor runs in this test
process, which plays the agent. One test waits out the real 10 s; the others shorten the idle
timeout so that many idle periods fit in a few seconds.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import trio
from trio._core import _thread_cache

from edgerm.wire import pb
from edgerm_agent.executors.base import TaskContext
from edgerm_agent.executors.wasm import WasmExecutor
from edgerm_agent.modules import ModuleStore
from edgerm_agent.sensors import SensorSpec

TS = pb.TaskState
REPO = Path(__file__).resolve().parents[2]


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def children(pid: int | None = None) -> dict[int, tuple[str, str]]:
    """The child processes of `pid` (this process): pid -> (state letter, command line)."""
    me = os.getpid() if pid is None else pid
    found = {}
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            stat = (p / "stat").read_text()
            cmdline = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # exited meanwhile
        state, ppid = stat[stat.rindex(")") + 2:].split()[:2]
        if int(ppid) == me:
            found[int(p.name)] = (state, cmdline)
    return found


def gone(pid: int) -> bool:
    """`pid` has exited (it may linger as a zombie of whoever adopted it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"


def trio_workers() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("Trio thread")]


async def until(predicate: Any, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"after {timeout} s: {what}")
        await trio.sleep(0.05)


class Agent:
    """A `WasmExecutor` in this process with a module source and a `temp` sensor; records
    each task's reports."""

    def __init__(self, tmp_path: Path, modules: dict[str, bytes]) -> None:
        by_sha = {sha(m): m for m in modules.values()}

        async def fetch(digest: bytes, size: int) -> bytes:
            return by_sha[digest]
        self.modules = modules
        self.ex = WasmExecutor(ModuleStore(tmp_path / "modules", fetch), sensors={
            "temp": SensorSpec("temp", "constant", value=21.5)})
        self.reports: dict[int, list[tuple[int, dict[str, Any]]]] = {}

    async def run(self, task: int, module: str, *args: str,
                  kill_after: float | None = None) -> int:
        """Run one task to its end; its last state."""
        data = self.modules[module]
        self.reports[task] = reports = []

        async def publish(payload: bytes) -> None:
            pass

        async def flush() -> None:
            pass

        ctx = TaskContext(task=task, spec=pb.TaskSpec(
            resources=pb.Resources(mem_mb=1, devices=[pb.Device(name="temp")]),
            wasm=pb.WasmTask(sha256=sha(data), size=len(data), args=list(args))),
            report=lambda state, **kw: reports.append((state, kw)),
            publish=publish, flush=flush)
        async with trio.open_nursery() as n:
            if kill_after is not None:
                async def killer() -> None:
                    await trio.sleep(kill_after)
                    ctx.killed.set()
                n.start_soon(killer)
            with trio.fail_after(90):
                await self.ex.run(ctx)
            n.cancel_scope.cancel()
        return reports[-1][0]

    def ends(self) -> dict[int, str]:
        """Each task's last state, and its message unless FINISHED."""
        out = {}
        for task, reports in self.reports.items():
            state, kw = reports[-1]
            out[task] = TS.Name(state) + ("" if state == TS.FINISHED else
                                          f" {kw.get('message', '')}")
        return out


def wasm_children(before: dict[int, tuple[str, str]]) -> dict[int, tuple[str, str]]:
    return {pid: v for pid, v in children().items() if pid not in before}


def one_live_spare(before: dict[int, tuple[str, str]]) -> bool:
    """Exactly one child more than `before`: a WASM child that waits (the warm spare)."""
    new = wasm_children(before)
    return len(new) == 1 and all(s in "SR" and "wasm_child" in cmd for s, cmd in new.values())


async def test_twenty_30s_tasks_after_the_real_10s_idle_all_finish(
        tmp_path: Path, wasm_modules: dict[str, bytes]) -> None:
    before = children()
    agent = Agent(tmp_path, wasm_modules)
    async with trio.open_nursery() as n:
        await agent.ex.start(n)
        # Longer than Trio's real idle timeout: the worker thread that started the spare exits.
        await trio.sleep(_thread_cache.IDLE_TIMEOUT + 1.0)
        assert trio_workers() == [], "premise: Trio's idle worker threads have retired"
        async with trio.open_nursery() as tasks:
            for i in range(20):  # 31 readings 1 s apart: 30 s each, all at once
                tasks.start_soon(agent.run, i, "sampler", "temp", "31", "1000")
        assert agent.ends() == {i: "FINISHED" for i in range(20)}
        # Every task's child was reaped; what is left is the one spare, waiting.
        await until(lambda: one_live_spare(before), f"children {wasm_children(before)}")
        n.cancel_scope.cancel()
    assert wasm_children(before) == {}, "a child outlived the executor or was not reaped"


@pytest.fixture
def short_idle(monkeypatch: pytest.MonkeyPatch) -> float:
    """Trio retires an idle worker thread after 0.3 s instead of 10 s."""
    monkeypatch.setattr(_thread_cache, "IDLE_TIMEOUT", 0.3)
    return 0.3


async def idle(short_idle: float) -> None:
    """Wait until every Trio worker thread has retired, then a little more."""
    await until(lambda: trio_workers() == [], f"Trio worker threads {trio_workers()}")
    await trio.sleep(short_idle)


async def test_spare_and_sequential_tasks_outlive_idle_worker_threads(
        tmp_path: Path, wasm_modules: dict[str, bytes], short_idle: float) -> None:
    before = children()
    agent = Agent(tmp_path, wasm_modules)
    async with trio.open_nursery() as n:
        await agent.ex.start(n)
        assert one_live_spare(before), wasm_children(before)
        spare = set(wasm_children(before))
        await idle(short_idle)
        assert one_live_spare(before) and set(wasm_children(before)) == spare, \
            f"the warm spare {spare} died while idle: children {wasm_children(before)}"

        for i in range(4):  # 3 s each, after an idle period each
            await agent.run(i, "sampler", "temp", "4", "1000")
            assert agent.ends()[i] == "FINISHED", agent.ends()
            await idle(short_idle)
        # Children of tasks that fail, trap or are killed are reaped as well.
        assert await agent.run(10, "fail") == TS.FAILED
        assert await agent.run(11, "trap") == TS.FAILED
        assert await agent.run(12, "spin", kill_after=0.3) == TS.KILLED
        await idle(short_idle)
        await until(lambda: one_live_spare(before), f"children {wasm_children(before)}")
        n.cancel_scope.cancel()
    assert wasm_children(before) == {}, "a child outlived the executor or was not reaped"


async def test_concurrent_tasks_outlive_idle_worker_threads(
        tmp_path: Path, wasm_modules: dict[str, bytes], short_idle: float) -> None:
    before = children()
    agent = Agent(tmp_path, wasm_modules)
    async with trio.open_nursery() as n:
        await agent.ex.start(n)
        for round_ in range(2):
            await idle(short_idle)
            async with trio.open_nursery() as tasks:
                for i in range(8):  # 4 s each, all at once
                    tasks.start_soon(agent.run, 10 * round_ + i, "sampler", "temp", "5", "1000")
        assert set(agent.ends().values()) == {"FINISHED"}, agent.ends()
        await until(lambda: one_live_spare(before), f"children {wasm_children(before)}")
        n.cancel_scope.cancel()
    assert wasm_children(before) == {}


async def test_a_spare_that_dies_while_waiting_is_reaped_and_replaced(
        tmp_path: Path, wasm_modules: dict[str, bytes]) -> None:
    before = children()
    agent = Agent(tmp_path, wasm_modules)
    async with trio.open_nursery() as n:
        await agent.ex.start(n)
        (spare,) = wasm_children(before)
        os.kill(spare, signal.SIGKILL)  # as the OOM killer might
        await until(lambda: one_live_spare(before) and spare not in wasm_children(before),
                    f"children {wasm_children(before)}, the dead spare was {spare}")
        assert await agent.run(1, "sampler", "temp", "2") == TS.FINISHED
        n.cancel_scope.cancel()
    assert wasm_children(before) == {}


def test_children_die_with_the_agent_process(tmp_path: Path,
                                             wasm_modules: dict[str, bytes]) -> None:
    """SIGKILL the process that runs the executor: its spare and a task spinning in wasm3 (which
    holds the GIL, so nothing in Python runs) die with it."""
    (tmp_path / "spin.wasm").write_bytes(wasm_modules["spin"])
    script = tmp_path / "agent.py"
    script.write_text(f"""
import sys, trio
sys.path.insert(0, {str(REPO)!r})
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_wasm_lifetime import Agent
from pathlib import Path

async def main():
    agent = Agent(Path({str(tmp_path)!r}), {{"spin": Path({str(tmp_path / "spin.wasm")!r})
                                                   .read_bytes()}})
    async with trio.open_nursery() as n:
        await agent.ex.start(n)
        n.start_soon(agent.run, 1, "spin")
        while not agent.reports.get(1):
            await trio.sleep(0.01)
        print("running", flush=True)
        await trio.sleep_forever()
trio.run(main)
""")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))
    kids: dict[int, tuple[str, str]] = {}
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"running\n"
        deadline = time.monotonic() + 10
        while len(kids := children(proc.pid)) < 2:  # the task's child and the next spare
            assert time.monotonic() < deadline, kids
            time.sleep(0.05)
        assert all("wasm_child" in cmd for _, cmd in kids.values()), kids
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 10
        while not all(gone(pid) for pid in kids):
            assert time.monotonic() < deadline, f"children {kids} outlived the agent"
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
        for pid in kids:  # on failure: no orphan left spinning (nobody else waits for it)
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_child_whose_agent_is_already_gone_exits_at_once() -> None:
    """The agent may die between starting a child and the child arming its lifeline."""
    r, w = os.pipe()
    os.close(w)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    # stdin stays open: a child that did not notice would wait there for a task.
    child = subprocess.Popen([sys.executable, "-m", "edgerm_agent.executors.wasm_child", str(r)],
                             pass_fds=(r,), env=env, stdin=subprocess.PIPE)
    os.close(r)
    try:
        assert child.wait(timeout=20) == 1
    finally:
        child.kill()
        child.wait()
        assert child.stdin is not None
        child.stdin.close()
