"""`python -m edgerm_cli.cluster`: the one-command local cluster, as a user runs it."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import trio

CLUSTER = [sys.executable, "-m", "edgerm_cli.cluster", "--ws-port", "0", "--coap-port", "0",
           "--heartbeat-ms", "300"]


def clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("EDGERM_MASTER", "EDGERM_TOKEN", "EDGERM_OPERATOR_TOKEN")}
    env["EDGERM_HOME"] = str(home)
    return env


async def test_demo_only_reaches_the_wasm_tasks_output(tmp_path: Path, wasm_modules) -> None:
    data = tmp_path / "data"
    done = await trio.run_process([*CLUSTER, "--data-dir", str(data), "--demo-only",
                                   "--samples", "3", "--period-ms", "50"],
                                  capture_stdout=True, capture_stderr=True, check=False,
                                  env=clean_env(data))
    out = done.stdout.decode()
    assert done.returncode == 0, out + done.stderr.decode()
    for expected in ("master up", "Linux agent linux-1 starting", "agents registered",
                     "uploaded sampler.wasm", "(WASM sampler) on linux-1",
                     "WASM sampler on linux-1: task RUNNING",
                     "WASM sampler on linux-1: reading 1: temp = ",
                     "WASM sampler on linux-1: reading 3: temp = ",
                     "WASM sampler on linux-1: task FINISHED",
                     "demo finished: 3 readings from linux-1 (WASM sampler)", "stopped"):
        assert expected in out, out
    if shutil.which("micropython"):
        # The MicroPython agent joins, and runs the MicroPython sampler over CoAP.
        assert "agents registered: linux-1, micro-1" in out, out
        assert "MicroPython sampler on micro-1: reading 3: temp = 21.50 Cel" in out, out
        assert "3 readings from micro-1 (MicroPython sampler)" in out, out
    tokens = json.loads((data / "tokens.json").read_text())
    assert tokens["framework"] in out           # where the tokens are is printed
    assert oct((data / "tokens.json").stat().st_mode & 0o777) == "0o600"
    assert not (data / "cluster.json").exists()   # removed on the way out
    # The embedded configuration is one the master has nothing to warn about.
    master_log = (data / "logs" / "master.log").read_text()
    assert "WARNING" not in master_log, master_log[-3000:]


def _http_get(url: str, token: str | None, ca_file: str | None = None) -> str:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    context = ssl.create_default_context(cafile=ca_file) if ca_file else None
    with urllib.request.urlopen(request, timeout=10, context=context) as response:
        return response.read().decode()
@pytest.mark.skipif(shutil.which("micropython") is None and not os.environ.get("CI"),
                    reason="micropython is not installed")
async def test_gateway_flag_puts_the_micropython_agent_behind_the_linux_agent(
        tmp_path: Path, wasm_modules) -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = tmp_path / "data"
    done = await trio.run_process([*CLUSTER, "--data-dir", str(data), "--demo-only",
                                   "--samples", "2", "--period-ms", "50", "--gateway",
                                   "--gateway-port", str(port), "--micropython", "on"],
                                  capture_stdout=True, capture_stderr=True, check=False,
                                  env=clean_env(data))
    out = done.stdout.decode()
    assert done.returncode == 0, out + done.stderr.decode()
    assert f"gateway for the MicroPython agent on 127.0.0.1:{port}" in out, out
    assert "MicroPython agent micro-1 starting (CoAP, behind the gateway" in out, out
    assert "agents registered: linux-1, micro-1" in out, out
    assert "2 readings from micro-1 (MicroPython sampler)" in out, out
    config = json.loads((data / "micro-agent" / "config.json").read_text())
    assert config["master"] == f"127.0.0.1:{port}"   # no route to the master itself


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (from /proc's parent links)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue    # gone meanwhile
        ppid = int(text.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


async def test_keep_running_serves_the_cli_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    # As a user runs it: from a directory, with the default data directory (./.edgerm) and no
    # EDGERM_HOME; the CLI, started in the same directory, finds the cluster there.
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in clean_env(home).items() if k != "EDGERM_HOME"}
    env["HOME"] = str(home)
    data = tmp_path / ".edgerm"
    proc = await trio.lowlevel.open_process([*CLUSTER, "--no-demo"], cwd=tmp_path,
                                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                            env=env)
    assert proc.stdout is not None
    out = b""
    try:
        with trio.fail_after(60):
            while b"the cluster is running" not in out or not out.endswith(b"\n"):
                chunk = await proc.stdout.receive_some(4096)
                assert chunk, out.decode()
                out += chunk
        state = json.loads((data / "cluster.json").read_text())
        master = state["master"]
        tokens = json.loads((data / "tokens.json").read_text())
        # No token on any child's command line, where `ps` shows it to every user.
        children = descendants(proc.pid)
        assert len(children) >= 2, out.decode()     # the master and the Linux agent at least
        for pid in children:
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            for kind, token in tokens.items():
                assert token not in cmdline, f"{kind} token in {cmdline!r}"
        for private in ("tokens.json", "cluster.json", "master.toml",
                        "linux-agent/agent.toml", "tls/ca.key", "tls/server.key"):
            assert oct((data / private).stat().st_mode & 0o777) == "0o600", private
        # The CLI finds the cluster through ./.edgerm/cluster.json alone.
        listing = await trio.run_process([sys.executable, "-m", "edgerm_cli", "agents"],
                                         env=env, cwd=tmp_path, capture_stdout=True,
                                         capture_stderr=True, check=False)
        assert listing.returncode == 0, listing.stderr.decode()
        assert "linux-1" in listing.stdout.decode()
        # The dashboard's URL is printed and in cluster.json; it serves the page, and its API
        # the same agent with the operator token.
        # Over TLS, with the cluster's development CA (cluster.json names it).
        dashboard, ca_file = state["dashboard"], state["ca_file"]
        assert master.startswith("wss://") and dashboard.startswith("https://"), state
        assert ca_file == str(data / "tls" / "ca.pem"), state
        assert f"dashboard: open {dashboard} and enter the operator token" in out.decode()
        page = await trio.to_thread.run_sync(_http_get, dashboard, None, ca_file)
        assert "<title>EdgeRM master</title>" in page
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            await trio.to_thread.run_sync(_http_get, dashboard, None)   # system trust only
        agents = json.loads(await trio.to_thread.run_sync(
            _http_get, dashboard + "api/v1/agents", tokens["operator"], ca_file))
        assert "linux-1" in {a["name"] for a in agents["agents"]}, agents
        # The hint's `edgerm run` works as printed (the example it names is built).
        hint = out.decode().split("the cluster is running", 1)[1]
        assert "in another shell in this directory" in hint, hint
        run = next((cmd for cmd in hint.split("`")[1::2] if " run --wasm " in cmd), "")
        assert "hello.wasm" in run, hint
        argv = run.split()
        assert Path(argv[argv.index("--wasm") + 1]).exists(), hint
        done = await trio.run_process(
            [sys.executable, "-m", "edgerm_cli", *argv[argv.index("run"):]], env=env,
            cwd=tmp_path, capture_stdout=True, capture_stderr=True, check=False)
        assert done.returncode == 0, done.stderr.decode()
        proc.send_signal(signal.SIGINT)
        with trio.fail_after(20):
            while chunk := await proc.stdout.receive_some(4096):
                out += chunk
            code = await proc.wait()
    finally:
        if proc.returncode is None:
            # A failed check must not leave the cluster's master and agents running.
            for pid in descendants(proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            proc.kill()
            await proc.wait()
    text = out.decode()
    assert code == 0, text
    assert "stopping the cluster" in text and text.rstrip().endswith("stopped")
    assert not (data / "cluster.json").exists()
    # Every child is gone: nothing answers on the master's port any more.
    host, port = master.removeprefix("ws://").rsplit(":", 1)
    with pytest.raises(OSError):
        await trio.open_tcp_stream(host, int(port))
