"""`python -m edgerm.cluster`: the one-command local cluster, as a user runs it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from edgerm.cluster import format_reading, linux_agent_toml, load_or_create_tokens

CLUSTER = [sys.executable, "-m", "edgerm.cluster", "--ws-port", "0", "--coap-port", "0",
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
    assert (data / "logs" / "master.log").exists()


async def test_keep_running_serves_the_cli_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = clean_env(data)
    proc = await trio.lowlevel.open_process([*CLUSTER, "--data-dir", str(data), "--no-demo"],
                                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                            env=env)
    assert proc.stdout is not None
    out = b""
    try:
        with trio.fail_after(40):
            while b"the cluster is running" not in out:
                chunk = await proc.stdout.receive_some(4096)
                assert chunk, out.decode()
                out += chunk
        state = json.loads((data / "cluster.json").read_text())
        master = state["master"]
        # The CLI finds the cluster through EDGERM_HOME's state file alone.
        listing = await trio.run_process([sys.executable, "-m", "edgerm.cli", "agents"],
                                         env=env, capture_stdout=True, capture_stderr=True,
                                         check=False)
        assert listing.returncode == 0, listing.stderr.decode()
        assert "linux-1" in listing.stdout.decode()
        proc.send_signal(signal.SIGINT)
        with trio.fail_after(20):
            while chunk := await proc.stdout.receive_some(4096):
                out += chunk
            code = await proc.wait()
    finally:
        if proc.returncode is None:
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


def test_tokens_are_generated_once_and_kept(tmp_path: Path) -> None:
    first = load_or_create_tokens(tmp_path)
    assert first == load_or_create_tokens(tmp_path)
    assert len({first.agent, first.framework, first.operator}) == 3


def test_embedded_agent_config_is_valid_for_the_linux_agent(tmp_path: Path) -> None:
    import tomllib

    from edgerm.cluster import ClusterSettings
    from edgerm_agent.config import parse_config

    text = linux_agent_toml("a", "ws://127.0.0.1:5690", "tok", tmp_path, ["wasm", "docker"],
                            ClusterSettings())
    config = parse_config(tomllib.loads(text))
    assert config.master_url == "ws://127.0.0.1:5690/agent"
    assert config.executors == ("wasm", "docker")
    assert [d.name for d in config.devices] == ["temp", "humidity"]


def test_readings_are_shown_as_numbers() -> None:
    import struct
    assert format_reading(struct.pack("<d", 21.456), "Cel") == "21.46 Cel"
    assert format_reading(b"21.5", "Cel") == "21.50 Cel"
    assert format_reading(b"21.12345", "") == "21.12"   # 8 bytes of text stay text
    assert format_reading(b"\x00\x01", "") == "0001"
