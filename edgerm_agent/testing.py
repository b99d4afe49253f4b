"""Test helpers that do I/O for the Linux agent: the agent as a real process, and a private
Docker engine with a local busybox image. (The master's side — a master process, frameworks over
WebSocket — is in `edgerm_master.testing_io`; the sans-IO fakes in `edgerm_master.testing`.)

  `AgentProcess` — `python -m edgerm_agent` with a generated config (start, SIGINT, SIGKILL).
  `private_docker_engine()` — a dockerd of our own, `BUSYBOX_IMAGE` loaded.

No registry is reachable from the test machines, so the image is a busybox-static root file
system imported with `docker import` (ENVIRONMENT.md's recipe). The engine runs with its own data
and exec roots and socket, without iptables or a bridge, so it touches nothing of the host's.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["AgentProcess", "BUSYBOX_IMAGE", "busybox_tar", "private_docker_engine"]

BUSYBOX_IMAGE = "edgerm-test/busybox:1"
_APPLETS = ("sh", "echo", "sleep", "cat", "tail", "head", "true", "false", "env", "ls")


def busybox_tar(path: Path) -> None:
    """Write a root file system of busybox and its applet links to the tar file `path`."""
    busybox = shutil.which("busybox")
    if busybox is None:
        raise RuntimeError("busybox-static is not installed (apt-get install busybox-static)")
    with tarfile.open(path, "w") as tar:
        for d in ("bin", "tmp"):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        tar.add(busybox, "bin/busybox")
        for applet in _APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            tar.addfile(link)


@contextmanager
def private_docker_engine(start_timeout_s: float = 30.0) -> Iterator[str]:
    """Start a dockerd of our own with `BUSYBOX_IMAGE` loaded; yield its DOCKER_HOST.

    Error handling: if the engine does not answer within `start_timeout_s`, RuntimeError with
    the end of its log (callers fail, never skip). Resource handling: the engine is stopped
    (SIGTERM, then SIGKILL) and its directories removed on exit.
    """
    import docker

    d = Path("/tmp") / f"edgerm-dockerd-{os.getpid()}"  # short: unix socket paths are limited
    d.mkdir(parents=True, exist_ok=True)
    host = f"unix://{d}/docker.sock"
    with open(d / "dockerd.log", "wb") as log:
        proc = subprocess.Popen(
            ["dockerd", "--iptables=false", "--ip6tables=false", "--bridge=none",
             "--data-root", str(d / "data"), "--exec-root", str(d / "exec"),
             "--pidfile", str(d / "dockerd.pid"), "-H", host],
            stdout=log, stderr=subprocess.STDOUT)
    try:
        client = None
        deadline = time.monotonic() + start_timeout_s
        while client is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                client = docker.DockerClient(base_url=host, timeout=10)
                client.ping()
            except Exception:  # noqa: BLE001 - not up yet
                client = None
                time.sleep(0.1)
        if client is None:
            tail = (d / "dockerd.log").read_bytes()[-3000:].decode(errors="replace")
            raise RuntimeError(f"dockerd did not start (is docker.io installed? run as root):\n"
                               f"{tail}")
        busybox_tar(d / "busybox.tar")
        repo, tag = BUSYBOX_IMAGE.split(":")
        client.api.import_image_from_data((d / "busybox.tar").read_bytes(), repository=repo,
                                          tag=tag)
        client.close()
        yield host
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        subprocess.run(["umount", str(d / "exec" / "netns" / "default")],
                       stderr=subprocess.DEVNULL, check=False)
        shutil.rmtree(d, ignore_errors=True)


class ChildProcess:
    """A process a test runs: its output appended to `log_path`; `stop()` sends `STOP_SIGNAL`
    and kills it after `STOP_WAIT_S`."""

    STOP_SIGNAL = signal.SIGINT
    STOP_WAIT_S = 10.0

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def spawn(self, args: list[str], cwd: Path | None = None) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=cwd)
        log.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(self.STOP_SIGNAL)
            try:
                self.proc.wait(self.STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] \
            if self.log_path.exists() else ""


class AgentProcess(ChildProcess):
    """`python -m edgerm_agent CONFIG` with a generated config."""

    def __init__(self, work_dir: Path, master_url: str, *, name: str = "agent-1",
                 token: str = "agent-token", executors: Iterable[str] = ("wasm",),
                 docker_host: str | None = None, extra: str = "",
                 urls: Iterable[str] = (), ca_file: str | None = None) -> None:
        self.work_dir = work_dir
        self.config_path = work_dir.parent / f"{work_dir.name}.toml"
        ex = ", ".join(f'"{e}"' for e in executors)
        docker = f'[docker]\nhost = "{docker_host}"\n' if docker_host else ""
        self.config_path.write_text(f"""
name = "{name}"
work_dir = "{work_dir}"
[master]
url = "{master_url}"
urls = [{", ".join(f'"{u}"' for u in urls)}]
token = "{token}"
{f'ca_file = "{ca_file}"' if ca_file else ""}
[resources]
cpus = 2
mem_mb = 1024
[executors]
enabled = [{ex}]
{docker}
[timing]
call_timeout_s = 2.0
backoff_initial_s = 0.1
backoff_max_s = 0.5
heartbeat_s = 0.2
[[devices]]
name = "temp"
kind = "sensor"
unit = "Cel"
constant = 21.5
{extra}
""")
        super().__init__(work_dir.parent / f"{work_dir.name}.log")

    def start(self) -> AgentProcess:
        self.spawn([sys.executable, "-m", "edgerm_agent", "-v", str(self.config_path)])
        return self
