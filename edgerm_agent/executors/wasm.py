"""The WASM executor: each task runs in its own `wasm_child` process, driven from Trio.

Launch: fetch the module into the cache (verified by sha256), hand the task to the spare child
(wasm3 already imported; a new child is started if none is ready), then read the child's
frames: RUNNING on `R`, log lines into a 4 KiB tail, published data into the agent's update
queue (one credit byte back per publish queued), a final `X`/`T`/`E`.

The spare: `start` runs a keeper task in the agent's nursery that keeps one spare child
waiting, starts the next one as soon as a launch takes it, and replaces one that died while
waiting (after `_SPARE_RETRY_S`, so a child that cannot start is no busy loop).

Resource handling: every child is started in its own session (process group) and is killed
with SIGKILL on kill, timeout, end of its task, or agent shutdown, then waited for (`_Child.reap`:
no zombies), including a spare that died while waiting. It also dies with the agent process,
however that ends: the agent holds the only write end of the child's lifeline pipe, and the
kernel closes it when the agent process exits (wasm_child's docstring says why not
PR_SET_PDEATHSIG). So after an agent restart its tasks are reported FAILED AGENT_RESTARTED.

Error handling: nothing a task does reaches the agent beyond its frames: a child that dies
without a final frame is FAILED EXECUTOR_ERROR with its stderr tail.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import struct
import sys
import time
from pathlib import Path
from typing import Any

import trio

from edgerm.wire import pb
from edgerm_agent.executors.base import OutputTail, TaskContext, tail_text
from edgerm_agent.modules import ModuleHashMismatch, ModuleStore, ModuleUnavailable
from edgerm_agent.sensors import SensorSpec

__all__ = ["WasmExecutor"]

_PAGE = 65536
# Bound on one frame from a child: a log line or a publish is ≤ 4 KiB; anything bigger is a bug.
_MAX_FRAME = 64 * 1024
_STDERR_TAIL = 2048
# Pause before replacing a spare child that died while waiting: a child that cannot start at all
# (no memory, a broken interpreter) must not turn the keeper into a busy loop.
_SPARE_RETRY_S = 1.0

log = logging.getLogger("edgerm_agent")


class _Child:
    """One `wasm_child` process and `lifeline`, the write end of its lifeline pipe. Only this
    process holds it, and it is never written to: the child gets SIGKILL when it is closed,
    which the kernel does when the agent process exits.

    Resource handling: every child ends in `reap()`, which kills its process group, waits for
    it (shielded from cancellation) and only then closes its pipes and its lifeline.
    """

    def __init__(self, proc: trio.Process, lifeline: int) -> None:
        self.proc = proc
        self.lifeline = lifeline

    def kill(self) -> None:
        _kill_group(self.proc)

    async def reap(self) -> None:
        self.kill()
        with trio.CancelScope(shield=True):
            await self.proc.wait()
            for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
                if stream is not None:
                    await stream.aclose()
        if self.lifeline >= 0:
            os.close(self.lifeline)
            self.lifeline = -1


class _FrameReader:
    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.buf = bytearray()

    async def _fill(self, n: int) -> bool:
        while len(self.buf) < n:
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                return False
            self.buf += chunk
        return True

    async def next(self) -> tuple[bytes, bytes] | None:
        if not await self._fill(5):
            return None
        kind = bytes(self.buf[:1])
        (length,) = struct.unpack(">I", self.buf[1:5])
        if length > _MAX_FRAME:
            raise ValueError(f"frame of {length} bytes from the WASM child")
        if not await self._fill(5 + length):
            return None
        payload = bytes(self.buf[5:5 + length])
        del self.buf[:5 + length]
        return kind, payload


class WasmExecutor:
    """Runs `WasmTask`s. Create, then `await start(nursery)`; `run(ctx)` per task."""

    def __init__(self, modules: ModuleStore, *, sensors: dict[str, SensorSpec],
                 default_mem_mb: float = 16.0, stack_kb: int = 64,
                 epoch: float | None = None, fetch_attempts: int = 3,
                 fetch_retry_s: float = 1.0, readings: Path | None = None) -> None:
        self.modules = modules
        # On a gateway: where the latest readings of the devices behind it are (docs/gateway.md).
        self.readings = readings
        self.sensors = sensors
        self.default_mem_mb = default_mem_mb
        self.stack_kb = stack_kb
        self.epoch = time.monotonic() if epoch is None else epoch
        self.fetch_attempts = max(1, fetch_attempts)
        self.fetch_retry_s = fetch_retry_s
        self._spare: _Child | None = None
        # Cancelled by a launch taking the spare: wakes the keeper to start the next one.
        self._spare_idle = trio.CancelScope()
        self._closed = False

    async def start(self, nursery: trio.Nursery) -> None:
        """Start the spare keeper in `nursery` (the agent's); returns once the first spare
        child is ready, or could not be started (then each launch starts its own)."""
        self._closed = False
        await nursery.start(self._keep_spare)

    async def _spawn(self) -> _Child:
        argv, env = _child_command()
        lifeline_r, lifeline_w = os.pipe()  # both close-on-exec; the child gets only the read end
        try:
            proc = await trio.lowlevel.open_process(
                [*argv, str(lifeline_r)], env=env, stdin=-1, stdout=-1, stderr=-1,
                start_new_session=True, pass_fds=(lifeline_r,))
        except BaseException:
            os.close(lifeline_w)
            raise
        finally:
            os.close(lifeline_r)
        return _Child(proc, lifeline_w)

    async def _keep_spare(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                          ) -> None:
        """Keep one spare child waiting until cancelled; then kill and reap it.

        Error handling: a child that cannot be started (OSError) is logged and tried again
        after `_SPARE_RETRY_S`; nothing here ends the agent.
        """
        started = False
        try:
            while not self._closed:
                try:
                    child = await self._spawn()
                except OSError as e:
                    log.warning("cannot start a spare WASM child: %s", e)
                else:
                    self._spare_idle = trio.CancelScope()
                    self._spare = child
                    if not started:
                        task_status.started()
                        started = True
                    with self._spare_idle:
                        await child.proc.wait()  # returns only if it died while waiting
                    if self._spare is not child:
                        continue  # taken by a launch: start the next one at once
                    self._spare = None
                    await child.reap()
                    if self._closed:
                        break
                    log.warning("the spare WASM child died while waiting (status %s)",
                                child.proc.returncode)
                if not started:
                    task_status.started()
                    started = True
                await trio.sleep(_SPARE_RETRY_S)
        finally:
            spare, self._spare = self._spare, None
            if spare is not None:
                await spare.reap()

    async def _take_child(self) -> _Child:
        """The spare child if it is alive, else a new one; the keeper starts the next spare."""
        child, self._spare = self._spare, None
        if child is not None:
            self._spare_idle.cancel()
            if child.proc.returncode is None:
                return child
            await child.reap()
        return await self._spawn()

    def close(self) -> None:
        """Kill the spare, for good: the keeper (if it still runs) reaps it and starts no other.
        Running tasks are killed by their own `run`."""
        self._closed = True
        if self._spare is not None:
            self._spare.kill()

    def _task_json(self, ctx: TaskContext, module: str) -> dict[str, Any]:
        w = ctx.spec.wasm
        mem_mb = ctx.spec.resources.mem_mb or self.default_mem_mb
        wanted = [d.name for d in ctx.spec.resources.devices]
        return {
            "module": module,
            "entry": w.entry,
            "args": list(w.args),
            "env": {e.name: e.value for e in w.env},
            "sensors": [self.sensors[n].to_json() for n in wanted if n in self.sensors],
            "known": sorted(self.sensors),
            "readings": str(self.readings) if self.readings is not None else "",
            "mem_pages": max(1, int(mem_mb * 1024 * 1024) // _PAGE),
            "stack_bytes": self.stack_kb * 1024,
            "epoch": self.epoch,
        }

    async def run(self, ctx: TaskContext) -> None:
        """Run one task to its end, reporting every state through `ctx`."""
        if ctx.recovered:
            # A child process cannot be re-adopted: it died with the previous agent.
            if ctx.killed.is_set():
                ctx.report(pb.KILLED, reason=ctx.kill_reason,
                           message="killed; the agent restarted meanwhile")
            else:
                ctx.report(pb.FAILED, reason=pb.AGENT_RESTARTED,
                           message="the agent restarted; WASM tasks cannot be re-adopted")
            return
        w = ctx.spec.wasm
        fetched: Any = None
        with trio.CancelScope() as fetch_scope:
            async with trio.open_nursery() as n:
                async def watch() -> None:
                    await ctx.killed.wait()
                    fetch_scope.cancel()
                n.start_soon(watch)
                fetched = await self._fetch(bytes(w.sha256), w.size)
                n.cancel_scope.cancel()
        if ctx.killed.is_set():
            ctx.report(pb.KILLED, reason=ctx.kill_reason)
            return
        if isinstance(fetched, tuple):
            ctx.report(pb.ERROR, reason=fetched[0], message=fetched[1])
            return
        child = await self._take_child()
        try:
            await self._drive(ctx, child.proc, str(fetched))
        finally:
            await child.reap()

    async def _fetch(self, sha256: bytes, size: int) -> Any:
        """The module's path, or (reason, message) once `fetch_attempts` tries failed.

        A link that is down or a master that is restarting is worth waiting for; the pause
        doubles from `fetch_retry_s`. Bytes that do not match the hash are not: the master
        would serve the same bytes again. A kill cancels the wait (the caller's cancel scope).
        """
        delay = self.fetch_retry_s
        why = ""
        for attempt in range(1, self.fetch_attempts + 1):
            try:
                return await self.modules.get(sha256, size)
            except ModuleHashMismatch as e:
                return pb.MODULE_HASH_MISMATCH, str(e)
            except ModuleUnavailable as e:
                why = str(e)
            if attempt < self.fetch_attempts:
                await trio.sleep(delay)
                delay *= 2
        n = self.fetch_attempts
        return pb.MODULE_UNAVAILABLE, (f"module {sha256.hex()} unavailable after {n} "
                                       f"attempt{'s' if n > 1 else ''}: {why}")

    async def _drive(self, ctx: TaskContext, proc: trio.Process, module: str) -> None:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        stdin, stdout, stderr = proc.stdin, proc.stdout, proc.stderr
        tail = OutputTail()
        err_tail = bytearray()
        result: dict[str, Any] = {}
        timeout = ctx.spec.wasm.timeout_s or float("inf")
        try:
            await stdin.send_all(json.dumps(self._task_json(ctx, module)).encode() + b"\n")
        except trio.BrokenResourceError:
            pass  # the child died; reported below from its exit status

        async def read_frames() -> None:
            reader = _FrameReader(stdout)
            try:
                while (frame := await reader.next()) is not None:
                    kind, payload = frame
                    if kind == b"R":
                        result["running"] = True
                        ctx.report(pb.RUNNING)
                    elif kind == b"L":
                        tail.add(payload)
                    elif kind == b"P":
                        await ctx.publish(payload)
                        try:
                            await stdin.send_all(b"A")
                        except (trio.BrokenResourceError, trio.ClosedResourceError):
                            pass
                    elif kind in (b"X", b"T", b"E"):
                        result["kind"] = kind
                        result["payload"] = payload
            except ValueError as e:
                result["kind"] = b"!"
                result["payload"] = str(e).encode()

        async def read_stderr() -> None:
            while chunk := await stderr.receive_some(4096):
                err_tail.extend(chunk)
                del err_tail[:-_STDERR_TAIL]

        async with trio.open_nursery() as n:
            n.start_soon(read_stderr)

            async def kill_on_request() -> None:
                await ctx.killed.wait()
                result.setdefault("stopped", "kill")
                _kill_group(proc)

            n.start_soon(kill_on_request)
            with trio.move_on_after(timeout):
                await read_frames()
                await proc.wait()
            if proc.returncode is None:
                result.setdefault("stopped", "timeout")
                _kill_group(proc)
                await proc.wait()
            n.cancel_scope.cancel()
        self._report_end(ctx, proc, result, tail, bytes(err_tail))

    def _report_end(self, ctx: TaskContext, proc: trio.Process, result: dict[str, Any],
                    tail: OutputTail, err: bytes) -> None:
        stopped = result.get("stopped")
        kind = result.get("kind")
        payload: bytes = result.get("payload", b"")
        if kind == b"X":
            info = json.loads(payload)
            code = int(info["code"])
            if code == 0:
                ctx.report(pb.FINISHED, message=tail.text())
            elif info.get("at_mem_cap"):
                ctx.report(pb.FAILED, reason=pb.MEMORY_LIMIT, exit_code=code,
                           message=tail.text("memory limit reached (memory.grow refused)"))
            else:
                ctx.report(pb.FAILED, reason=pb.EXITED_NONZERO, exit_code=code,
                           message=tail.text())
        elif kind == b"T":
            ctx.report(pb.FAILED, reason=pb.TRAPPED,
                       message=tail.text(payload.decode("utf-8", "replace")))
        elif kind == b"E":
            info = json.loads(payload)
            reason = pb.MEMORY_LIMIT if info.get("reason") == "MEMORY_LIMIT" \
                else pb.LAUNCH_FAILED
            ctx.report(pb.FAILED if result.get("running") else pb.ERROR, reason=reason,
                       message=tail.text(str(info.get("message", ""))))
        elif stopped == "kill":
            ctx.report(pb.KILLED, reason=ctx.kill_reason, message=tail.text())
        elif stopped == "timeout":
            ctx.report(pb.FAILED, reason=pb.TIMEOUT,
                       message=tail.text(f"timeout after {ctx.spec.wasm.timeout_s} s"))
        else:
            rc = proc.returncode
            why = f"signal {-rc}" if rc is not None and rc < 0 else f"status {rc}"
            ctx.report(pb.FAILED, reason=pb.EXECUTOR_ERROR,
                       message=tail.text(f"WASM runner died ({why}): "
                                         + tail_text(err, 1024)))


@functools.cache
def _child_command() -> tuple[list[str], dict[str, str] | None]:
    """How to start a WASM child: `python -S` with exactly the two directories it imports
    from (this package's and wasm3's) on its path.

    Skipping `site` (and the .pth files of every installed package) halves the time until a
    new spare is ready and saves ~2.5 MB per child; the child needs nothing else. If wasm3
    cannot be located the plain interpreter is used, and the child reports the import error.
    """
    import importlib.util

    base = [sys.executable, "-m", "edgerm_agent.executors.wasm_child"]
    try:
        spec = importlib.util.find_spec("wasm3")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.origin:
        return base, None
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    paths = [here, os.path.dirname(spec.origin)]
    if os.environ.get("PYTHONPATH"):
        paths.append(os.environ["PYTHONPATH"])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    return [sys.executable, "-S", *base[1:]], env


def _kill_group(proc: trio.Process) -> None:
    if proc.returncode is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
