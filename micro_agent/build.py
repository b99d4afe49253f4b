"""Precompile the agent to .mpy with mpy-cross (run with CPython): `python micro_agent/build.py
[OUTDIR]` (default micro_agent/build). Bytecode loads without the compiler, so a board needs no
heap for parsing, and the files are about a third of the source's size. main.py stays source
(MicroPython runs main.py, not main.mpy, at boot); it only imports `agent`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODULES = ("cbor", "coap", "mac", "sensors", "executor", "agent")


def build(out: Path, mpy_cross: str = "mpy-cross") -> list[Path]:
    """Compile every module into `out`; returns the .mpy files written."""
    out.mkdir(parents=True, exist_ok=True)
    done = []
    for name in MODULES:
        target = out / f"{name}.mpy"
        subprocess.run([mpy_cross, "-O2", "-o", str(target), str(HERE / f"{name}.py")], check=True)
        done.append(target)
    shutil.copy(HERE / "main.py", out / "main.py")
    return done


if __name__ == "__main__":
    files = build(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "build")
    for f in files:
        print(f"{f.stat().st_size:6d}  {f}")
    print(f"{sum(f.stat().st_size for f in files):6d}  total")
