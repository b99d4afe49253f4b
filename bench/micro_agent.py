"""Benchmarks of the MicroPython agent under the unix port (JSON lines on stdout).

- micro_agent.peak_heap_live: the most heap in use (sampled every 5 ms right after a
  gc.collect()) while the agent registers, heartbeats and runs the sampler task, counting the
  interpreter's own start-up allocations; goal <= 24 KB.
- micro_agent.peak_heap_alloc: the same without collecting (live data plus garbage not yet
  collected); no goal, it shows how much slack the collector needs.
- micro_agent.heap_after_imports: the heap in use once the interpreter has loaded asyncio and
  the agent's .mpy modules (on the unix port bytecode lives in the heap; frozen into a board's
  firmware it would live in flash), and peak_heap_live_beyond_imports, what the agent's data
  and a task add on top of it.
- the same two peaks with the suffix `_mpy_task`: the task shipped as .mpy, so nothing is compiled
  on the agent.
- micro_agent.min_heapsize: the smallest `micropython -X heapsize=` (bisected, 1 KB steps) with
  which the agent registers and runs the sampler task to FINISHED; goal <= 48 KB.
- micro_agent.code_size_mpy: the agent's modules compiled by micro_agent/build.py; goal <= 16 KB.

Run: `python bench/micro_agent.py` (about 30 s). The master is the scripted CoAP master of the
agent's tests (real UDP on loopback, real wire codec).
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parents[1]
MICRO = ROOT / "micro_agent"


def _load(name: str, path: Path):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


scripted = _load("micro_agent_scripted_master",
                 ROOT / "tests" / "micro_agent" / "scripted_master.py")
build = _load("micro_agent_build", MICRO / "build.py")

PROBE = """
import gc
gc.collect()
import sys
import asyncio
import json
import agent
gc.collect()
print("LOADED", gc.mem_alloc())
peak = [gc.mem_alloc(), 0]

async def probe():
    while True:
        a = gc.mem_alloc()
        if a > peak[0]:
            peak[0] = a
        gc.collect()
        a = gc.mem_alloc()
        if a > peak[1]:
            peak[1] = a
        print("PEAK", peak[0], peak[1])
        await asyncio.sleep_ms(5)

async def main():
    with open(sys.argv[1]) as f:
        cfg = json.load(f)
    asyncio.create_task(probe())
    await agent.run(cfg)

asyncio.run(main())
"""

SAMPLER_ARGS = ("5",)


def _emit(metric: str, value: float, unit: str, goal: float | None) -> None:
    print(json.dumps({"metric": f"micro_agent.{metric}", "value": value, "unit": unit,
                      "goal": goal}), flush=True)


async def _scenario(code: Path, script: str, heap_kb: int, work: Path,
                    timeout: float = 8.0, mpy_task: bool = False) -> tuple[bool, str]:
    """Run the agent (script in `code`) with a heap of `heap_kb`; True when it registered and
    the sampler finished. Returns (ok, the agent's output)."""
    from edgerm.wire import pb

    m = scripted.ScriptedMaster(heartbeat_ms=200)
    await m.bind()
    cfg = {"master": f"127.0.0.1:{m.port}", "token": "tok", "name": "bench",
           "heartbeat_ms": 200, "ack_timeout_ms": 300, "max_retransmit": 2, "log_level": 0,
           "state": str(work / "state.cbor"), "cache": str(work / "cache"), "block_szx": 4,
           "sensors": [{"name": "temp", "unit": "Cel", "sim": [20.5, 21.0]}]}
    shutil.rmtree(work / "cache", ignore_errors=True)
    (work / "state.cbor").unlink(missing_ok=True)
    (work / "config.json").write_text(json.dumps(cfg))
    sampler = (MICRO / "examples" / "sampler.py").read_bytes()
    if mpy_task:
        subprocess.run(["mpy-cross", "-o", str(work / "sampler.mpy"),
                        str(MICRO / "examples" / "sampler.py")], check=True)
        sampler = (work / "sampler.mpy").read_bytes()
    sha = m.add_module(sampler)
    ok = False
    out = work / "out.txt"
    with open(out, "wb") as f:
        proc = await trio.lowlevel.open_process(
            ["micropython", "-X", f"heapsize={heap_kb}k", str(code / script),
             str(work / "config.json")], stdout=f, stderr=subprocess.STDOUT, cwd=work)
    try:
        async with trio.open_nursery() as n:
            n.start_soon(m.serve)
            with trio.move_on_after(timeout):
                await m.wait_for(lambda: 1 in m.agents and m.agents[1].heartbeats >= 2,
                                 timeout=timeout)
                m.command(1, launch=pb.Launch(task=1, spec=pb.TaskSpec(
                    resources=pb.Resources(devices=[pb.Device(name="temp")]),
                    micropython=pb.MicroPythonTask(sha256=sha, size=len(sampler), mpy=mpy_task,
                                                   args=list(SAMPLER_ARGS)))))
                await m.wait_for(lambda: pb.FINISHED in m.states(1, 1), timeout=timeout)
                beats = m.agents[1].heartbeats
                await m.wait_for(lambda: m.agents[1].heartbeats >= beats + 2, timeout=timeout)
                ok = proc.poll() is None
            n.cancel_scope.cancel()
    finally:
        if proc.poll() is None:
            proc.kill()
        await proc.wait()
        m.sock.close()
    return ok, out.read_text(errors="replace")


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        code = work / "code"
        files = build.build(code)
        _emit("code_size_mpy", sum(f.stat().st_size for f in files), "bytes", 16384)
        src = sum((MICRO / f"{n}.py").stat().st_size for n in build.MODULES)
        _emit("code_size_source", src, "bytes", None)
        (code / "probe.py").write_text(PROBE)

        for mpy_task, suffix in ((False, ""), (True, "_mpy_task")):
            ok, out = await _scenario(code, "probe.py", 256, work, mpy_task=mpy_task)
            peaks = re.findall(r"PEAK (\d+) (\d+)", out)
            if not ok or not peaks:
                raise SystemExit(f"the probed run failed:\n{out[-2000:]}")
            raw, live = (int(x) for x in peaks[-1])
            _emit("peak_heap_live" + suffix, round(live / 1024, 1), "KB", 24)
            _emit("peak_heap_alloc" + suffix, round(raw / 1024, 1), "KB", None)
            if not mpy_task:
                loaded = int(re.findall(r"LOADED (\d+)", out)[0])
                _emit("heap_after_imports", round(loaded / 1024, 1), "KB", None)
                _emit("peak_heap_live_beyond_imports", round((live - loaded) / 1024, 1), "KB",
                      None)

        lo, hi = 8, 96  # lo fails (assumed), hi must work
        ok, out = await _scenario(code, "main.py", hi, work)
        if not ok:
            raise SystemExit(f"the agent failed even with {hi} KB:\n{out[-2000:]}")
        while hi - lo > 1:
            mid = (lo + hi) // 2
            ok, _ = await _scenario(code, "main.py", mid, work)
            if ok:
                hi = mid
            else:
                lo = mid
        _emit("min_heapsize", hi, "KB", 48)


if __name__ == "__main__":
    trio.run(main)
