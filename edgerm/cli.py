"""The `edgerm` command: launch one task and follow it (`edgerm run`), and read the cluster's
state (`edgerm agents|frameworks|tasks|offers`).

`edgerm run` is a one-shot framework in the manner of mesos-execute: it subscribes, uploads the
module, waits for an offer that fits, launches one task, prints every state transition with the
master's timestamp (on stderr) and the task's published output (on stdout), and exits with 0
when the task FINISHED and non-zero otherwise (see EXIT_* below). Ctrl-C kills the task first.

The listing commands read the master's read-only state resource (WebSocket `/state`: the first
frame is `StateRequest{operator token}`, the answer one `ClusterState`).

Where the master is and which tokens to use comes from, in order: flags, the environment
(`EDGERM_MASTER`, `EDGERM_TOKEN`, `EDGERM_OPERATOR_TOKEN`), and the state file a local cluster
(`python -m edgerm.cluster`) writes: `$EDGERM_HOME/cluster.json` when EDGERM_HOME is set, else
`./.edgerm/cluster.json` (where the cluster keeps it by default), else `~/.edgerm/cluster.json`.

Errors are one line on stderr saying what went wrong and what to do, never a traceback: a master
address that is not ws://, a missing token or a module over the 1 MiB limit exit with
EXIT_USAGE before anything is sent; an unreachable master (with the reason: refused, unknown
host, not a WebSocket port) or a refusal by it with EXIT_MASTER.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import struct
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import trio
import trio_websocket
from google.protobuf import json_format

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
    describe_connection_error,
    docker_task,
    endpoint_url,
    micropython_task,
    module_too_large,
    reason_name,
    state_name,
    wasm_task,
)
from edgerm.wire import DecodeError, decode, encode, pb

EXIT_FINISHED = 0
EXIT_TASK_FAILED = 1        # FAILED, KILLED, ERROR, LOST, DROPPED
EXIT_USAGE = 2              # argparse's own code for bad arguments
EXIT_NO_OFFER = 3           # no agent offered what the task needs within --offer-timeout
EXIT_MASTER = 4             # master unreachable, or it refused us
EXIT_INTERRUPTED = 130      # the shell convention for SIGINT

DEFAULT_MASTER = "ws://127.0.0.1:5690"

# The master's answer to a state request may describe a large cluster.
STATE_MAX_BYTES = 16 * 1024 * 1024


# ---------------------------------------------------------------------------------------------
# Where the master is


def state_file() -> Path:
    """The file a running local cluster describes itself in (`edgerm.cluster` writes it).

    `$EDGERM_HOME/cluster.json` when EDGERM_HOME is set. Otherwise `./.edgerm/cluster.json`,
    the cluster's default data directory, when there is one and it is ours: one left in a
    shared directory by another user is ignored, as it could send our token to their master.
    Otherwise `~/.edgerm/cluster.json`."""
    home = os.environ.get("EDGERM_HOME")
    if home:
        return Path(home) / "cluster.json"
    local = Path(".edgerm") / "cluster.json"
    try:
        if local.stat().st_uid == os.getuid():
            return local
    except OSError:
        pass
    return Path.home() / ".edgerm" / "cluster.json"


@dataclass(frozen=True)
class Target:
    master: str
    framework_token: str
    operator_token: str


class TargetError(Exception):
    """The master address or a token is missing or malformed: one line for the user."""


def resolve_target(args: argparse.Namespace, need: str = "") -> Target:
    """Where the master is and the tokens. `need` ("framework" or "operator") names the token
    the command cannot work without. Raises TargetError for a malformed address or a missing
    token: saying "no token given" beats the master's "wrong token"."""
    local: dict[str, Any] = {}
    try:
        local = json.loads(state_file().read_text())
    except (OSError, ValueError):
        pass
    master = (args.master or os.environ.get("EDGERM_MASTER") or local.get("master")
              or DEFAULT_MASTER)
    token = (args.token or os.environ.get("EDGERM_TOKEN") or local.get("framework_token") or "")
    operator = (args.operator_token or os.environ.get("EDGERM_OPERATOR_TOKEN")
                or local.get("operator_token") or "")
    try:
        endpoint_url(master, "")
    except ValueError as e:
        raise TargetError(str(e)) from None
    if need == "framework" and not token:
        raise TargetError("no framework token given: pass --token or set EDGERM_TOKEN (the "
                          "master's framework_tokens; a local cluster's is used by itself)")
    if need == "operator" and not operator:
        raise TargetError("no operator token given: pass --operator-token or set "
                          "EDGERM_OPERATOR_TOKEN (the master's operator_tokens; a local "
                          "cluster's is used by itself)")
    return Target(master, token, operator)


# ---------------------------------------------------------------------------------------------
# The state resource


class StateError(Exception):
    pass


async def fetch_state(master: str, operator_token: str, timeout_s: float = 10.0) -> pb.ClusterState:
    """The master's `ClusterState` over WebSocket `/state`.

    Error handling: an unreachable master, a refusal (the master answers an `Error`) or an
    undecodable answer raise `StateError` with the reason."""
    url = endpoint_url(master, "/state")
    try:
        with trio.fail_after(timeout_s):
            async with trio_websocket.open_websocket_url(
                    url, max_message_size=STATE_MAX_BYTES, connect_timeout=timeout_s,
                    disconnect_timeout=1) as ws:
                await ws.send_message(encode(pb.StateRequest(token=operator_token)))
                data = await ws.get_message()
    except trio.TooSlowError:
        raise StateError(f"no answer from {url} within {timeout_s:g} s") from None
    except (OSError, trio_websocket.HandshakeError) as e:
        raise StateError(f"cannot reach {url}: {describe_connection_error(e)}") from None
    except trio_websocket.ConnectionClosed as e:
        raise StateError(f"{url}: {describe_connection_error(e)}") from None
    raw = data if isinstance(data, bytes) else data.encode()
    try:
        return decode(pb.ClusterState, raw, _state_limits())
    except DecodeError as e:
        problem = e
    # A refusal: the master sends an `Error` (bare, or inside a FrameworkEvent).
    errors: list[pb.Error] = []
    try:
        errors.append(decode(pb.Error, raw))
    except DecodeError:
        pass
    try:
        errors.append(decode(pb.FrameworkEvent, raw).error)
    except DecodeError:
        pass
    for error in errors:
        if error.code:
            raise StateError(_error_text(error.code, error.message))
    raise StateError(f"undecodable answer from {url}: {problem}")


def _state_limits() -> Any:
    from edgerm.wire import Limits
    return Limits(max_input=STATE_MAX_BYTES, max_items=1 << 20)


def _error_text(code: int, message: str) -> str:
    try:
        name = pb.ErrorCode.Name(code)
    except ValueError:
        name = str(code)
    return f"{name}: {message}"


# ---------------------------------------------------------------------------------------------
# Tables


def fmt_resources(res: pb.Resources) -> str:
    parts = [f"cpus {res.cpus:g}", f"mem {res.mem_mb:g} MB"]
    if res.disk_mb:
        parts.append(f"disk {res.disk_mb:g} MB")
    if res.ports:
        parts.append("ports " + ",".join(f"{r.begin}-{r.end}" for r in res.ports))
    return ", ".join(parts)


def fmt_devices(devices: Sequence[pb.Device]) -> str:
    return ",".join(d.name for d in devices) or "-"


def fmt_executors(executors: Sequence[int]) -> str:
    return ",".join(_enum_name(pb.Executor, e) for e in executors) or "-"


def fmt_attributes(attributes: Sequence[pb.Attribute]) -> str:
    out = []
    for a in attributes:
        kind = a.WhichOneof("value")
        if kind == "text":
            out.append(f"{a.name}={a.text}")
        elif kind == "scalar":
            out.append(f"{a.name}={a.scalar:g}")
        elif kind == "set":
            out.append(f"{a.name}={{{','.join(a.set.items)}}}")
    return " ".join(out) or "-"


def _enum_name(enum: Any, value: int) -> str:
    try:
        return str(enum.Name(value))
    except ValueError:
        return str(value)


def _ago(now: float, then: float) -> str:
    if not then:
        return "-"
    return f"{max(0.0, now - then):.1f}s ago"


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell; the last column is not padded."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in [list(headers), *rows]:
        cells = [c.ljust(widths[i]) if i < len(row) - 1 else c for i, c in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def agents_table(state: pb.ClusterState) -> str:
    rows = [[str(a.agent_id), a.name, a.state or "-", a.transport or "-",
             f"{a.used.cpus:g}/{a.total.cpus:g}", f"{a.used.mem_mb:g}/{a.total.mem_mb:g}",
             fmt_devices(a.total.devices), fmt_executors(a.executors),
             _ago(state.now, a.last_seen), fmt_attributes(a.attributes)]
            for a in state.agents]
    return render_table(["ID", "NAME", "STATE", "LINK", "CPUS", "MEM MB", "DEVICES",
                         "EXECUTORS", "SEEN", "ATTRIBUTES"], rows)


def frameworks_table(state: pb.ClusterState) -> str:
    rows = [[f.framework_id, f.name, f.role or "-", "yes" if f.connected else "no",
             str(f.tasks), f"{f.weight:g}", f"{f.dominant_share:.3f}"]
            for f in state.frameworks]
    return render_table(["ID", "NAME", "ROLE", "CONNECTED", "TASKS", "WEIGHT", "SHARE"], rows)


def tasks_table(state: pb.ClusterState) -> str:
    rows = [[t.task_id, t.framework_id, str(t.agent_id), t.name or "-",
             _enum_name(pb.Executor, t.executor), state_name(t.state),
             reason_name(t.reason) if t.reason else "-", _one_line(t.message) or "-"]
            for t in state.tasks]
    return render_table(["TASK", "FRAMEWORK", "AGENT", "NAME", "EXECUTOR", "STATE", "REASON",
                         "MESSAGE"], rows)


def offers_table(state: pb.ClusterState) -> str:
    # The state resource describes each agent once, in `agents`; an offer there may carry only
    # its agent's id, so the name and executors come from that agent when the offer lacks them.
    agents = {a.agent_id: a for a in state.agents}
    rows = []
    for o in state.offers:
        agent = agents.get(o.agent_id)
        name = o.agent_name or (agent.name if agent is not None else "")
        executors = list(o.executors) or (list(agent.executors) if agent is not None else [])
        rows.append([o.offer_id, f"{o.agent_id} {name}".strip(), fmt_resources(o.resources),
                     fmt_devices(o.resources.devices), fmt_executors(executors),
                     f"{o.expires_in_s:.1f}s"])
    return render_table(["OFFER", "AGENT", "RESOURCES", "DEVICES", "EXECUTORS", "EXPIRES"], rows)


def _one_line(text: str, limit: int = 60) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


LISTINGS: dict[str, tuple[str, Callable[[pb.ClusterState], str]]] = {
    "agents": ("agents", agents_table),
    "frameworks": ("frameworks", frameworks_table),
    "tasks": ("tasks", tasks_table),
    "offers": ("offers", offers_table),
}


async def list_command(args: argparse.Namespace, out: TextIO) -> int:
    try:
        target = resolve_target(args, need="operator")
    except TargetError as e:
        print(f"edgerm: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        state = await fetch_state(target.master, target.operator_token)
    except StateError as e:
        print(f"edgerm: {e}", file=sys.stderr)
        return EXIT_MASTER
    field, table = LISTINGS[args.command]
    if args.json:
        items = [json_format.MessageToDict(m, preserving_proto_field_name=True)
                 for m in getattr(state, field)]
        print(json.dumps(items, indent=2, sort_keys=True), file=out)
    else:
        print(table(state), file=out)
    return 0


# ---------------------------------------------------------------------------------------------
# edgerm run


def parse_env(items: Sequence[str]) -> dict[str, str]:
    env = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--env {item!r}: expected NAME=VALUE")
        env[name] = value
    return env


def parse_attributes(items: Sequence[str]) -> dict[str, str | float]:
    attrs: dict[str, str | float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--attribute {item!r}: expected NAME=VALUE")
        attrs[name] = value
    return attrs


def format_output(data: bytes, how: str = "auto") -> str:
    """Published bytes for a terminal. `text`: UTF-8; `hex`; `f64`: a little-endian double
    (what the example sampler publishes); `auto`: 8 bytes holding a double of everyday size
    (or any 8 bytes that are not printable text) as an f64, other printable UTF-8 as text, the
    rest as hex.

    The size test comes first because a double's six low bytes are noise that is printable
    UTF-8 often enough (21.3 can be the bytes of "ֱP#k$5@"); the two high bytes of an everyday
    double are "?", "@" or "A" followed by little else, so 8-character text is rarely taken
    for a number. Pass `--output` when the task's format is known."""
    if how == "hex":
        return data.hex()
    if how == "f64" or (how == "auto" and len(data) == 8
                        and (_everyday_double(data) or not _printable(data))):
        if len(data) == 8:
            return f"{struct.unpack('<d', data)[0]:g}"
        return data.hex()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return data.hex()
    if how == "auto" and not _printable(data):
        return data.hex()
    return text.rstrip("\n")


def _everyday_double(data: bytes) -> bool:
    value = abs(struct.unpack("<d", data)[0])
    return value == 0.0 or 1e-6 <= value < 1e9


def _printable(data: bytes) -> bool:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c in "\t\r\n" for c in text)


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
            parts.append(f"- {_one_line(status.message, 200)}")
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
        async with Framework.connect(target.master, name=args.framework_name,
                                     token=target.framework_token,
                                     failover_timeout_s=args.failover_timeout,
                                     connect_timeout_s=args.connect_timeout) as fw:
            progress.note(f"subscribed to {target.master} as framework {fw.framework_id}")
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


# ---------------------------------------------------------------------------------------------
# Argument parsing


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--master", help=f"master address (env EDGERM_MASTER; default: the local "
                                         f"cluster's, else {DEFAULT_MASTER})")
    parser.add_argument("--token", help="framework token (env EDGERM_TOKEN)")
    parser.add_argument("--operator-token", help="operator token for listings "
                                                 "(env EDGERM_OPERATOR_TOKEN)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgerm", description="Launch a task on an EdgeRM cluster, or list its state.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="launch one WASM, Docker or MicroPython task and follow it",
                         description="Launch one task on a matching agent, show its progress and "
                                     "output, exit 0 when it FINISHED. Example: edgerm run --wasm "
                                     "task.wasm --device temp -- or: edgerm run --docker busybox "
                                     "-- echo hello")
    _common(run)
    kind = run.add_mutually_exclusive_group(required=True)
    kind.add_argument("--wasm", metavar="FILE", help="a WASM module (proto/wasm_abi.md)")
    kind.add_argument("--docker", metavar="IMAGE", help="a Docker image; the command after --")
    kind.add_argument("--micropython", metavar="FILE", help="MicroPython source or .mpy")
    run.add_argument("docker_command", nargs="*", metavar="CMD",
                     help="the Docker command, after --")
    run.add_argument("--arg", action="append", default=[], help="task argument (repeatable)")
    run.add_argument("--env", action="append", default=[], metavar="K=V",
                     help="environment variable (repeatable)")
    run.add_argument("--device", action="append", default=[],
                     help="a sensor/device the task needs, e.g. temp (repeatable)")
    run.add_argument("--cpus", type=float, default=0.1)
    run.add_argument("--mem", type=float, default=None,
                     help=f"memory in MB (default: for WASM the module's initial memory, one "
                          f"64 KiB page at least; Docker {DOCKER_DEFAULT_MEM_MB:g}; MicroPython "
                          f"{MICROPYTHON_DEFAULT_MEM_MB:g}, the agent's own heap)")
    run.add_argument("--disk", type=float, default=0.0, help="disk in MB")
    run.add_argument("--agent", help="agent name or shell pattern")
    run.add_argument("--attribute", action="append", default=[], metavar="K=V",
                     help="agent attribute to require (repeatable)")
    run.add_argument("--name", default="", help="task name")
    run.add_argument("--task-id", default="", help="task id (default: run-<random>)")
    run.add_argument("--entry", default="", help="WASM entry function")
    run.add_argument("--timeout", type=int, default=0,
                     help="task time limit in s, then it is killed, FAILED TIMEOUT (0: none)")
    run.add_argument("--offer-timeout", type=float, default=30.0,
                     help="give up when no offer fits within this many seconds")
    run.add_argument("--connect-timeout", type=float, default=10.0)
    run.add_argument("--failover-timeout", type=float, default=30.0,
                     help="how long the master keeps the task if this command loses its link")
    run.add_argument("--framework-name", default="edgerm-run")
    run.add_argument("--output", choices=["auto", "text", "hex", "f64"], default="auto",
                     help="how to print published data (auto: an f64 for 8 bytes holding a "
                          "number of everyday size, else text, else hex)")
    run.add_argument("-q", "--quiet", action="store_true", help="only output and failures")

    for name, (_, _table) in LISTINGS.items():
        p = sub.add_parser(name, help=f"list the cluster's {name}")
        _common(p)
        p.add_argument("--json", action="store_true", help="JSON instead of a table")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # The SDK logs connection changes; `edgerm run` reports them itself.
    logging.basicConfig(level=logging.ERROR, format="edgerm: %(message)s")
    logging.getLogger("edgerm.framework").setLevel(logging.CRITICAL)
    if args.command == "run" and args.docker_command and not args.docker:
        parser.error("a command after -- is only for --docker tasks")
    try:
        if args.command == "run":
            return trio.run(run_command, args, sys.stdout, sys.stderr)
        return trio.run(list_command, args, sys.stdout)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
