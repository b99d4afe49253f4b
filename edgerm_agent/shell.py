"""The Trio shell of the agent: drives `AgentCore` with a link, a clock, executors and the
checkpoint.

One nursery holds everything: the link's connection task, the call loop, and one task per
running task (`executor.run(ctx)`). The call loop is the only place that sends calls:

    events from the core → act (start/kill tasks, fetch modules)
    checkpoint if the core is dirty (so nothing leaves that could be forgotten)
    next_call(now) → link.call() → receive_reply()/call_failed()
    nothing due → sleep until get_timer() or a wake-up (a report, a push, a publish)

Error handling: a link error or a timeout is a failed call (the core backs off); a bad reply is
counted and dropped by the core; an executor that raises fails only its task (FAILED
EXECUTOR_ERROR). Nothing a master, a task or the Docker engine does stops the agent.

Several masters (`[master] urls`, docs/ha.md): the core advises a move (`SwitchMaster`) when a
standby refuses with NOT_LEADER (naming the leader, followed only if it is in the list) or a
call fails; the shell picks the next master (`edgerm.masters.MasterList`), replaces the link
(cancelling the old one's task) and tells the core, which re-registers there with the same
identity and its tasks: running tasks go on untouched.

What the operator sees: a refusal by the master is logged every time with its reason and what
to do (a wrong token: ERROR, retried with back-off up to `timing.backoff_max_s`); losing the
master is one WARNING, its return one INFO line (not one line per failed call).
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from edgerm.masters import MasterList
from edgerm.wire import DecodeError, pb
from edgerm_agent.checkpoint import Checkpoint, corrupt
from edgerm_agent.config import AgentConfig
from edgerm_agent.core import AgentCore, CoreConfig
from edgerm_agent.events import (
    FetchModule,
    KillTask,
    LaunchTask,
    ModuleChunk,
    ModuleFailed,
    OutgoingCall,
    Refused,
    Registered,
    SwitchMaster,
)
from edgerm_agent.executors.base import MAX_MESSAGE, TaskContext, tail_text
from edgerm_agent.inventory import EXECUTOR_NAMES, detect_attributes, detect_resources
from edgerm_agent.links import Link, LinkError, open_link, run_replaceable
from edgerm_agent.modules import ModuleStore, ModuleUnavailable

if TYPE_CHECKING:
    from edgerm.oscore import SecurityContext

__all__ = ["Agent"]

log = logging.getLogger("edgerm_agent")
T = TypeVar("T")

# Overall limit on fetching one module over WebSocket chunks (the core retries each chunk).
_MODULE_FETCH_TIMEOUT_S = 120.0


class Agent:
    """One agent process. `await agent.run(task_status=...)` never returns unless cancelled.

    Args:
      config: the parsed configuration.
      link: override the link built from `config.masters` (tests; then no switching).
      rng: randomness for jitter and back-off (seed it in tests).
    """

    def __init__(self, config: AgentConfig, *, link: Link | None = None,
                 rng: random.Random | None = None) -> None:
        self.config = config
        self.masters = MasterList(config.masters)
        self._fixed_link = link is not None
        self.link = link or self._make_link(self.masters.current)
        self._link_scope: trio.CancelScope | None = None
        self._switch: str | None = None   # a SwitchMaster advice not yet acted on
        self.checkpoint = Checkpoint(config.work_dir)
        self.rng = rng or random.Random()
        # Names this agent's containers; stable for one work dir.
        self.agent_key = hashlib.sha256(
            str(config.work_dir.resolve()).encode()).hexdigest()[:12]
        self.core: AgentCore | None = None
        self.contexts: dict[int, TaskContext] = {}
        self.executors: dict[int, Any] = {}
        self._wake = trio.Event()
        self._room = trio.Event()
        self._save_lock = trio.Lock()
        self._nursery: trio.Nursery | None = None
        self._chunks: dict[bytes, trio.MemorySendChannel[ModuleChunk | ModuleFailed]] = {}
        self._pending_kills: list[tuple[TaskContext, int]] = []
        self.modules = ModuleStore(config.work_dir / "modules", self._fetch_module)
        self.registered = trio.Event()
        self._exchange = trio.Lock()      # one exchange of this identity in flight
        #: counters for logs and tests.
        self.stats: dict[str, int] = {"prefetch_failures": 0}

    # -- start-up ------------------------------------------------------------------------------

    async def _make_executors(self) -> list[str]:
        names: list[str] = []
        if "wasm" in self.config.executors:
            from edgerm_agent.executors.wasm import WasmExecutor

            sensors = {d.name: d.sensor for d in self.config.devices if d.sensor is not None}
            actuators = {d.name: d.actuator for d in self.config.devices
                         if d.actuator is not None}
            self.executors[pb.WASM] = WasmExecutor(
                self.modules, sensors=sensors, actuators=actuators,
                default_mem_mb=self.config.wasm_default_mem_mb,
                stack_kb=self.config.wasm_stack_kb,
                fetch_attempts=self.config.wasm_fetch_attempts,
                fetch_retry_s=self.config.wasm_fetch_retry_s,
                readings=(self.config.work_dir / "gateway" / "readings"
                          if self.config.gateway is not None else None))
            names.append("wasm")
        if "docker" in self.config.executors:
            from edgerm_agent.executors.docker import DockerExecutor

            docker = DockerExecutor(
                self.agent_key, base_url=self.config.docker_host, pull=self.config.docker_pull,
                device_paths={d.name: d.path for d in self.config.devices if d.path})
            if await docker.ping():
                self.executors[pb.DOCKER] = docker
                names.append("docker")
            else:
                log.warning("docker engine not reachable: the DOCKER executor is off")
        return names

    async def run(self, *, task_status: trio.TaskStatus[Agent] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        self.config.work_dir.mkdir(parents=True, exist_ok=True)
        if any(d.actuator is not None for d in self.config.devices):
            (self.config.work_dir / "actuators").mkdir(exist_ok=True)  # their journals
        snap = await trio.to_thread.run_sync(self.checkpoint.load)
        names = await self._make_executors()
        resources = await trio.to_thread.run_sync(detect_resources, self.config)
        core_config = CoreConfig(
            name=self.config.name, token=self.config.token, resources=resources,
            attributes=tuple(detect_attributes(self.config, names)),
            executors=tuple(EXECUTOR_NAMES[n] for n in names),
            max_payload=self.config.max_payload, heartbeat_s=self.config.heartbeat_s,
            backoff_initial_s=self.config.backoff_initial_s,
            backoff_max_s=self.config.backoff_max_s)
        try:
            self.core = AgentCore(core_config, rng=self.rng, snapshot=snap)
            self.core.oscore = self.link.protects
        except (KeyError, ValueError, TypeError, AttributeError, DecodeError) as e:
            for ex in self.executors.values():
                ex.close()
            raise corrupt(self.checkpoint.path, f"{type(e).__name__}: {e}") from None
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for ex in self.executors.values():
                    if hasattr(ex, "start"):
                        await ex.start(nursery)
                await self._recover()
                await self._save()
                await nursery.start(self._run_link, self.link)
                self.core.start(trio.current_time())
                nursery.start_soon(self._call_loop)
                task_status.started(self)
        finally:
            for ex in self.executors.values():
                ex.close()
            self.checkpoint.close()

    def _make_link(self, url: str) -> Link:
        cfg = self.config
        return open_link(url, backoff_max_s=min(10.0, cfg.backoff_max_s),
                         block_size=cfg.coap_block_size, ack_timeout_s=cfg.coap_ack_timeout_s,
                         max_retransmit=cfg.coap_max_retransmit, ca_file=cfg.ca_file)

    async def _run_link(self, link: Link, *,
                        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The link's task, in a scope of its own so a move to another master can end it."""
        scope = self._link_scope = trio.CancelScope()
        await run_replaceable(link, self._on_push, scope, task_status=task_status)

    async def _switch_master(self, leader: str) -> None:
        """Act on a SwitchMaster advice: move to the named leader (if configured) or the next
        master; a new link, and the core re-registers there."""
        assert self.core is not None and self._nursery is not None
        old = self.masters.current
        url = self.masters.refused(leader) if leader else self.masters.rotate()
        if url == old:
            return
        if leader:
            named = "" if self.masters.find(leader) is not None else (
                f" (it named {leader}, which is not among this agent's masters)")
            log.warning("the master at %s is a standby%s; moving to %s", old, named, url)
        else:
            log.warning("no answer from the master at %s; trying %s", old, url)
        if self._link_scope is not None:
            self._link_scope.cancel()
        self.link = self._make_link(url)
        self.core.oscore = self.link.protects
        self._observe_pending = False
        await self._nursery.start(self._run_link, self.link)
        self.core.master_changed(trio.current_time())

    async def _recover(self) -> None:
        """After a restart: re-attach to what still runs, report what cannot be recovered,
        remove our containers that no live task owns."""
        assert self.core is not None
        live = {t for t, r in self.core.tasks.items() if not r.terminal}
        docker = self.executors.get(pb.DOCKER)
        if docker is not None:
            try:
                removed = await docker.remove_orphans(live)
                if removed:
                    log.info("docker: removed containers of ended tasks %s", removed)
            except Exception as e:  # engine trouble must not stop the agent
                log.warning("docker: could not list this agent's containers: %s", e)
        for task in sorted(live):
            rec = self.core.tasks[task]
            if rec.executor not in self.executors:
                if rec.kill_reason:
                    self.core.task_changed(task, pb.KILLED, reason=rec.kill_reason,
                                           message="killed; the agent restarted meanwhile")
                else:
                    self.core.task_changed(task, pb.FAILED, reason=pb.AGENT_RESTARTED,
                                           message="the agent restarted without this executor")
                continue
            self._start_task(task, rec.spec, recovered=True)
            if rec.kill_reason:
                # Asked before the crash (and checkpointed): finish the job.
                ctx = self.contexts[task]
                ctx.kill_reason = rec.kill_reason
                ctx.killed.set()

    # -- tasks ---------------------------------------------------------------------------------

    def _start_task(self, task: int, spec: pb.TaskSpec, *, recovered: bool = False) -> None:
        assert self.core is not None and self._nursery is not None
        rec = self.core.tasks[task]
        ctx = TaskContext(task=task, spec=spec, report=self._reporter(task),
                          publish=self._publisher(task), flush=self._save, recovered=recovered)
        self.contexts[task] = ctx
        self._nursery.start_soon(self._run_task, self.executors[rec.executor], ctx)

    async def _run_task(self, executor: Any, ctx: TaskContext) -> None:
        try:
            await executor.run(ctx)
        except Exception as e:
            log.exception("executor failed on task %d", ctx.task)
            ctx.report(pb.FAILED, reason=pb.EXECUTOR_ERROR,
                       message=tail_text(f"{type(e).__name__}: {e}".encode(), MAX_MESSAGE))
        finally:
            self.contexts.pop(ctx.task, None)
            self._wake.set()

    def _reporter(self, task: int) -> Any:
        def report(state: int, *, reason: int = pb.REASON_UNSPECIFIED, message: str = "",
                   exit_code: int = 0) -> None:
            assert self.core is not None
            if self.core.task_changed(task, state, reason=reason, message=message,
                                      exit_code=exit_code):
                log.info("task %d: %s %s", task, pb.TaskState.Name(state),
                         pb.Reason.Name(reason) if reason else "")
            self._wake.set()
        return report

    def _publisher(self, task: int) -> Any:
        async def publish(data: bytes) -> None:
            assert self.core is not None
            while not self.core.publish(task, data):
                if task not in self.core.tasks:
                    return
                await self._room.wait()
            self._wake.set()
        return publish

    def _handle_events(self) -> None:
        assert self.core is not None
        while (ev := self.core.next_event()) is not None:
            if isinstance(ev, LaunchTask):
                self._start_task(ev.task, ev.spec)
            elif isinstance(ev, KillTask):
                ctx = self.contexts.get(ev.task)
                if ctx is not None:
                    # Carried out once the kill request is in the checkpoint (`_save`): a
                    # crash in between must not turn the kill into an unexplained exit.
                    self._pending_kills.append((ctx, ev.reason))
                    self._wake.set()
                else:
                    self.core.task_changed(ev.task, pb.KILLED, reason=ev.reason)
            elif isinstance(ev, FetchModule):
                assert self._nursery is not None
                self._nursery.start_soon(self._prefetch, ev.sha256, ev.size)
            elif isinstance(ev, ModuleChunk | ModuleFailed):
                chan = self._chunks.get(ev.sha256)
                if chan is not None:
                    try:
                        chan.send_nowait(ev)
                    except (trio.WouldBlock, trio.BrokenResourceError):
                        pass
            elif isinstance(ev, Registered):
                log.info("registered as agent %d%s", ev.agent_id, " (new)" if ev.fresh else "")
                self.registered.set()
            elif isinstance(ev, Refused):
                if ev.code != pb.NOT_LEADER or len(self.masters) < 2:
                    self._log_refusal(ev)
            elif isinstance(ev, SwitchMaster):
                if not self._fixed_link and len(self.masters) > 1:
                    self._switch = ev.leader

    def _log_refusal(self, ev: Refused) -> None:
        """One line per refusal: what the master said, what to do, when the agent tries again.
        The core's back-off bounds how often this is logged."""
        url = self.masters.current
        try:
            code = pb.ErrorCode.Name(ev.code)
        except ValueError:
            code = str(ev.code)
        again = ""
        if ev.retry_at is not None:
            again = f"; trying again in {max(0.0, ev.retry_at - trio.current_time()):.0f} s"
        if ev.call == "register" and ev.fresh and ev.code == pb.UNAUTHENTICATED:
            hint = ("" if self.config.token else
                    " (this agent has no token: set master.token in its config)")
            log.error("the master at %s refused to register this agent: %s: %s%s%s", url, code,
                      ev.message, hint, again)
        elif ev.code == pb.UNSUPPORTED:
            log.error("the master at %s refused a %s call: %s: %s; run an agent and a master "
                      "of matching versions%s", url, ev.call, code, ev.message, again)
        elif ev.code == pb.NOT_LEADER:
            log.warning("the master at %s is a standby (%s); list every master in [master] urls "
                        "so the agent follows the leader%s", url, ev.message, again)
        elif ev.code == pb.UNAUTHENTICATED:
            log.warning("the master at %s does not accept this agent's identity (%s: %s); "
                        "registering again%s", url, code, ev.message, again)
        else:
            log.warning("the master at %s refused a %s call: %s: %s%s", url, ev.call, code,
                        ev.message, again)

    # -- modules -------------------------------------------------------------------------------

    async def _prefetch(self, sha256: bytes, size: int) -> None:
        """`FetchModule`: only a head start. A failure is logged and counted; the launch that
        needs the module fetches it again (with retries) and reports what finally happened."""
        try:
            await self.modules.get(sha256, size)
        except Exception as e:
            self.stats["prefetch_failures"] += 1
            log.warning("prefetch of module %s failed (%d so far): %s", sha256.hex(),
                        self.stats["prefetch_failures"], e)

    async def _fetch_module(self, sha256: bytes, size: int) -> bytes:
        try:
            data = await self.link.fetch_module(sha256, size)
        except LinkError as e:
            raise ModuleUnavailable(str(e)) from None
        if data is not None:
            return data
        return await self._fetch_module_chunks(sha256, size)

    async def _fetch_module_chunks(self, sha256: bytes, size: int) -> bytes:
        """WebSocket: ModuleRequest calls through the core until the module is complete."""
        assert self.core is not None
        if sha256 in self._chunks:
            raise ModuleUnavailable("already being fetched")
        send, receive = trio.open_memory_channel[ModuleChunk | ModuleFailed](4)
        self._chunks[sha256] = send
        buf = bytearray()
        try:
            with trio.fail_after(_MODULE_FETCH_TIMEOUT_S):
                while True:
                    self.core.request_module(sha256, len(buf))
                    self._wake.set()
                    ev = await receive.receive()
                    if isinstance(ev, ModuleFailed):
                        raise ModuleUnavailable(ev.message or "the master has no such module")
                    if ev.offset != len(buf) or ev.total > max(size, 1) * 2 + 1024 * 1024:
                        raise ModuleUnavailable("module chunk out of order or oversized")
                    buf += ev.data
                    if len(buf) >= ev.total or not ev.data:
                        return bytes(buf)
        except trio.TooSlowError:
            raise ModuleUnavailable("module fetch timed out") from None
        finally:
            del self._chunks[sha256]

    # -- the call loop -------------------------------------------------------------------------

    def _on_push(self, data: bytes, seq: int, protected: bool = False) -> None:
        assert self.core is not None
        self.core.receive_push(data, trio.current_time(), seq, protected)
        self._wake.set()

    async def _save(self) -> None:
        """Write the checkpoint if the core changed; then carry out the kills it now holds."""
        assert self.core is not None
        async with self._save_lock:
            kills, self._pending_kills = self._pending_kills, []
            if self.core.dirty:
                self.core.dirty = False
                snap = self.core.snapshot()
                try:
                    await trio.to_thread.run_sync(self.checkpoint.save, snap)
                except BaseException:
                    self.core.dirty = True
                    self._pending_kills[:0] = kills
                    raise
            for ctx, reason in kills:
                ctx.kill_reason = reason
                ctx.killed.set()

    async def _call_loop(self) -> None:
        core = self.core
        assert core is not None
        timeout = self.config.call_timeout_s
        while True:
            self._handle_events()
            if self._switch is not None:
                leader, self._switch = self._switch, None
                await self._switch_master(leader)
            await self._save()
            self._handle_events()
            room = core.publish_room() > 0
            if room:
                self._room.set()
                self._room = trio.Event()
            if (self.link.observe_wanted and core.registered
                    and not self.link.observation_alive and not self._observe_pending):
                self._observe_pending = True
                core.request_observe()
            # One exchange of this identity at a time, a gateway's `g` included: the master
            # accepts a Partial IV only above the last one it accepted (`uplink_call`).
            async with self._exchange:
                out = core.next_call(trio.current_time())
                if out is not None:
                    await self._one_call(out, timeout)
            if out is None:
                deadline = core.get_timer()
                with trio.move_on_at(math.inf if deadline is None else deadline):
                    await self._wake.wait()
                self._wake = trio.Event()
                core.handle_timer(trio.current_time())

    async def _one_call(self, out: OutgoingCall, timeout: float) -> None:
        """Send the core's call `out` and hand it the reply (or the failure)."""
        core = self.core
        assert core is not None
        try:
            oscore = (core.oscore_context(), out.seq) if out.protected else None
            with trio.fail_after(timeout):
                if out.kind == "observe":
                    self._observe_pending = False
                    reply = await self.link.observe(out.data, self._on_push, oscore)
                else:
                    reply = await self.link.call(out.data, oscore)
        except (LinkError, trio.TooSlowError) as e:
            log.debug("call %s seq %d failed: %s", out.kind, out.seq, e)
            if out.kind == "observe" and not self.link.observe_wanted:
                # It answered 4.04 on `c` (a gateway): heartbeat, no other master to try.
                log.info("no Observe at %s (a gateway?): heartbeating instead",
                         self.masters.current)
                core.call_failed(trio.current_time())
                core.observe_refused()
                return
            if not self._master_lost:
                self._master_lost = True
                log.warning("no reply from the master at %s (%s); retrying with back-off",
                            self.masters.current,
                            e if str(e) else f"no answer within {timeout:g} s")
            core.call_failed(trio.current_time())
            if not self._fixed_link and len(self.masters) > 1:
                self._switch = ""   # try the next master (after the core's back-off)
        else:
            if self._master_lost:
                self._master_lost = False
                log.info("the master at %s answers", self.masters.current)
            core.receive_reply(reply.data, trio.current_time(), reply.protected)

    async def uplink_call(self, exchange: Callable[[SecurityContext, int], Awaitable[T]]
                          ) -> T:
        """`edgerm_agent.gateway_shell.UplinkIdentity`: the gateway next to this agent sends
        its POST `g` as this agent. `exchange(context, seq)` runs with this identity's OSCORE
        context and a fresh sequence number, no call of the agent in flight meanwhile (the
        master accepts a Partial IV only above the last one); `NotRegistered` before the
        agent has an identity."""
        from edgerm_agent.gateway_shell import NotRegistered

        async with self._exchange:
            core = self.core
            if core is None or not core.registered or not core.agent_id or not core.secret:
                raise NotRegistered("the gateway's own agent is not registered yet")
            seq = core.take_seq()
            if core.dirty:
                await self._save()   # a new bound ahead of the seq is on disk before its use
            return await exchange(core.oscore_context(), seq)

    _observe_pending = False
    _master_lost = False

