"""`edgerm run`: launch one task and follow it, a one-shot framework in the manner of
mesos-execute.

It subscribes, uploads the module, waits for an offer that fits, launches one task, prints every
state transition with the master's timestamp (on stderr) and the task's published output (on
stdout), and exits with EXIT_FINISHED when the task FINISHED and non-zero otherwise (the EXIT_*
codes in `edgerm_cli`). Ctrl-C kills the task first.

Error handling: a master address that is not ws://, a missing token or a module over the 1 MiB
limit exit with EXIT_USAGE before anything is sent; an unreachable master (with the reason:
refused, unknown host, not a WebSocket port) or a refusal by it with EXIT_MASTER; each is one line
on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import secrets
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import trio

from edgerm.framework import (
    DOCKER,
    MAX_MODULE_BYTES,
    MICROPYTHON,
    WASM,
    CallError,
    ConnectionLost,
    Constraints,
    Framework,
    FrameworkError,
    Module,
    OffersEvent,
    OutputEvent,
    Subscribed,
    UpdateEvent,
    docker_task,
    micropython_task,
    module_too_large,
    reason_name,
    state_name,
    wasm_task,
)
from edgerm.outputs import format_output
from edgerm.wire import pb
from edgerm_cli import (
    EXIT_FINISHED,
    EXIT_INTERRUPTED,
    EXIT_MASTER,
    EXIT_NO_OFFER,
    EXIT_TASK_FAILED,
    EXIT_USAGE,
)
from edgerm_cli.listing import fmt_executors, one_line
from edgerm_cli.target import TargetError, resolve_target

__all__ = ["run_command", "format_output", "Progress", "build_spec", "run_constraints",
           "parse_env", "parse_attributes", "default_mem_mb", "wasm_initial_pages",
           "DOCKER_DEFAULT_MEM_MB", "MICROPYTHON_DEFAULT_MEM_MB"]


def _name_values(items: Sequence[str], flag: str) -> dict[str, str]:
    """NAME=VALUE arguments of `flag`; ValueError naming the flag for one without a name or =."""
    pairs = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"{flag} {item!r}: expected NAME=VALUE")
        pairs[name] = value
    return pairs


def parse_env(items: Sequence[str]) -> dict[str, str]:
    return _name_values(items, "--env")


def parse_attributes(items: Sequence[str]) -> dict[str, str | float]:
    return dict(_name_values(items, "--attribute"))


def _clock(timestamp: float) -> str:
    t = timestamp or time.time()
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t * 1000) % 1000:03d}"


class Progress:
    """Prints what happens to a task, one line per transition (stderr) and per output (stdout)."""

    def __init__(self, out: TextIO, err: TextIO, quiet: bool = False,
                 output_format: str = "auto") -> None:
        self.out = out
        self.err = err
        self.quiet = quiet
        self.output_format = output_format
        self._last: tuple[int, int] | None = None

    def note(self, text: str) -> None:
        if not self.quiet:
            print(f"{_clock(0)}  {text}", file=self.err, flush=True)

    def update(self, status: pb.TaskStatus, agents: dict[int, str]) -> None:
        key = (status.state, status.reason)
        if key == self._last:
            return    # a reconciliation answer repeating what we know
        self._last = key
        where = agents.get(status.agent_id, "")
        parts = [f"{_clock(status.timestamp)}  task {status.task_id}  {state_name(status.state)}"]
        if status.reason:
            parts.append(f"({reason_name(status.reason)})")
        if status.agent_id:
            parts.append(f"on agent {status.agent_id}{' ' + where if where else ''}")
        # An exit code is news when the task exited by itself (a trap, a timeout or a kill is
        # not an exit, and their exit_code 0 means "none"), or when it is not 0.
        if status.exit_code or status.reason == pb.EXITED_NONZERO:
            parts.append(f"exit code {status.exit_code}")
        if status.message:
            parts.append(f"- {one_line(status.message, 200)}")
        if not self.quiet or status.state in (pb.FAILED, pb.ERROR, pb.LOST, pb.KILLED,
                                              pb.DROPPED):
            print("  ".join(parts), file=self.err, flush=True)

    def output(self, ev: OutputEvent) -> None:
        prefix = f"[{ev.topic}] " if ev.topic else ""
        print(prefix + format_output(ev.data, self.output_format), file=self.out, flush=True)


def build_spec(args: argparse.Namespace, module: Module | None,
               resources: pb.Resources) -> pb.TaskSpec:
    env = parse_env(args.env)
    if args.docker:
        return docker_task(args.docker, args.docker_command, name=args.name, resources=resources,
                           env=env, timeout_s=args.timeout)
    assert module is not None
    if args.micropython:
        return micropython_task(module, name=args.name, resources=resources, args=args.arg,
                                env=env, timeout_s=args.timeout)
    return wasm_task(module, name=args.name, resources=resources, args=args.arg, env=env,
                     entry=args.entry, timeout_s=args.timeout)


# `edgerm run` without --mem: what each kind of task needs at least. A Docker container gets a
# modest limit; a MicroPython task runs in its agent's own heap (the agent offers what it can
# spare, often well under 1 MB); a WASM task takes its module's initial linear memory (see
# default_mem_mb), so a one-page module fits a microcontroller's 64 KiB slot.
DOCKER_DEFAULT_MEM_MB = 32.0
MICROPYTHON_DEFAULT_MEM_MB = 0.0
WASM_PAGE = 65536


def default_mem_mb(args: argparse.Namespace, module_bytes: bytes | None) -> float:
    """The memory `edgerm run` asks for when --mem is not given."""
    if args.docker:
        return DOCKER_DEFAULT_MEM_MB
    if args.micropython:
        return MICROPYTHON_DEFAULT_MEM_MB
    pages = wasm_initial_pages(module_bytes or b"")
    return max(1, pages or 0) * WASM_PAGE / (1024 * 1024)


def wasm_initial_pages(data: bytes) -> int | None:
    """The initial size, in 64 KiB pages, of a WASM module's linear memory (defined in its
    memory section or imported); 0 without one; None when `data` is not a readable module.
    Reads only section headers and the memory's limits: the master and the agent check the
    rest."""
    if data[:8] != b"\0asm\x01\0\0\0":
        return None
    pos = 8

    def leb() -> int:
        nonlocal pos
        value, shift = 0, 0
        while True:
            if pos >= len(data) or shift > 63:
                raise ValueError("truncated LEB128")
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    def limits_min() -> int:
        nonlocal pos
        pos += 1            # flags: has a maximum, shared, 64-bit
        return leb()

    def name() -> None:
        nonlocal pos
        length = leb()      # (`pos += leb()` would add to pos as it was before the LEB128)
        pos += length

    try:
        while pos < len(data):
            section = data[pos]
            pos += 1
            size = leb()
            end = pos + size
            if section == 2:                    # imports: module, name, kind, description
                for _ in range(leb()):
                    name()
                    name()
                    kind = data[pos]
                    pos += 1
                    if kind == 2:
                        return limits_min()
                    if kind == 0:
                        leb()
                    elif kind == 1:
                        pos += 1
                        limits_min()
                    elif kind == 3:
                        pos += 2
                    else:
                        return None
            elif section == 5:                  # memories
                return limits_min() if leb() else 0
            pos = end
    except (ValueError, IndexError):
        return None
    return 0


def run_constraints(args: argparse.Namespace, module_bytes: bytes | None = None) -> Constraints:
    executor = DOCKER if args.docker else MICROPYTHON if args.micropython else WASM
    mem = args.mem if args.mem is not None else default_mem_mb(args, module_bytes)
    return Constraints(cpus=args.cpus, mem_mb=mem, disk_mb=args.disk,
                       devices=list(args.device), executors=[executor],
                       attributes=parse_attributes(args.attribute), agent_name=args.agent)


async def run_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    progress = Progress(out, err, quiet=args.quiet, output_format=args.output)
    try:
        parse_env(args.env)
        if args.timeout < 0:
            raise ValueError(f"--timeout {args.timeout}: must be 0 (none) or more seconds")
        module_bytes: bytes | None = None
        path = args.wasm or args.micropython
        if path:
            module_bytes = Path(path).read_bytes()
            # Checked before connecting: the master would refuse it after the upload.
            if len(module_bytes) > MAX_MODULE_BYTES:
                raise ValueError(f"{path}: {module_too_large(len(module_bytes), MAX_MODULE_BYTES)}")
        constraints = run_constraints(args, module_bytes)
        # The command's own arguments first: a mistake in them is told whatever the environment.
        target = resolve_target(args, need="framework")
    except (TargetError, ValueError) as e:
        print(f"edgerm run: {e}", file=err)
        return EXIT_USAGE
    except OSError as e:
        print(f"edgerm run: cannot read {e.filename or 'the module'}: {e.strerror or e}",
              file=err)
        return EXIT_USAGE
    task_id = args.task_id or f"run-{secrets.token_hex(4)}"
    try:
        async with Framework.connect(list(target.masters),
                                     name=args.framework_name,
                                     token=target.framework_token,
                                     failover_timeout_s=args.failover_timeout,
                                     connect_timeout_s=args.connect_timeout,
                                     ca_file=target.ca_file) as fw:
            progress.note(f"subscribed to {fw.url.removesuffix('/framework')} as framework "
                          f"{fw.framework_id}")
            try:
                return await _run_task(fw, args, constraints, module_bytes, task_id, progress)
            finally:
                # A one-shot framework ends with its task, however that went (a refused upload
                # or launch, no offer, Ctrl-C): teardown also kills a task left behind by a
                # second Ctrl-C, and leaves no framework listed.
                await _teardown_quietly(fw)
    except CallError as e:
        print(f"edgerm run: the master refused: {e}", file=err)
        return EXIT_MASTER
    except FrameworkError as e:
        print(f"edgerm run: {e}", file=err)
        return EXIT_MASTER


async def _teardown_quietly(fw: Framework) -> None:
    # Shielded: it also runs on the way out of a cancelled run.
    with trio.CancelScope(shield=True):
        try:
            with trio.move_on_after(2):
                await fw.teardown()
        except FrameworkError:
            pass


async def _run_task(fw: Framework, args: argparse.Namespace, constraints: Constraints,
                    module_bytes: bytes | None, task_id: str, progress: Progress) -> int:
    module = None
    if module_bytes is not None:
        fmt: pb.ModuleFormat = pb.WASM_MODULE
        if args.micropython:
            fmt = pb.MICROPYTHON_MPY if args.micropython.endswith(".mpy") else \
                pb.MICROPYTHON_SOURCE
        module = await fw.upload(module_bytes, fmt, name=Path(args.wasm or args.micropython).name)
        progress.note(f"uploaded {Path(args.wasm or args.micropython).name} "
                      f"({module.size} bytes, sha256 {module.hex[:16]}…)")
    progress.note(f"waiting for an offer with {_describe_constraints(constraints)}")
    agents: dict[int, str] = {}
    launched = False
    interrupted = False
    last_mismatch: dict[str, str] = {}
    offer_deadline = trio.current_time() + args.offer_timeout
    terminal: pb.TaskStatus | None = None

    async with trio.open_nursery() as nursery:
        async def on_sigint() -> None:
            nonlocal interrupted
            with trio.open_signal_receiver(signal.SIGINT) as signals:
                async for _ in signals:
                    if interrupted or not launched:
                        nursery.cancel_scope.cancel()
                        return
                    interrupted = True
                    progress.note(f"interrupted: killing task {task_id} (Ctrl-C again to quit "
                                  f"at once)")
                    try:
                        await fw.kill(task_id)
                    except FrameworkError as e:
                        progress.note(f"could not send the kill: {e}")

        if _can_catch_signals():
            nursery.start_soon(on_sigint)
        while terminal is None:
            ev = None
            with trio.move_on_at(offer_deadline if not launched else float("inf")):
                try:
                    ev = await fw.next_event()
                except trio.EndOfChannel:
                    raise FrameworkError("the master closed the framework") from None
            if ev is None:
                progress.note(f"no agent offered what the task needs within "
                              f"{args.offer_timeout:g} s")
                for agent, reason in last_mismatch.items():
                    progress.note(f"  {agent}: {reason}")
                nursery.cancel_scope.cancel()
                return EXIT_NO_OFFER
            if isinstance(ev, OffersEvent):
                for offer in ev.offers:
                    agents[offer.agent_id] = offer.agent_name
                    who = f"agent {offer.agent_id} {offer.agent_name}"
                    why = constraints.mismatch(offer)
                    if launched or why is not None:
                        if why is not None and last_mismatch.get(who) != why:
                            # At once, not only when --offer-timeout runs out: an agent that
                            # can never fit (a microcontroller and --mem 32) is plain to see.
                            progress.note(f"{who} does not fit: {why}")
                            last_mismatch[who] = why
                        await fw.decline(offer.offer_id, refuse_seconds=1.0)
                        continue
                    spec = build_spec(args, module, constraints.resources(offer))
                    try:
                        await fw.launch(offer, task_id, spec)
                    except CallError as e:
                        progress.note(f"launch on {who} refused: {e}; waiting for another offer")
                        continue
                    launched = True
                    progress.note(f"launched task {task_id} on {who}")
            elif isinstance(ev, UpdateEvent) and ev.task_id == task_id:
                progress.update(ev.status, agents)
                if ev.terminal:
                    terminal = ev.status
                    if args.docker and terminal.message:
                        # A container's output is its log (the tail the agent reports), as
                        # `docker run` would print it.
                        print(terminal.message.rstrip("\n"), file=progress.out, flush=True)
            elif isinstance(ev, OutputEvent) and ev.task_id == task_id:
                progress.output(ev)
            elif isinstance(ev, ConnectionLost):
                progress.note(f"connection lost ({ev.reason}); re-connecting")
            elif isinstance(ev, Subscribed) and ev.failover:
                progress.note("re-subscribed; reconciling")
        # Outputs published just before the end may trail the final status by a frame.
        with trio.move_on_after(0.2):
            async for late in fw.events():
                if isinstance(late, OutputEvent) and late.task_id == task_id:
                    progress.output(late)
        nursery.cancel_scope.cancel()
    if interrupted or terminal is None:
        return EXIT_INTERRUPTED
    return EXIT_FINISHED if terminal.state == pb.FINISHED else EXIT_TASK_FAILED


def _can_catch_signals() -> bool:
    import threading
    return threading.current_thread() is threading.main_thread()


def _describe_constraints(c: Constraints) -> str:
    parts = [f"cpus {c.cpus:g}", f"mem {c.mem_mb:g} MB"]
    if c.disk_mb:
        parts.append(f"disk {c.disk_mb:g} MB")
    if c.devices:
        parts.append("devices " + ",".join(c.devices))
    parts.append("executor " + fmt_executors(c.executors))
    if c.agent_name:
        parts.append(f"agent {c.agent_name}")
    for k, v in c.attributes.items():
        parts.append(f"{k}={v}")
    return ", ".join(parts)
