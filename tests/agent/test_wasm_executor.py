"""The WASM executor and its child process with real wasm3, without a master: the host ABI's
pointer checks, unknown imports, memory caps, module hashes and the module cache."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Any

import pytest
import trio

from edgerm.wire import pb
from edgerm_agent.executors.base import TaskContext
from edgerm_agent.executors.wasm import WasmExecutor
from edgerm_agent.executors.wasm_module import (
    BadModule,
    cap_memory_untrusted,
    parse_module_untrusted,
)
from edgerm_agent.modules import ModuleStore, ModuleUnavailable
from edgerm_agent.sensors import SensorSpec

TS = pb.TaskState

BAD_POINTER = """(module
  (import "edgerm" "log" (func $log (param i32 i32)))
  (memory (export "memory") 1 1)
  (func (export "run") (result i32) (call $log (i32.const 65530) (i32.const 100)) (i32.const 0)))
"""
UNKNOWN_IMPORT = """(module
  (import "edgerm" "teleport" (func (param i32)))
  (memory (export "memory") 1)
  (func (export "run")))
"""
BIG_MEMORY = """(module (memory (export "memory") 64) (func (export "run")))"""
ARG_TRUNCATE = """(module
  (import "edgerm" "arg_get" (func $arg_get (param i32 i32 i32) (result i32)))
  (import "edgerm" "publish" (func $publish (param i32 i32) (result i32)))
  (memory (export "memory") 1 1)
  (func (export "run") (result i32)
    (local $n i32)
    (local.set $n (call $arg_get (i32.const 0) (i32.const 100) (i32.const 3)))
    (drop (call $publish (i32.const 100) (i32.const 3)))
    (local.get $n)))
"""


def wat(tmp_path: Path, text: str) -> bytes:
    src = tmp_path / "m.wat"
    src.write_text(text)
    subprocess.run(["wat2wasm", str(src), "-o", str(tmp_path / "m.wasm")], check=True)
    return (tmp_path / "m.wasm").read_bytes()


class Harness:
    """The executor with a module source that fails its first `failures` fetches (as a link
    that is down, or a master that is restarting, would)."""

    def __init__(self, tmp_path: Path, modules: dict[bytes, bytes], *, failures: int = 0,
                 fetch_attempts: int = 3) -> None:
        async def fetch(sha: bytes, size: int) -> bytes:
            self.fetches += 1
            if self.fetches <= failures or sha not in modules:
                raise ModuleUnavailable(f"link down (fetch {self.fetches})")
            return modules[sha]
        self.fetches = 0
        self.store = ModuleStore(tmp_path / "modules", fetch)
        self.reports: list[tuple[int, dict[str, Any]]] = []
        self.published: list[bytes] = []
        self.ex = WasmExecutor(self.store, sensors={
            "temp": SensorSpec("temp", "constant", value=1.5)},
            fetch_attempts=fetch_attempts, fetch_retry_s=0.01)

    async def run(self, sha: bytes, size: int, *args: str, mem_mb: float = 1,
                  kill_after: float | None = None) -> list[tuple[int, dict[str, Any]]]:
        self.reports = []

        def report(state: int, **kw: Any) -> None:
            self.reports.append((state, kw))

        async def publish(data: bytes) -> None:
            self.published.append(data)

        async def flush() -> None:
            pass

        ctx = TaskContext(task=1, spec=pb.TaskSpec(
            resources=pb.Resources(mem_mb=mem_mb),
            wasm=pb.WasmTask(sha256=sha, size=size, args=list(args))),
            report=report, publish=publish, flush=flush)
        async with trio.open_nursery() as n:
            await self.ex.start(n)
            if kill_after is not None:
                async def killer() -> None:
                    await trio.sleep(kill_after)
                    ctx.killed.set()
                n.start_soon(killer)
            with trio.fail_after(20):
                await self.ex.run(ctx)
            self.ex.close()
            n.cancel_scope.cancel()
        return self.reports


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


async def test_bad_pointer_traps_the_task_only(tmp_path: Path) -> None:
    mod = wat(tmp_path, BAD_POINTER)
    h = Harness(tmp_path, {sha(mod): mod})
    reports = await h.run(sha(mod), len(mod))
    state, kw = reports[-1]
    assert state == TS.FAILED and kw["reason"] == pb.TRAPPED
    assert "pointer out of bounds" in kw["message"]


async def test_unknown_import_is_a_launch_error_naming_it(tmp_path: Path) -> None:
    mod = wat(tmp_path, UNKNOWN_IMPORT)
    h = Harness(tmp_path, {sha(mod): mod})
    reports = await h.run(sha(mod), len(mod))
    assert reports == [(TS.ERROR, {"reason": pb.LAUNCH_FAILED, "message": reports[0][1][
        "message"]})]
    assert "edgerm.teleport" in reports[0][1]["message"]


async def test_initial_memory_over_mem_mb_is_refused(tmp_path: Path) -> None:
    mod = wat(tmp_path, BIG_MEMORY)  # 64 pages = 4 MiB
    h = Harness(tmp_path, {sha(mod): mod})
    state, kw = (await h.run(sha(mod), len(mod), mem_mb=1))[-1]
    assert state == TS.ERROR and kw["reason"] == pb.MEMORY_LIMIT


async def test_arg_get_truncates_and_returns_full_length(tmp_path: Path) -> None:
    mod = wat(tmp_path, ARG_TRUNCATE)
    h = Harness(tmp_path, {sha(mod): mod})
    state, kw = (await h.run(sha(mod), len(mod), "abcdef"))[-1]
    # exit code = full length 6 (a nonzero exit), and only 3 bytes were copied
    assert (state, kw["exit_code"]) == (TS.FAILED, 6)
    assert h.published == [b"abc"]


async def test_hash_mismatch_is_error_and_module_is_fetched_once(
        tmp_path: Path, wasm_modules: dict[str, bytes]) -> None:
    good = wasm_modules["fail"]
    h = Harness(tmp_path, {sha(good): good, b"\x07" * 32: good})
    state, kw = (await h.run(b"\x07" * 32, len(good)))[-1]
    assert state == TS.ERROR and kw["reason"] == pb.MODULE_HASH_MISMATCH
    for _ in range(2):
        state, kw = (await h.run(sha(good), len(good)))[-1]
        assert (state, kw["exit_code"]) == (TS.FAILED, 3)
    assert h.fetches == 2  # the bad one, then the good one once: cached by sha256


async def test_kill_during_run_kills_the_child(tmp_path: Path,
                                               wasm_modules: dict[str, bytes]) -> None:
    spin = wasm_modules["spin"]
    h = Harness(tmp_path, {sha(spin): spin})
    reports = await h.run(sha(spin), len(spin), kill_after=0.5)
    assert [s for s, _ in reports] == [TS.RUNNING, TS.KILLED]


def test_memory_cap_rewrites_the_declared_maximum(wasm_modules: dict[str, bytes]) -> None:
    grow = wasm_modules["grow"]
    info = parse_module_untrusted(grow)
    assert (info.mem_min, info.mem_max) == (1, 1024)
    capped = parse_module_untrusted(cap_memory_untrusted(grow, info, 32))
    assert (capped.mem_min, capped.mem_max) == (1, 32)
    assert capped.exports == info.exports and capped.imports == info.imports


@pytest.mark.parametrize("data", [b"", b"\0asm\x02\0\0\0", b"\0asm\x01\0\0\0\x05\x10\x01",
                                  b"\0asm\x01\0\0\0\x02\x05\x01\x80\x80\x80\x80\x80"])
def test_module_parser_refuses_garbage(data: bytes) -> None:
    with pytest.raises(BadModule):
        parse_module_untrusted(data)


async def test_launch_retries_the_module_fetch(tmp_path: Path) -> None:
    mod = wat(tmp_path, BIG_MEMORY.replace("64", "1"))
    h = Harness(tmp_path, {sha(mod): mod}, failures=2)
    reports = await h.run(sha(mod), len(mod))
    assert h.fetches == 3
    assert [s for s, _ in reports] == [TS.RUNNING, TS.FINISHED]


async def test_module_unavailable_after_the_retries_is_a_clear_error(tmp_path: Path) -> None:
    missing = sha(b"nobody uploaded this")
    h = Harness(tmp_path, {}, fetch_attempts=4)
    reports = await h.run(missing, 100)
    assert h.fetches == 4
    assert len(reports) == 1
    state, kw = reports[0]
    assert (state, kw["reason"]) == (TS.ERROR, pb.MODULE_UNAVAILABLE)
    assert kw["message"] == (f"module {missing.hex()} unavailable after 4 attempts: "
                             "link down (fetch 4)")


async def test_failed_prefetch_is_logged_and_counted(tmp_path: Path) -> None:
    from edgerm_agent.config import parse_config
    from edgerm_agent.shell import Agent

    agent = Agent(parse_config({"master": {"url": "ws://127.0.0.1:1/agent"},
                                "work_dir": str(tmp_path)}))

    async def down(sha256: bytes, size: int) -> bytes:
        raise ModuleUnavailable("link down")
    agent.modules = ModuleStore(tmp_path / "modules", down)
    await agent._prefetch(sha(b"x"), 10)
    await agent._prefetch(sha(b"y"), 10)
    assert agent.stats["prefetch_failures"] == 2
