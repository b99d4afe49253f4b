"""One WASM task in its own process: wasm3 runs the module and implements the host ABI
(proto/wasm_abi.md, module "edgerm").

Why a process: pywasm3 holds the GIL and has no fuel, timeout or memory limit, so a runaway
loop or a memory blow-up would freeze or kill the agent. Here it hurts only this process, which
the agent kills on timeout or kill; rlimits bound what it can take, and the lifeline (below)
makes it die with the agent process (a task cannot be re-adopted after an agent restart).

Why a lifeline and not PR_SET_PDEATHSIG: the "parent" of PDEATHSIG is the *thread* that forked
the child, and the agent forks from Trio's worker threads, which exit after 10 s idle — that
killed tasks ~10 s after their launch. A pipe's write end belongs to the process: the kernel
closes it when the agent process ends, however it ends, and not before. The child asks for
SIGKILL (F_SETSIG) when that happens (O_ASYNC), so it dies even while wasm3 runs a loop and
holds the GIL: no thread, no polling.

Protocol with the agent (`edgerm_agent.executors.wasm`):
- argv[1]: the number of an inherited fd, the read end of this child's lifeline pipe; the agent
  holds the only write end and never writes. The agent starts one spare child ahead of need; it
  imports wasm3 and waits on stdin, so a launch costs no interpreter start-up.
- stdin, first line: the task as JSON (`module`, `entry`, `args`, `env`, `sensors`, `mem_pages`,
  `stack_bytes`, `epoch`, `as_slack_mb`); EOF instead: exit quietly. Afterwards one byte per
  publish the agent has queued (credit), so that a slow link makes `publish` return
  EDGERM_E_AGAIN instead of growing a buffer.
- stdout: frames `type (1 byte) | length (4 bytes, big-endian) | payload`:
  `R` instantiated and running · `L` a log line · `P` published data ·
  `X` finished, JSON {"code": exit code, "at_mem_cap": bool} ·
  `T` trapped, the trap text ·
  `E` could not start, JSON {"reason": "LAUNCH_FAILED"|"MEMORY_LIMIT", "message": ...}.
Nothing else is written to fd 1: the frames go to a private duplicate and fd 1 points at
stderr, which the agent keeps a short tail of for diagnostics.

This module imports nothing from EdgeRM beyond the small sensor and module readers (no
protobuf, no Trio), to keep the spare child small.
"""

from __future__ import annotations

import fcntl
import json
import os
import resource
import select
import signal
import struct
import sys
import time
from pathlib import Path
from typing import Any

from edgerm_agent.executors.wasm_module import (
    PAGE,
    BadModule,
    cap_memory_untrusted,
    parse_module_untrusted,
)
from edgerm_agent.sensors import SensorError, SensorSpec, read_reading, read_sensor

OK, E_NOTFOUND, E_DENIED, E_IO, E_TOOBIG, E_AGAIN = 0, -1, -2, -3, -4, -5
MAX_PUBLISH = 1024
# Publishes the agent has not yet queued; past this the task gets E_AGAIN.
PUBLISH_WINDOW = 16
# Longest single log line forwarded; the agent keeps only a 4 KiB tail anyway.
MAX_LOG_LINE = 4096

IMPORTS = {
    "log": "v(ii)",
    "now_ms": "I()",
    "sleep_ms": "v(i)",
    "read_sensor": "i(iii)",
    "publish": "i(ii)",
    "arg_count": "i()",
    "arg_get": "i(iii)",
    "env_get": "i(iiii)",
}
ENTRY_DEFAULTS = ("run", "_start", "main")


class Trap(Exception):
    """Raised inside a host function: wasm3 turns it into a trap of the task."""


class Host:
    """The `edgerm` import module for one task."""

    def __init__(self, task: dict[str, Any], out: int, credits: int) -> None:
        self.out = out
        self.credits_fd = credits
        self.args = [a.encode() for a in task.get("args", [])]
        self.env = {k.encode(): v.encode() for k, v in task.get("env", {}).items()}
        self.sensors = {s["name"]: SensorSpec.from_json(s) for s in task.get("sensors", [])}
        self.known = set(task.get("known", [])) | set(self.sensors)
        readings = task.get("readings") or ""
        self.readings = Path(readings) if readings else None
        self.epoch = float(task.get("epoch", time.monotonic()))
        self.in_flight = 0
        self.runtime: Any = None

    # -- plumbing ------------------------------------------------------------------------------

    def frame(self, kind: bytes, payload: bytes = b"") -> None:
        data = kind + struct.pack(">I", len(payload)) + payload
        view = memoryview(data)
        while view:
            n = os.write(self.out, view)
            view = view[n:]

    def _mem(self) -> memoryview:
        return self.runtime.get_memory(0)

    def _span(self, ptr: int, length: int) -> tuple[memoryview, int, int]:
        ptr &= 0xFFFFFFFF
        length &= 0xFFFFFFFF
        mem = self._mem()
        if ptr + length > len(mem):
            raise Trap(f"pointer out of bounds: {ptr}+{length} > {len(mem)}")
        return mem, ptr, length

    def _read(self, ptr: int, length: int) -> bytes:
        mem, p, n = self._span(ptr, length)
        return bytes(mem[p:p + n])

    def _copy_out(self, value: bytes, buf: int, cap: int) -> int:
        mem, p, n = self._span(buf, cap)
        k = min(n, len(value))
        mem[p:p + k] = value[:k]
        return len(value)

    # -- the ABI -------------------------------------------------------------------------------

    def log(self, ptr: int, length: int) -> None:
        self.frame(b"L", self._read(ptr, min(length & 0xFFFFFFFF, MAX_LOG_LINE)))
        if length & 0xFFFFFFFF > MAX_LOG_LINE:
            self._span(ptr, length)  # still trap on a bad pointer

    def now_ms(self) -> int:
        return int((time.monotonic() - self.epoch) * 1000)

    def sleep_ms(self, ms: int) -> None:
        time.sleep((ms & 0xFFFFFFFF) / 1000.0)

    def read_sensor(self, name_ptr: int, name_len: int, out: int) -> int:
        name = self._read(name_ptr, name_len)
        mem, p, _ = self._span(out, 8)
        try:
            text = name.decode()
        except UnicodeDecodeError:
            return E_NOTFOUND
        spec = self.sensors.get(text)
        try:
            if spec is not None:
                value = read_sensor(spec, time.monotonic() - self.epoch)
            elif text in self.known:
                return E_DENIED
            elif self.readings is not None and "/" in text:
                # On a gateway: "<device>/<topic>", a device's latest published reading.
                reading = read_reading(self.readings, text)
                if reading is None:
                    return E_NOTFOUND
                value = reading
            else:
                return E_NOTFOUND
        except SensorError:
            return E_IO
        mem[p:p + 8] = struct.pack("<d", value)
        return OK

    def publish(self, ptr: int, length: int) -> int:
        if length & 0xFFFFFFFF > MAX_PUBLISH:
            self._span(ptr, length)
            return E_TOOBIG
        data = self._read(ptr, length)
        self._take_credits()
        if self.in_flight >= PUBLISH_WINDOW:
            return E_AGAIN
        self.in_flight += 1
        self.frame(b"P", data)
        return OK

    def _take_credits(self) -> None:
        while self.in_flight and select.select([self.credits_fd], [], [], 0)[0]:
            got = os.read(self.credits_fd, 4096)
            if not got:
                break
            self.in_flight = max(0, self.in_flight - len(got))

    def arg_count(self) -> int:
        return len(self.args)

    def arg_get(self, i: int, buf: int, cap: int) -> int:
        if not 0 <= i < len(self.args):
            self._span(buf, cap)
            return E_NOTFOUND
        return self._copy_out(self.args[i], buf, cap)

    def env_get(self, name_ptr: int, name_len: int, buf: int, cap: int) -> int:
        name = self._read(name_ptr, name_len)
        value = self.env.get(name)
        if value is None:
            self._span(buf, cap)
            return E_NOTFOUND
        return self._copy_out(value, buf, cap)


def _die_with_agent(lifeline: int) -> None:
    """Have the kernel SIGKILL this process once the lifeline's write end is closed, which
    happens when the agent process ends (the agent closes it itself only after reaping us).

    Nothing is ever written to the pipe, so "readable" means end of file. The signal is sent on
    the close itself; the check afterwards covers a close that came before O_ASYNC was set.
    """
    fcntl.fcntl(lifeline, fcntl.F_SETOWN, os.getpid())
    fcntl.fcntl(lifeline, fcntl.F_SETSIG, signal.SIGKILL)
    flags = fcntl.fcntl(lifeline, fcntl.F_GETFL)
    fcntl.fcntl(lifeline, fcntl.F_SETFL, flags | os.O_ASYNC | os.O_NONBLOCK)
    if select.select([lifeline], [], [], 0)[0]:
        os._exit(1)


def _vm_size_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def main() -> int:
    out = os.dup(1)
    os.dup2(2, 1)  # stray prints from libraries land in the stderr tail, not in the frames
    _die_with_agent(int(sys.argv[1]))
    import wasm3  # noqa: F401 - warm: the agent keeps one spare child waiting here

    line = sys.stdin.buffer.readline()
    if not line:
        return 0  # a spare the agent no longer needs
    task = json.loads(line)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    host = Host(task, out, sys.stdin.fileno())

    def fail(reason: str, message: str) -> int:
        host.frame(b"E", json.dumps({"reason": reason, "message": message}).encode())
        return 0

    try:
        with open(task["module"], "rb") as f:
            data = f.read()
        info = parse_module_untrusted(data)
    except (OSError, BadModule) as e:
        return fail("LAUNCH_FAILED", f"bad module: {e}")
    mem_pages = int(task["mem_pages"])
    if info.mem_min is None or info.exports.get("memory") != "memory":
        return fail("LAUNCH_FAILED", "the module must define and export its memory as 'memory'")
    if info.mem_min > mem_pages:
        return fail("MEMORY_LIMIT", f"initial memory {info.mem_min * PAGE // 1024} KiB exceeds "
                                    f"the task's {mem_pages * PAGE // 1024} KiB")
    for mod, name, kind in info.imports:
        if mod != "edgerm" or name not in IMPORTS or kind != "func":
            return fail("LAUNCH_FAILED", f"missing import {mod}.{name} ({kind}): this agent "
                                         "implements EdgeRM WASM ABI v1")
    entry = task.get("entry") or next((e for e in ENTRY_DEFAULTS
                                       if info.exports.get(e) == "func"), "")
    if info.exports.get(entry) != "func":
        return fail("LAUNCH_FAILED", f"no entry function {entry or '/'.join(ENTRY_DEFAULTS)!r}")
    declared_max = info.mem_max if info.mem_max is not None else 65536
    capped = mem_pages < declared_max
    data = cap_memory_untrusted(data, info, mem_pages)

    try:
        env = wasm3.Environment()
        rt = env.new_runtime(int(task.get("stack_bytes", 64 * 1024)))
        mod = env.parse_module(data)
        rt.load(mod)
        host.runtime = rt
        for _, name, _kind in info.imports:
            mod.link_function("edgerm", name, IMPORTS[name], getattr(host, name))
        func = rt.find_function(entry)
    except RuntimeError as e:
        return fail("LAUNCH_FAILED", f"instantiation failed: {e}")
    # Address space: what is mapped now, the task's memory (wasm3 may briefly hold the old and
    # the new block while growing) and room for the interpreter.
    as_limit = _vm_size_bytes() + 2 * mem_pages * PAGE + int(task.get("as_slack_mb", 64)) * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (as_limit, as_limit))
    host.frame(b"R")
    try:
        code = func()
    except Trap as e:
        host.frame(b"T", f"[trap] {e}".encode())
        return 0
    except MemoryError:
        host.frame(b"E", json.dumps({"reason": "MEMORY_LIMIT", "message":
                                     "out of memory"}).encode())
        return 0
    except RuntimeError as e:
        text = str(e).split("====")[0].strip()
        host.frame(b"T", text.encode()[:MAX_LOG_LINE])
        return 0
    at_cap = capped and len(rt.get_memory(0)) >= mem_pages * PAGE
    code = 0 if code is None else int(code)
    if code >= 2**31:
        code -= 2**32
    host.frame(b"X", json.dumps({"code": code, "at_mem_cap": at_cap}).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
