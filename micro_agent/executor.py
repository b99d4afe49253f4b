"""The `micropython` executor: fetch a task's module by hash, run it as an asyncio task.

A task is MicroPython source or .mpy, content-addressed: GET `m/<sha256 hex>` with Block2, the
hash checked while the blocks stream into the cache directory (nothing of it is held in RAM).
The module is imported from the cache under a fresh name; before its `async def main()` runs,
its globals get the host API of the WASM ABI and nothing else the agent has:
    read_sensor(name) -> float   (OSError -1 unknown, -2 not among the task's devices, -3 I/O)
    set_actuator(name, value) -> 0 | -2 not among the task's devices | -1 not an actuator |
                                 -6 out of range | -3 I/O   (the WASM ABI v2's codes)
    publish(data, topic="") -> 0 | -4 too big | -5 queue full
    await sleep_ms(ms)   log(text)   now_ms()   args (list of str)   env (dict)
main() returning None or 0 -> FINISHED; another int -> FAILED EXITED_NONZERO; an exception ->
FAILED TRAPPED with its text; MemoryError -> FAILED MEMORY_LIMIT; timeout_s -> FAILED TIMEOUT;
kill() -> KILLED. The agent survives all of these. (asyncio cannot pre-empt: a task that never
awaits holds the agent until it does.)
"""

import asyncio
import gc
import hashlib
import os
import sys
from binascii import hexlify
from micropython import const
from time import ticks_ms, ticks_diff

import coap
import sensors

_MP_SHA256 = const(1)  # pb: MicroPythonTask.sha256
_MP_SIZE = const(2)  # pb: MicroPythonTask.size
_MP_ARGS = const(4)  # pb: MicroPythonTask.args
_MP_ENV = const(5)  # pb: MicroPythonTask.env
_MP_TIMEOUT_S = const(6)  # pb: MicroPythonTask.timeout_s
_ENV_NAME = const(1)  # pb: EnvVar.name
_ENV_VALUE = const(2)  # pb: EnvVar.value

_RUNNING = const(3)  # pb: TaskState.RUNNING
_FINISHED = const(5)  # pb: TaskState.FINISHED
_FAILED = const(6)  # pb: TaskState.FAILED
_KILLED = const(7)  # pb: TaskState.KILLED
_ERROR = const(8)  # pb: TaskState.ERROR
_EXITED_NONZERO = const(1)  # pb: Reason.EXITED_NONZERO
_MEMORY_LIMIT = const(2)  # pb: Reason.MEMORY_LIMIT
_KILL_REQUESTED = const(3)  # pb: Reason.KILL_REQUESTED
_MODULE_UNAVAILABLE = const(8)  # pb: Reason.MODULE_UNAVAILABLE
_MODULE_HASH_MISMATCH = const(9)  # pb: Reason.MODULE_HASH_MISMATCH
_TIMEOUT = const(10)  # pb: Reason.TIMEOUT
_TRAPPED = const(11)  # pb: Reason.TRAPPED
_INVALID_TASK = const(12)  # pb: Reason.INVALID_TASK
_RESOURCES_UNAVAILABLE = const(18)  # pb: Reason.RESOURCES_UNAVAILABLE
_MSG_MAX = const(200)
_CONTENT = const(0x45)  # CoAP 2.05

# The module's state, in one list indexed by the _X_* consts rather than nine globals (each
# global name is a qstr and a module dict slot on the heap; a const is folded).
_X_RUN = const(0)  # task number -> asyncio.Task
_X_SILENT = const(1)  # asyncio Tasks cancelled without a report: their agent identity is gone
_X_REPORT = const(2)  # report(task, state, reason, message, exit_code)
_X_PUBLISH = const(3)  # publish(task, data, topic) -> 0 | -4 | -5
_X_CACHE = const(4)
_X_SZX = const(5)
_X_MAX_MODULE = const(6)
_X_T0 = const(7)
# Import names being downloaded. Tasks launched together with one module must not write the
# same ".part" file at once (they would truncate and rename it under each other): the first
# downloads, the others wait for it. (A list and polling, not asyncio.Event: importing
# asyncio's event module costs 1.2 KB of heap for good.)
_X_FETCHING = const(8)
_x = [{}, set(), None, None, "cache", 5, 16384, ticks_ms(), []]


def setup(report, publish, cache, block_szx, max_module):
    _x[_X_REPORT:_X_T0] = [report, publish, cache, block_szx, max_module]
    try:
        os.mkdir(cache)
    except OSError:
        pass  # already there
    if cache not in sys.path:
        sys.path.append(cache)


def clip(s):
    """`s` cut to the last _MSG_MAX bytes of UTF-8 (the tail is what explains a failure)."""
    b = s.encode()
    if len(b) <= _MSG_MAX:
        return s
    b = b[-_MSG_MAX:]
    while b and b[0] & 0xC0 == 0x80:  # do not start inside a multi-byte character
        b = b[1:]
    return str(b, "utf-8")


class _Refused(Exception):
    pass  # args: (state, reason, message)


async def fetch(sha256, length):
    """The import name of the module with hash `sha256` in the cache, downloading it if needed.
    Raises _Refused(ERROR, reason, text) when it cannot be had. Source or .mpy is told by the
    bytes (an .mpy starts with "M" and a small version byte), so a prefetch needs no format."""
    name = "t" + str(hexlify(sha256), "ascii")
    while name in _x[_X_FETCHING]:  # another task is downloading it: wait, then use what it got
        await asyncio.sleep_ms(50)
    for ext in (".mpy", ".py"):
        try:
            os.stat(_x[_X_CACHE] + "/" + name + ext)
            return name  # cached
        except OSError:
            pass
    if length > _x[_X_MAX_MODULE]:
        raise _Refused(_ERROR, _RESOURCES_UNAVAILABLE, "module of %d bytes over %d" % (length, _x[_X_MAX_MODULE]))
    # What `write` needs, in one list it closes over (each captured name would be a cell on
    # the heap for the whole download): bytes so far, the first two of them (as an int: no
    # bytes object), the hash, the file.
    got = [0, 0, hashlib.sha256(), open(_x[_X_CACHE] + "/" + name + ".part", "wb")]
    _x[_X_FETCHING].append(name)
    try:
        def write(buf):
            if not got[0] and len(buf) > 1:
                got[1] = buf[0] << 8 | buf[1]
            got[0] += len(buf)
            if got[0] > _x[_X_MAX_MODULE]:
                raise _Refused(_ERROR, _RESOURCES_UNAVAILABLE, "module over %d bytes" % _x[_X_MAX_MODULE])
            got[2].update(buf)
            got[3].write(buf)
        # the hex part of the name as a view, not a 64-character copy held by get_blocks
        code = await coap.get_blocks("m", memoryview(name)[1:], _x[_X_SZX], write)
    finally:  # (not `with open(...)`: its exit handler is more slots of this frame)
        got[3].close()
        _x[_X_FETCHING].remove(name)
    tmp = _x[_X_CACHE] + "/" + name  # built again, not held through the download
    if code != _CONTENT or got[2].digest() != sha256:
        os.remove(tmp + ".part")
        if code != _CONTENT:
            raise _Refused(_ERROR, _MODULE_UNAVAILABLE, "module: no usable answer" if code == 0 else "module: code %d.%02d" % (code >> 5, code & 31))
        raise _Refused(_ERROR, _MODULE_HASH_MISMATCH, "module hash mismatch")
    mpy = got[1] >> 8 == 77 and got[1] & 0xFF < 32
    os.rename(tmp + ".part", tmp + (".mpy" if mpy else ".py"))
    return name


def _api(task, data, items, buf):
    # read_sensor(name) and set_actuator(name, value) are one closure: every closure is two
    # heap objects per task, and the heap budget has no room for them (bench/README.md).
    def read_sensor(name, value=None):
        if name not in items:
            if value is None:
                raise OSError(-2)
            return -2
        return sensors.read(name, value)

    def publish(data, topic=""):
        return _x[_X_PUBLISH](task, data if type(data) is not str else data.encode(), topic)

    def log(text):
        buf[0] = clip(buf[0] + str(text) + "\n")

    def now_ms():
        return ticks_diff(ticks_ms(), _x[_X_T0])

    # args: the decoded list itself, not a copy (nothing else reads it once the task runs;
    # the copy was 64 B of heap per task, what set_actuator costs).
    env = {}
    for e in data.get(_MP_ENV, ()):
        env[e.get(_ENV_NAME, "")] = e.get(_ENV_VALUE, "")
    return {"read_sensor": read_sensor, "set_actuator": read_sensor, "publish": publish, "log": log, "now_ms": now_ms,
            "sleep_ms": asyncio.sleep_ms, "args": data.get(_MP_ARGS, ()), "env": env}


def _say(task, state, reason, message, code):
    if asyncio.current_task() not in _x[_X_SILENT]:
        _x[_X_REPORT](task, state, reason, message, code)


async def _main(task, data, items):
    tail = [""]
    try:
        # (Few locals, each reused: every one is a slot of this frame for the task's whole run.)
        name = data.get(_MP_SHA256, b"")
        if type(name) is not bytes or len(name) != 32:
            raise _Refused(_ERROR, _INVALID_TASK, "micropython.sha256 must be 32 bytes")
        name = await fetch(name, data.get(_MP_SIZE, 0))
        # A fresh module object per run, so two runs of one module keep separate globals.
        sys.modules.pop(name, None)
        try:  # an exception ends the task as any other of its own (TRAPPED, MEMORY_LIMIT)
            g = __import__(name).__dict__
        finally:
            sys.modules.pop(name, None)
        g.update(_api(task, data, items, tail))
        rc = g.get("main")
        if rc is None:
            raise _Refused(_FAILED, _TRAPPED, "the module has no async def main()")
        t = data.get(_MP_TIMEOUT_S, 0)
        # What only the start needed must not outlive it in this frame, which lives as long as
        # the task: the launch dict (the API keeps its args), the 65-character name.
        data = items = name = g = None
        _say(task, _RUNNING, 0, "", 0)
        rc = await (asyncio.wait_for_ms(rc(), t * 1000) if t else rc())  # main()
        if rc is None or rc == 0:
            _say(task, _FINISHED, 0, tail[0], 0)
        else:
            _say(task, _FAILED, _EXITED_NONZERO, tail[0], rc if type(rc) is int else 1)
    except _Refused as e:
        _say(task, *e.args, 0)  # (state, reason, text: each text well under _MSG_MAX)
    except asyncio.CancelledError:
        _say(task, _KILLED, _KILL_REQUESTED, tail[0], 0)
    except asyncio.TimeoutError:
        _say(task, _FAILED, _TIMEOUT, tail[0], 0)
    except MemoryError:
        tail[0] = ""
        gc.collect()
        _say(task, _FAILED, _MEMORY_LIMIT, "MemoryError", 0)
    except Exception as e:
        _say(task, _FAILED, _TRAPPED, clip("%s: %s" % (type(e).__name__, e)), 0)
    finally:
        t = asyncio.current_task()
        if _x[_X_RUN].get(task) is t:  # a relaunch under a new identity may have taken the number
            del _x[_X_RUN][task]
        _x[_X_SILENT].discard(t)
        gc.collect()


def launch(task, data, items):
    """Start task `task` (a MicroPythonTask dict); `items` the sensor names it holds."""
    _x[_X_RUN][task] = asyncio.create_task(_main(task, data, items))


def prefetch(sha256, length):
    async def run():
        try:
            await fetch(sha256, length)
        except Exception as e:
            print("edgerm: prefetch failed:", e)
    asyncio.create_task(run())


def kill(task, silent=False):
    """Cancel a running task; False when it is not running here. `silent`: it ends without a
    report (the agent registered afresh and the task belongs to no one)."""
    t = _x[_X_RUN].get(task)
    if t is None:
        return False
    if silent:
        _x[_X_SILENT].add(t)
    t.cancel()
    return True
