"""The Docker executor: one container per task, through the Docker SDK.

Every SDK call blocks, so each goes through `trio.to_thread.run_sync`. Containers carry the
labels `edgerm.agent` (this agent's key) and `edgerm.task` (the task number): the agent finds its
containers after a restart by label, and it only ever touches, kills or removes containers that
carry its own key. It never prunes anything.

Outcomes: exit 0 → FINISHED; OOM kill (the engine's `OOMKilled`, or its "oom" event for an exit by
a SIGKILL nobody sent) → FAILED MEMORY_LIMIT; kill → KILLED; still running
`timeout_s` after it started → killed, FAILED TIMEOUT (as a WASM task); other exits →
FAILED EXITED_NONZERO with the tail of the logs; an image that is not there → ERROR
LAUNCH_FAILED; any other Docker error → FAILED EXECUTOR_ERROR for that task only.

Resource handling: the container is removed once its terminal state is on disk (the report
persists it), so a crash in between leaves it for the restarted agent to find.

Memory: the Docker SDK (with requests and urllib3, ~7 MB RSS) is imported when the first task
runs. Start-up (is the engine there? remove our containers no live task owns) goes through
`docker_api.EngineApi`, plain HTTP on the engine socket, unless the engine URL needs TLS.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import trio

from edgerm.wire import pb
from edgerm_agent.executors.base import MAX_MESSAGE, TaskContext, tail_text
from edgerm_agent.executors.docker_api import EngineApi

__all__ = ["DockerExecutor", "LABEL_AGENT", "LABEL_TASK"]

LABEL_AGENT = "edgerm.agent"
LABEL_TASK = "edgerm.task"
# One wait request covers this long; between them kills and cancellation get through.
_WAIT_SLICE_S = 2
_LOG_LINES = 200
# How long an exit by SIGKILL nobody sent waits for the engine's "oom" event (_oom_logged).
_OOM_EVENT_WAIT_S = 2.0
_NETWORK = {pb.NETWORK_MODE_UNSPECIFIED: "none", pb.NONE: "none", pb.HOST: "host",
            pb.BRIDGE: "bridge"}

T = TypeVar("T")


class DockerExecutor:
    """Runs `DockerTask`s. `agent_key` names this agent's containers."""

    def __init__(self, agent_key: str, *, base_url: str | None = None, pull: bool = False,
                 device_paths: dict[str, str] | None = None) -> None:
        self.agent_key = agent_key
        self.base_url = base_url
        self.pull = pull
        self.device_paths = device_paths or {}
        self._client: Any = None
        #: the SDK-free client for start-up; None when the URL needs the SDK (TLS, ssh).
        self.engine = EngineApi.for_url(base_url)

    # -- plumbing ------------------------------------------------------------------------------

    def _make_client(self) -> Any:
        import docker

        if self._client is None:
            if self.base_url:
                self._client = docker.DockerClient(base_url=self.base_url, timeout=30)
            else:
                self._client = docker.from_env(timeout=30)
        return self._client

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await trio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))

    async def _client_async(self) -> Any:
        return await self._call(self._make_client)

    async def ping(self) -> bool:
        """True when the engine answers."""
        if self.engine is not None:
            return await self._call(self.engine.ping)
        try:
            client = await self._client_async()
            return bool(await self._call(client.ping))
        except Exception:
            return False

    async def remove_orphans(self, live: set[int]) -> list[int]:
        """Remove this agent's containers whose task is not in `live`; their task numbers.

        Raises: whatever the engine client raises (the caller logs it and goes on).
        """
        label = f"{LABEL_AGENT}={self.agent_key}"
        removed: list[int] = []
        if self.engine is None:
            for task, container in (await self.list_own()).items():
                if task not in live:
                    await self._call(container.remove, force=True)
                    removed.append(task)
            return removed
        for c in await self._call(self.engine.containers_with_label, label):
            labels = c.get("Labels") or {}
            if labels.get(LABEL_AGENT) != self.agent_key:
                continue  # never touch a stranger's container, whatever the filter did
            try:
                task = int(labels.get(LABEL_TASK, ""))
            except ValueError:
                continue
            if task not in live:
                await self._call(self.engine.remove_container, str(c.get("Id", "")))
                removed.append(task)
        return removed

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def container_name(self, task: int) -> str:
        return f"edgerm-{self.agent_key}-{task}"

    async def list_own(self) -> dict[int, Any]:
        """This agent's containers by task number (running or not)."""
        client = await self._client_async()
        found = await self._call(client.containers.list, all=True,
                                 filters={"label": f"{LABEL_AGENT}={self.agent_key}"})
        out: dict[int, Any] = {}
        for c in found:
            try:
                out[int(c.labels.get(LABEL_TASK, ""))] = c
            except ValueError:
                continue
        return out

    async def remove_task_container(self, task: int) -> None:
        """Remove the container of `task` if it is ours; errors are ignored (best effort)."""
        try:
            own = await self.list_own()
            c = own.get(task)
            if c is not None:
                await self._call(c.remove, force=True)
        except Exception:
            pass

    # -- one task ------------------------------------------------------------------------------

    async def run(self, ctx: TaskContext) -> None:
        """Run (or, with `ctx.recovered`, re-attach to) one task and report its end."""
        import docker.errors
        import requests.exceptions

        container: Any = None
        try:
            if ctx.recovered:
                container = (await self.list_own()).get(ctx.task)
                if container is None:
                    if ctx.killed.is_set():
                        ctx.report(pb.KILLED, reason=ctx.kill_reason,
                                   message="container gone after the agent restarted")
                    else:
                        ctx.report(pb.FAILED, reason=pb.AGENT_RESTARTED,
                                   message="container gone after the agent restarted")
                    return
                await self._call(container.reload)
                if container.status in ("created", "running", "restarting", "paused"):
                    ctx.report(pb.RUNNING)
            else:
                if ctx.killed.is_set():
                    ctx.report(pb.KILLED, reason=ctx.kill_reason)
                    return
                container = await self._create(ctx)
                if container is None:
                    return
                await self._call(container.start)
                ctx.report(pb.RUNNING)
            await self._wait(ctx, container)
        except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
            ctx.report(pb.FAILED, reason=pb.EXECUTOR_ERROR,
                       message=tail_text(f"docker: {e}".encode(), MAX_MESSAGE))
        if container is not None:
            with trio.CancelScope(shield=True):
                await ctx.flush()
                try:
                    await self._call(container.remove, force=True)
                except Exception:
                    pass  # found and removed by label on the next start

    async def _create(self, ctx: TaskContext) -> Any:
        import docker.errors

        client = await self._client_async()
        d = ctx.spec.docker
        if not d.image:
            ctx.report(pb.ERROR, reason=pb.INVALID_TASK, message="docker.image is empty")
            return None
        try:
            await self._call(client.images.get, d.image)
        except docker.errors.ImageNotFound:
            if not self.pull:
                ctx.report(pb.ERROR, reason=pb.LAUNCH_FAILED,
                           message=f"image {d.image!r} is not on this agent (pulling is off)")
                return None
            try:
                await self._call(client.images.pull, d.image)
            except docker.errors.DockerException as e:
                ctx.report(pb.ERROR, reason=pb.LAUNCH_FAILED,
                           message=tail_text(f"pull {d.image!r}: {e}".encode(), MAX_MESSAGE))
                return None
        res = ctx.spec.resources
        devices = []
        for dev in res.devices:
            path = self.device_paths.get(dev.name)
            if path:
                devices.append(f"{path}:{path}:rwm")
        env = {e.name: e.value for e in d.env}
        env.setdefault("EDGERM_TASK", str(ctx.task))
        kwargs: dict[str, Any] = {
            "image": d.image,
            "command": list(d.command) or None,
            "environment": env,
            "labels": {LABEL_AGENT: self.agent_key, LABEL_TASK: str(ctx.task)},
            "name": self.container_name(ctx.task),
            "network_mode": _NETWORK.get(d.network, "none"),
            "detach": True,
        }
        if res.cpus > 0:
            kwargs["nano_cpus"] = int(res.cpus * 1e9)
        if res.mem_mb > 0:
            limit = int(res.mem_mb * 1024 * 1024)
            kwargs["mem_limit"] = limit
            kwargs["memswap_limit"] = limit  # no swap: over the limit means OOM, not slowness
        if devices:
            kwargs["devices"] = devices
        if d.ports and kwargs["network_mode"] == "bridge":
            kwargs["ports"] = {f"{p.container_port}/{'udp' if p.udp else 'tcp'}": p.host_port
                               for p in d.ports}
        # A container left over from a crash between create and checkpoint: ours, replace it.
        await self.remove_task_container(ctx.task)
        return await self._call(client.containers.create, **kwargs)

    async def _wait(self, ctx: TaskContext, container: Any) -> None:
        import requests.exceptions

        stopped: list[str] = []     # why we killed it, the first reason only

        async def kill(why: str) -> None:
            stopped.append(why)
            try:
                await self._call(container.kill)
            except Exception:
                pass  # already stopped: the wait below sees the exit

        async def kill_on_request() -> None:
            await ctx.killed.wait()
            await kill("kill")

        async def kill_at_timeout(timeout_s: int) -> None:
            # A container re-adopted after an agent restart has been running a while already.
            await trio.sleep(max(0.0, timeout_s - _ran_for_s(container.attrs)))
            await kill("timeout")

        async with trio.open_nursery() as n:
            n.start_soon(kill_on_request)
            if ctx.spec.docker.timeout_s:
                n.start_soon(kill_at_timeout, ctx.spec.docker.timeout_s)
            while True:
                try:
                    status = await self._call(container.wait, timeout=_WAIT_SLICE_S)
                    break
                except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
                    await self._call(container.reload)
                    if container.status in ("exited", "dead"):
                        status = {"StatusCode": container.attrs["State"].get("ExitCode", -1)}
                        break
            n.cancel_scope.cancel()
        await self._call(container.reload)
        state = container.attrs.get("State", {})
        code = int(status.get("StatusCode", state.get("ExitCode", -1)))
        raw_logs = await self._call(container.logs, tail=_LOG_LINES)
        logs = tail_text(raw_logs, MAX_MESSAGE)
        if ctx.killed.is_set() and stopped[:1] != ["timeout"]:
            ctx.report(pb.KILLED, reason=ctx.kill_reason, exit_code=code, message=logs)
        elif stopped[:1] == ["timeout"]:
            ctx.report(pb.FAILED, reason=pb.TIMEOUT, exit_code=code, message=tail_text(
                raw_logs + f"\ntimeout after {ctx.spec.docker.timeout_s} s".encode(),
                MAX_MESSAGE))
        elif state.get("OOMKilled") or (code == 137 and await self._oom_logged(container)):
            ctx.report(pb.FAILED, reason=pb.MEMORY_LIMIT, exit_code=code,
                       message=tail_text((raw_logs + b"\nOOM: killed at its memory limit"),
                                         MAX_MESSAGE))
        elif code == 0:
            ctx.report(pb.FINISHED, exit_code=0, message=logs)
        else:
            ctx.report(pb.FAILED, reason=pb.EXITED_NONZERO, exit_code=code, message=logs)


    async def _oom_logged(self, container: Any) -> bool:
        """Whether the engine logged an OOM kill of `container`, which exited by SIGKILL that
        nobody here sent. Its `State.OOMKilled` misses a kill the engine heard of only after
        the exit (containerd sent the two events in either order before containerd#12714);
        the engine's "oom" event is logged either way, so it is looked for, for up to
        _OOM_EVENT_WAIT_S."""
        client = await self._client_async()
        since = int(_started_at(container.attrs.get("State") or {}) or time.time() - 3600)
        deadline = trio.current_time() + _OOM_EVENT_WAIT_S
        while True:
            found = await self._call(_oom_events, client, container.id, since, time.time())
            if found or trio.current_time() >= deadline:
                return found
            await trio.sleep(0.2)


def _oom_events(client: Any, container_id: str, since: int, until: float) -> bool:
    """Any "oom" event of the container between `since` and `until` in the engine's event log.
    (`until` to the nanosecond, as the engine parses it: an integer one in the future would
    hold the request open until then.)"""
    events = client.events(since=since, until=f"{until:.9f}", decode=True,
                           filters={"container": container_id, "event": "oom"})
    try:
        return any(True for _ in events)
    finally:
        events.close()


def _started_at(state: dict[str, Any]) -> float | None:
    """A container's `State.StartedAt` as a Unix time, None when unknown or not started (a
    fresh container's attributes date from before its start)."""
    started = str(state.get("StartedAt") or "")
    if not started or started.startswith("0001-"):
        return None
    # RFC 3339 with nanoseconds ("2026-01-02T03:04:05.123456789Z"): keep microseconds.
    head, _, frac = started.rstrip("Z").partition(".")
    try:
        when = datetime.fromisoformat(head + "+00:00").timestamp()
    except ValueError:
        return None
    digits = "".join(c for c in frac if c.isdigit())[:6]
    return when + (int(digits.ljust(6, "0")) / 1e6 if digits else 0.0)


def _ran_for_s(attrs: dict[str, Any]) -> float:
    """How long a running container has been running (its engine's `State.StartedAt`), 0 when
    unknown or not started."""
    state = attrs.get("State") or {}
    when = _started_at(state)
    if not state.get("Running") or when is None:
        return 0.0
    return max(0.0, time.time() - when)
