"""Fixtures for the agent's tests: the example WASM modules (built with clang), a real Docker
engine with a busybox image (started here, failing loudly if it cannot start), a master
process, agent processes and a framework on loopback."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgerm_master.testing import MasterProcess

REPO = Path(__file__).resolve().parents[2]
WASM_DIR = REPO / "examples" / "wasm"
IMAGE = "edgerm-test/busybox:1"
_APPLETS = ("sh", "echo", "sleep", "cat", "tail", "head", "true", "false", "env", "ls")


@pytest.fixture(scope="session")
def wasm_modules() -> dict[str, bytes]:
    """The example tasks, built by their Makefile."""
    subprocess.run(["make", "-s", "-C", str(WASM_DIR)], check=True)
    return {p.stem: p.read_bytes() for p in (WASM_DIR / "build").glob("*.wasm")}


def _busybox_tar(path: Path) -> None:
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


@pytest.fixture(scope="session")
def docker_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private dockerd for this test session; yields its DOCKER_HOST. Never skips: if the
    engine cannot start here, every Docker test fails with the engine's log."""
    import docker

    d = Path("/tmp") / f"edgerm-agent-dockerd-{os.getpid()}"  # short: unix socket paths
    d.mkdir(parents=True, exist_ok=True)
    host = f"unix://{d}/docker.sock"
    log = open(d / "dockerd.log", "wb")  # noqa: SIM115 - the daemon's for its life
    proc = subprocess.Popen(
        ["dockerd", "--iptables=false", "--ip6tables=false", "--bridge=none",
         "--data-root", str(d / "data"), "--exec-root", str(d / "exec"),
         "--pidfile", str(d / "dockerd.pid"), "-H", host],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        client = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            try:
                client = docker.DockerClient(base_url=host, timeout=10)
                client.ping()
                break
            except Exception:
                client = None
                time.sleep(0.1)
        if client is None:
            tail = (d / "dockerd.log").read_bytes()[-3000:].decode(errors="replace")
            raise RuntimeError(f"dockerd did not start:\n{tail}")
        tar = d / "busybox.tar"
        _busybox_tar(tar)
        with open(tar, "rb") as f:
            client.api.import_image_from_data(f.read(), repository=IMAGE.split(":")[0],
                                              tag=IMAGE.split(":")[1])
        client.close()
        yield host
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        subprocess.run(["umount", str(d / "exec" / "netns" / "default")],
                       stderr=subprocess.DEVNULL, check=False)
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def master(tmp_path: Path) -> Iterator[MasterProcess]:
    m = MasterProcess(str(tmp_path / "master"), heartbeat_ms=200,
                      extra=["--unreachable-after-missed", "3", "--lost-after-s", "60"])
    m.start()
    try:
        yield m
    finally:
        m.stop()
