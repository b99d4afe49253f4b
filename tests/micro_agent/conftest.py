"""Fixtures for the MicroPython agent's tests: the real `micropython` unix port as a child
process, with a limited heap, pointed at a master over loopback UDP."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

ROOT = Path(__file__).resolve().parents[2]
MICRO = ROOT / "micro_agent"
MICROPYTHON = shutil.which("micropython")

# micropython is a test dependency (pyproject's test extra): on CI a missing one must fail.
needs_micropython = pytest.mark.skipif(MICROPYTHON is None and not os.environ.get("CI"),
                                       reason="micropython is not installed")


def run_mp(script: str | Path, *args: str, heap: str = "256k", path: Path = MICRO,
           timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a MicroPython script with the agent's modules importable."""
    assert MICROPYTHON is not None
    env = dict(os.environ, MICROPYPATH=f"{path}:.frozen")
    return subprocess.run([MICROPYTHON, "-X", f"heapsize={heap}", str(script), *args],
                          capture_output=True, text=True, env=env, timeout=timeout)


def precompiled(source: bytes, tmp: Path) -> bytes:
    """A task precompiled with mpy-cross, as micro_agent/README.md ("Tasks") says to send to a
    board with a small heap: compiling source needs large contiguous blocks, which a 64 KB heap
    that has run tasks before, or lived through a master crash and a reconnect, may no longer
    have (MEMORY_LIMIT at import)."""
    src = tmp / "task.py"
    src.write_bytes(source)
    subprocess.run(["mpy-cross", "-O2", "-s", "task.py", "-o", str(tmp / "task.mpy"), str(src)],
                   check=True)
    return (tmp / "task.mpy").read_bytes()


@pytest.fixture(scope="session")
def mpy_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The agent precompiled by micro_agent/build.py, as it goes onto a board."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("micro_agent_build", MICRO / "build.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path_factory.mktemp("mpy")
    mod.build(out)
    return out


class AgentProcess:
    """The agent under `micropython -X heapsize=…`, restartable on the same state file."""

    def __init__(self, workdir: Path, config: dict, heap: str, code: Path) -> None:  # type: ignore[type-arg]
        self.code = code
        self.workdir = workdir
        self.heap = heap
        self.config = dict(config)
        self.config.setdefault("state", str(workdir / "state.cbor"))
        self.config.setdefault("cache", str(workdir / "cache"))
        self.cfg_path = workdir / "config.json"
        self.proc: trio.Process | None = None
        self.log = workdir / "agent.log"

    def write_config(self) -> None:
        self.cfg_path.write_text(json.dumps(self.config))

    async def start(self) -> None:
        assert MICROPYTHON is not None
        self.write_config()
        out = open(self.log, "ab")  # noqa: SIM115 - the child owns it while it runs
        self.proc = await trio.lowlevel.open_process(
            [MICROPYTHON, "-X", f"heapsize={self.heap}", str(self.code / "main.py"),
             str(self.cfg_path)],
            stdout=out, stderr=subprocess.STDOUT, cwd=self.workdir)
        out.close()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()
        self.proc = None

    async def hold(self, stopped: bool) -> None:
        """Stop (SIGSTOP) or continue (SIGCONT) the agent; a stop returns once the kernel
        reports the process stopped, so nothing it reads after that is read before the
        continue."""
        assert self.proc is not None
        if not stopped:
            self.proc.send_signal(signal.SIGCONT)
            return
        self.proc.send_signal(signal.SIGSTOP)
        stat = Path(f"/proc/{self.proc.pid}/stat")
        with trio.fail_after(5):
            while stat.read_text().rsplit(")", 1)[1].split()[0] != "T":
                await trio.sleep(0.001)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
async def agent_factory(tmp_path: Path, mpy_build: Path) -> AsyncIterator:  # type: ignore[type-arg]
    """Makes agents that run the .mpy build with a 64 KB heap (the size of a small board's)."""
    made: list[AgentProcess] = []

    def make(config: dict, heap: str = "64k") -> AgentProcess:  # type: ignore[type-arg]
        a = AgentProcess(tmp_path, config, heap, mpy_build)
        made.append(a)
        return a

    yield make
    for a in made:
        await a.stop()
        print(f"--- agent output ({a.log}) ---")  # shown by pytest when the test failed
        print(a.output()[-6000:])
