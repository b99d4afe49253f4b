"""Real processes on loopback for the agent's end-to-end tests: an agent process (SIGKILL-able)
and a framework connection that acknowledges every update and records what it saw."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import trio
from trio_websocket import open_websocket_url

from edgerm.wire import pb
from edgerm_master.testing import ScriptedFramework

TS = pb.TaskState


class AgentProcess:
    """`python -m edgerm_agent CONFIG` with a generated config."""

    def __init__(self, work_dir: Path, master_url: str, *, name: str = "agent-1",
                 token: str = "agent-token", executors: Iterable[str] = ("wasm",),
                 docker_host: str | None = None, extra: str = "") -> None:
        self.work_dir = work_dir
        self.config_path = work_dir.parent / f"{work_dir.name}.toml"
        ex = ", ".join(f'"{e}"' for e in executors)
        docker = f'[docker]\nhost = "{docker_host}"\n' if docker_host else ""
        self.config_path.write_text(f"""
name = "{name}"
work_dir = "{work_dir}"
[master]
url = "{master_url}"
token = "{token}"
[resources]
cpus = 2
mem_mb = 1024
[executors]
enabled = [{ex}]
{docker}
[timing]
call_timeout_s = 2.0
backoff_initial_s = 0.1
backoff_max_s = 0.5
heartbeat_s = 0.2
[[devices]]
name = "temp"
kind = "sensor"
unit = "Cel"
constant = 21.5
{extra}
""")
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = work_dir.parent / f"{work_dir.name}.log"

    def start(self) -> AgentProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen([sys.executable, "-m", "edgerm_agent", "-v",
                                      str(self.config_path)], stdout=log, stderr=log)
        log.close()
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


class Framework:
    """One framework over WebSocket; acknowledges updates, records states and outputs."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.fw = ScriptedFramework()
        self.changed = trio.Event()
        self.accepted_at: dict[str, float] = {}
        self.state_at: dict[tuple[str, int], float] = {}

    async def send(self, data: bytes) -> None:
        await self.ws.send_message(data)

    async def reader(self) -> None:
        while True:
            ev = self.fw.handle_event(await self.ws.get_message())
            if ev.WhichOneof("event") == "update":
                u = ev.update
                self.state_at.setdefault((u.task_id, u.state), trio.current_time())
                if u.uuid:
                    await self.send(self.fw.acknowledge(u))
            self.changed.set()
            self.changed = trio.Event()

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 15.0) -> Any:
        with trio.fail_after(timeout):
            while not (result := predicate()):
                await self.changed.wait()
            return result

    async def upload(self, module: bytes) -> bytes:
        await self.send(self.fw.upload(module, pb.WASM_MODULE))
        sha = hashlib.sha256(module).digest()
        await self.wait_for(lambda: any(e.WhichOneof("event") == "module_stored"
                                        and e.module_stored.sha256 == sha
                                        for e in self.fw.events))
        return sha

    async def launch(self, task_id: str, spec: pb.TaskSpec, timeout: float = 15.0) -> None:
        def roomy() -> pb.Offer | None:
            fits = [o for o in self.fw.offers.values()
                    if o.resources.cpus >= spec.resources.cpus
                    and o.resources.mem_mb >= spec.resources.mem_mb]
            return fits[0] if fits else None
        offer = await self.wait_for(roomy, timeout)
        self.accepted_at[task_id] = trio.current_time()
        await self.send(self.fw.accept([offer.offer_id], [pb.TaskInfo(task_id=task_id,
                                                                       spec=spec)]))

    def states(self, task_id: str) -> list[int]:
        return [u.state for u in self.fw.updates if u.task_id == task_id]

    def last(self, task_id: str) -> pb.TaskStatus | None:
        ups = [u for u in self.fw.updates if u.task_id == task_id]
        return ups[-1] if ups else None

    async def wait_state(self, task_id: str, *states: int, timeout: float = 20.0
                         ) -> pb.TaskStatus:
        def done() -> pb.TaskStatus | None:
            last = self.last(task_id)
            return last if last is not None and last.state in states else None
        try:
            return await self.wait_for(done, timeout)  # type: ignore[no-any-return]
        except trio.TooSlowError:
            raise AssertionError(f"{task_id}: states {[TS.Name(s) for s in self.states(task_id)]}"
                                 f", waited for {[TS.Name(s) for s in states]}") from None


async def open_framework(nursery: trio.Nursery, ws: tuple[str, int],
                         framework_id: str = "", framework_secret: bytes = b"") -> Framework:
    """Subscribe (or fail over into `framework_id`, proven by its secret) and start reading
    events."""
    conn = await _connect(nursery, ws)
    f = Framework(conn)
    f.fw.failover_timeout_s = 120.0
    f.fw.framework_id = framework_id
    f.fw.framework_secret = framework_secret
    await f.send(f.fw.subscribe())
    nursery.start_soon(f.reader)
    await f.wait_for(lambda: f.fw.framework_id)
    return f


async def _connect(nursery: trio.Nursery, ws: tuple[str, int]) -> Any:
    from trio_websocket import connect_websocket_url

    return await connect_websocket_url(nursery, f"ws://{ws[0]}:{ws[1]}/framework")


def wasm_spec(sha: bytes, size: int, *args: str, mem_mb: float = 4, timeout_s: int = 0,
              devices: Iterable[str] = ()) -> pb.TaskSpec:
    return pb.TaskSpec(
        name="w", resources=pb.Resources(cpus=0.1, mem_mb=mem_mb,
                                         devices=[pb.Device(name=d) for d in devices]),
        wasm=pb.WasmTask(sha256=sha, size=size, args=list(args), timeout_s=timeout_s))


def docker_spec(image: str, *command: str, mem_mb: float = 64,
                timeout_s: int = 0) -> pb.TaskSpec:
    return pb.TaskSpec(name="d", resources=pb.Resources(cpus=0.2, mem_mb=mem_mb),
                       docker=pb.DockerTask(image=image, command=list(command),
                                            timeout_s=timeout_s))


__all__ = ["AgentProcess", "Framework", "open_framework", "wasm_spec", "docker_spec",
           "open_websocket_url", "os"]
