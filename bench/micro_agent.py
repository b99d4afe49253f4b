"""Benchmarks of the MicroPython agent under the unix port (JSON lines on stdout).

Two layouts of the agent's bytecode are measured:
- ROMFS (the primary figures): the .mpy modules in the ROMFS image `agent.romfs` written by
  micro_agent/build.py, mounted with `vfs.VfsRom` and imported from it, so their bytecode,
  constant strings and qstr text run in place and are never copied into the heap -- the host's
  stand-in for modules frozen into a board's firmware. This unix build has `vfs.VfsRom` but no
  ROM partition (`vfs.rom_ioctl` is compiled out), so the image itself sits in one bytearray
  in the GC heap; its exact allocation (gc.mem_alloc() before and after reading it, both after
  gc.collect()) is subtracted from every figure. What remains is what a board would hold in
  RAM, counted on a 64-bit host (objects are about half as big on a 32-bit MCU).
- all in heap (`_all_in_heap`): the .mpy files imported from the filesystem, bytecode copied
  into the heap, as on a board with the modules in its filesystem instead of frozen.

- micro_agent.peak_heap_live: the most heap in use (sampled every 5 ms right after a
  gc.collect()) while the agent registers, heartbeats and runs the sampler task, counting the
  interpreter's own start-up allocations; goal <= 24 KB.
- micro_agent.peak_heap_alloc: the same without collecting (live data plus garbage not yet
  collected); no goal, it shows how much slack the collector needs.
- micro_agent.heap_after_imports: the heap in use once the interpreter has loaded asyncio and
  the agent's modules, and peak_heap_live_beyond_imports, what the agent's data and a task
  add on top of it.
- peak_heap_live_mpy_task: the task shipped as .mpy, so nothing is compiled on the agent;
  peak_heap_live_observe_off: with `observe: false` (heartbeats POSTed to `a`, no pushes);
  peak_heap_live_two_masters: configured with two masters (`master` a list, docs/ha.md), the
  first one answering.
- micro_agent.min_heapsize_all_in_heap: the smallest `micropython -X heapsize=` (bisected,
  1 KB steps) with which the agent registers and runs the sampler task to FINISHED; goal
  <= 48 KB. min_heapsize: the same with the ROMFS layout, minus the image's KB.
- micro_agent.code_size_mpy: the agent's modules compiled by micro_agent/build.py; goal <= 16 KB.

Run: `python bench/micro_agent.py` (about a minute). The master is the scripted CoAP master of
the agent's tests (`edgerm_master.testing_scripted_master`: real UDP on loopback, real wire
codec).
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
sys.path.insert(0, str(ROOT))

from edgerm_master.testing_scripted_master import ScriptedMaster  # noqa: E402


def _load(name: str, path: Path):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


build = _load("micro_agent_build", MICRO / "build.py")

# Mounts the ROMFS image (when ROM is a path) ahead of everything else on sys.path; IMAGE is
# the heap its bytearray takes, subtracted from what the probe prints.
MOUNT = """
import gc
import os
import sys
import vfs
IMAGE = 0
if ROM:
    gc.collect()
    IMAGE = gc.mem_alloc()
    img = bytearray(os.stat(ROM)[6])
    with open(ROM, "rb") as f:
        f.readinto(img)
    gc.collect()
    IMAGE = gc.mem_alloc() - IMAGE
    vfs.mount(vfs.VfsRom(img), "/rom")
    sys.path.insert(0, "/rom")
print("IMAGE", IMAGE)
"""

PROBE = MOUNT + """
import asyncio
import agent
gc.collect()
print("LOADED", gc.mem_alloc() - IMAGE)
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
        print("PEAK", peak[0] - IMAGE, peak[1] - IMAGE)
        await asyncio.sleep_ms(5)

async def main():
    asyncio.create_task(probe())
    await agent.run(sys.argv[1])

asyncio.run(main())
"""

MAIN = MOUNT + """
import agent
agent.main(sys.argv[1])
"""

SAMPLER_ARGS = ("5",)


def _emit(metric: str, value: float, unit: str, goal: float | None) -> None:
    print(json.dumps({"metric": f"micro_agent.{metric}", "value": value, "unit": unit,
                      "goal": goal}), flush=True)


async def _scenario(code: Path, script: str, heap_kb: int, work: Path,
                    timeout: float = 8.0, mpy_task: bool = False,
                    observe: bool = True, two_masters: bool = False) -> tuple[bool, str]:
    """Run the agent (script in `code`) with a heap of `heap_kb`; True when it registered and
    the sampler finished. Returns (ok, the agent's output)."""
    from edgerm.wire import pb

    m = ScriptedMaster(heartbeat_ms=200)
    await m.bind()
    cfg = {"master": f"127.0.0.1:{m.port}", "token": "tok", "name": "bench",
           "heartbeat_ms": 200, "ack_timeout_ms": 300, "max_retransmit": 2, "log_level": 0,
           "state": str(work / "state.cbor"), "cache": str(work / "cache"), "block_szx": 4,
           "sensors": [{"name": "temp", "unit": "Cel", "sim": [20.5, 21.0]}],
           "observe": observe}
    if two_masters:   # the second is never needed: the first leads
        cfg["master"] = [cfg["master"], "127.0.0.1:9"]
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


async def _min_heap(code: Path, script: str, work: Path) -> int:
    lo, hi = 8, 96  # lo fails (assumed), hi must work
    ok, out = await _scenario(code, script, hi, work)
    if not ok:
        raise SystemExit(f"the agent failed even with {hi} KB:\n{out[-2000:]}")
    while hi - lo > 1:
        mid = (lo + hi) // 2
        ok, _ = await _scenario(code, script, mid, work)
        if ok:
            hi = mid
        else:
            lo = mid
    return hi


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        code = work / "code"
        files = build.build(code)
        _emit("code_size_mpy", sum(f.stat().st_size for f in files), "bytes", 16384)
        src = sum((MICRO / f"{n}.py").stat().st_size for n in build.MODULES)
        _emit("code_size_source", src, "bytes", None)
        rom = repr(str(code / "agent.romfs"))
        # The probes live beside the code, not in it: sys.path[0] is a script's directory.
        (work / "probe_rom.py").write_text(f"ROM = {rom}\n" + PROBE)
        (work / "main_rom.py").write_text(f"ROM = {rom}\n" + MAIN)
        (code / "probe.py").write_text("ROM = None\n" + PROBE)

        image = 0
        for where, script, layout in ((work, "probe_rom.py", ""),
                                      (code, "probe.py", "_all_in_heap")):
            for mpy_task in (False, True):
                suffix = layout + ("_mpy_task" if mpy_task else "")
                ok, out = await _scenario(where, script, 256, work, mpy_task=mpy_task)
                peaks = re.findall(r"PEAK (\d+) (\d+)", out)
                if not ok or not peaks:
                    raise SystemExit(f"the probed run failed:\n{out[-2000:]}")
                raw, live = (int(x) for x in peaks[-1])
                image = max(image, int(re.findall(r"IMAGE (\d+)", out)[0]))
                _emit("peak_heap_live" + suffix, round(live / 1024, 1), "KB",
                      24 if not mpy_task else None)
                _emit("peak_heap_alloc" + suffix, round(raw / 1024, 1), "KB", None)
                if not mpy_task:
                    loaded = int(re.findall(r"LOADED (\d+)", out)[0])
                    _emit("heap_after_imports" + layout, round(loaded / 1024, 1), "KB", None)
                    _emit("peak_heap_live_beyond_imports" + layout,
                          round((live - loaded) / 1024, 1), "KB", None)

        ok, out = await _scenario(work, "probe_rom.py", 256, work, observe=False)
        peaks = re.findall(r"PEAK (\d+) (\d+)", out)
        if not ok or not peaks:
            raise SystemExit(f"the probed run failed:\n{out[-2000:]}")
        _emit("peak_heap_live_observe_off", round(int(peaks[-1][1]) / 1024, 1), "KB", None)
        ok, out = await _scenario(work, "probe_rom.py", 256, work, two_masters=True)
        peaks = re.findall(r"PEAK (\d+) (\d+)", out)
        if not ok or not peaks:
            raise SystemExit(f"the probed run failed:\n{out[-2000:]}")
        _emit("peak_heap_live_two_masters", round(int(peaks[-1][1]) / 1024, 1), "KB", 24)
        _emit("romfs_image", image, "bytes", None)
        kb = -(-image // 1024)
        _emit("min_heapsize", await _min_heap(work, "main_rom.py", work) - kb, "KB", 48)
        _emit("min_heapsize_all_in_heap", await _min_heap(code, "main.py", work), "KB", 48)


if __name__ == "__main__":
    trio.run(main)
