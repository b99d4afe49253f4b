"""Precompile the agent to .mpy with mpy-cross (run with CPython): `python micro_agent/build.py
[OUTDIR]` (default micro_agent/build). Bytecode loads without the compiler, so a board needs no
heap for parsing, and the files are about a third of the source's size. main.py stays source
(MicroPython runs main.py, not main.mpy, at boot); it only imports `agent`.

It also writes `agent.romfs`, the .mpy files in a ROMFS image (the format of MicroPython's
extmod/vfs_rom.c, v1.25+): mounted with `vfs.mount(vfs.VfsRom(image), "/rom")`, its modules
run in place, their bytecode never copied into the heap, as frozen modules run from flash."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODULES = ("cbor", "oscore", "coap", "sensors", "executor", "agent")


def build(out: Path, mpy_cross: str = "mpy-cross") -> list[Path]:
    """Compile every module into `out`; returns the .mpy files written."""
    out.mkdir(parents=True, exist_ok=True)
    done = []
    for name in MODULES:
        target = out / f"{name}.mpy"
        # -s: the module name as the source name tracebacks show, not the path: a qstr the
        # module's import interns anyway, so it costs no qstr pool entry of its own
        subprocess.run([mpy_cross, "-O2", "-s", name, "-o", str(target),
                        str(HERE / f"{name}.py")], check=True)
        done.append(target)
    shutil.copy(HERE / "main.py", out / "main.py")
    (out / "agent.romfs").write_bytes(romfs([(f.name, f.read_bytes()) for f in done]))
    return done


def _varuint(n: int) -> bytes:
    # Big-endian groups of 7 bits, the high bit set on every byte but the last.
    out = [n & 0x7F]
    while n > 0x7F:
        n >>= 7
        out.append(0x80 | n & 0x7F)
    return bytes(reversed(out))


def _record(kind: int, payload: bytes) -> bytes:
    return _varuint(kind) + _varuint(len(payload)) + payload


def romfs(files: list[tuple[str, bytes]]) -> bytes:
    """A ROMFS image holding `files` (name, data) at its top level: the filesystem record
    (kind 0x14A6B1) of file records (kind 5: name length, name, then a verbatim data record,
    kind 2). The image's length must be even; a leading 0x80 pads a varuint by one byte."""
    body = b"".join(_record(5, _varuint(len(name.encode())) + name.encode() + _record(2, data))
                    for name, data in files)
    head = _varuint(0x14A6B1)
    size = _varuint(len(body))
    if (len(head) + len(size) + len(body)) % 2:
        size = b"\x80" + size
    return head + size + body


if __name__ == "__main__":
    files = build(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "build")
    for f in files:
        print(f"{f.stat().st_size:6d}  {f}")
    print(f"{sum(f.stat().st_size for f in files):6d}  total")
