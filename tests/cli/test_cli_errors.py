"""`edgerm` and the SDK when something is wrong, as a user sees it: the real `edgerm` process
prints one line saying what went wrong and what to do (no traceback) and exits 2 (usage) or 4
(the master); the SDK refuses an oversized module before sending it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from edgerm.framework import Disconnected, Framework, ModuleTooLarge
from edgerm_master.testing import wasm_module
from edgerm_master.testing_io import MasterProcess


def edgerm(tmp_path: Path, *args: str) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGERM_")}
    env["EDGERM_HOME"] = str(tmp_path / "home")  # no local cluster file to fall back on
    proc = subprocess.run([sys.executable, "-m", "edgerm_cli", *args], capture_output=True,
                          env=env, timeout=60)
    err = proc.stderr.decode().strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err  # one line
    return proc.returncode, err


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (connecting is refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_master_says_why(tmp_path: Path, closed_port: int) -> None:
    code, err = edgerm(tmp_path, "agents", "--master", f"ws://127.0.0.1:{closed_port}",
                       "--operator-token", "t")
    assert code == 4
    assert err == (f"edgerm: cannot reach ws://127.0.0.1:{closed_port}/state: connection "
                   "refused: is the master running, and is this its WebSocket port?")
    (tmp_path / "t.wasm").write_bytes(wasm_module())
    code, err = edgerm(tmp_path, "run", "--wasm", str(tmp_path / "t.wasm"), "--master",
                       f"127.0.0.1:{closed_port}", "--token", "t", "--connect-timeout", "0.5")
    assert code == 4
    assert err == (f"edgerm run: cannot subscribe at ws://127.0.0.1:{closed_port}/framework: "
                   "connection refused: is the master running, and is this its WebSocket port?")


@pytest.mark.parametrize("address, hint", [
    ("http://127.0.0.1:5690", ""),
    ("coap://127.0.0.1:5683", " (coap:// is how agents reach the master)"),
])
@pytest.mark.parametrize("command", ["agents", "run"])
def test_a_master_address_that_is_not_websocket(tmp_path: Path, address: str, hint: str,
                                                command: str) -> None:
    extra = ["--docker", "busybox"] if command == "run" else []
    code, err = edgerm(tmp_path, command, *extra, "--master", address, "--token", "t",
                       "--operator-token", "t")
    assert code == 2
    prefix = "edgerm run" if command == "run" else "edgerm"
    assert err == (f"{prefix}: master address {address!r} is not a WebSocket address{hint}: "
                   "give ws://HOST:PORT, the master's WebSocket port (5690 by default)")


def test_no_token_given(tmp_path: Path, closed_port: int) -> None:
    master = f"ws://127.0.0.1:{closed_port}"
    code, err = edgerm(tmp_path, "tasks", "--master", master)
    assert code == 2 and err.startswith("edgerm: no operator token given: pass "
                                        "--operator-token or set EDGERM_OPERATOR_TOKEN")
    code, err = edgerm(tmp_path, "run", "--docker", "busybox", "--master", master)
    assert code == 2 and err.startswith("edgerm run: no framework token given: pass --token or "
                                        "set EDGERM_TOKEN")


def test_an_oversized_module_is_refused_before_connecting(tmp_path: Path,
                                                          closed_port: int) -> None:
    big = tmp_path / "big.wasm"
    big.write_bytes(wasm_module() + bytes(5 * 1000 * 1000))
    code, err = edgerm(tmp_path, "run", "--wasm", str(big), "--master",
                       f"ws://127.0.0.1:{closed_port}", "--token", "t")
    assert code == 2
    assert err == (f"edgerm run: {big}: module of {big.stat().st_size} bytes is over the limit "
                   "of 1048576 bytes (1 MiB) for one module: make it smaller")


async def test_sdk_checks_the_module_limit_and_names_the_masters(tmp_path: Path) -> None:
    master = MasterProcess(str(tmp_path / "m")).start()
    try:
        url = f"ws://{master.ws[0]}:{master.ws[1]}"
        big = wasm_module() + bytes(5 * 1000 * 1000)
        async with Framework.connect(url, name="t", token="framework-token") as fw:
            with pytest.raises(ModuleTooLarge, match="over the limit of 1048576 bytes"):
                await fw.upload(big)
            # Nothing was sent: the connection is as good as before.
            assert (await fw.upload(wasm_module())).size == len(wasm_module())
        # A framework told a higher limit than the master's frame limit: the master closes the
        # connection, and the error says it was over the master's size limit, naming it.
        async with Framework.connect(url, name="t", token="framework-token",
                                     max_module_bytes=len(big)) as fw:
            with pytest.raises(Disconnected) as caught:
                await fw.upload(big)
            text = str(caught.value)
            assert "the master refused a message over its size limit" in text, text
            assert "2101248 bytes" in text, text
    finally:
        master.stop()
