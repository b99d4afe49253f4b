"""`edgerm-master` failing to start, as an operator sees it: one line on stderr saying what is
wrong and what to do, no traceback, exit code 1 (environment) or 2 (configuration)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest


def run_master(*args: str, timeout: float = 30.0) -> tuple[int, str]:
    proc = subprocess.run([sys.executable, "-m", "edgerm_master", "--dev", *args],
                          capture_output=True, timeout=timeout)
    err = proc.stderr.decode().strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err  # one line
    return proc.returncode, err


@pytest.mark.parametrize("kind", ["ws", "coap"])
def test_a_port_in_use(tmp_path: Path, kind: str) -> None:
    taker = socket.socket(type=socket.SOCK_STREAM if kind == "ws" else socket.SOCK_DGRAM)
    with taker:
        taker.bind(("127.0.0.1", 0))
        if kind == "ws":
            taker.listen()
        port = taker.getsockname()[1]
        other = "--coap-port" if kind == "ws" else "--ws-port"
        code, err = run_master("--data-dir", str(tmp_path / "m"), f"--{kind}-port", str(port),
                               other, "0")
    what = "WebSocket" if kind == "ws" else "CoAP"
    assert code == 1
    assert err == (f"edgerm-master: cannot serve {what} on 127.0.0.1:{port}: Address already "
                   f"in use; stop what uses that port or choose another with --{kind}-port "
                   "(0 picks a free one)")


def test_the_http_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taker:
        taker.bind(("127.0.0.1", 0))
        taker.listen()
        port = taker.getsockname()[1]
        code, err = run_master("--data-dir", str(tmp_path / "m"), "--ws-port", "0",
                               "--coap-port", "0", "--http-listen", f"127.0.0.1:{port}")
    assert code == 1
    assert err == (f"edgerm-master: cannot serve HTTP on 127.0.0.1:{port}: Address already "
                   "in use; stop what uses that port or choose another with --http-listen "
                   "HOST:PORT (0 picks a free one)")


def test_a_bad_http_listen_address(tmp_path: Path) -> None:
    code, err = run_master("--data-dir", str(tmp_path / "m"), "--http-listen", "localhost")
    assert code == 2
    assert err == ("edgerm-master: http listen: 'localhost' is not HOST:PORT (e.g. "
                   "127.0.0.1:5691); use HOST:PORT, or \"off\"")


def test_a_toml_error_names_the_file(tmp_path: Path) -> None:
    config = tmp_path / "master.toml"
    config.write_text("heartbeat_ms = \n")
    code, err = run_master("--config", str(config))
    assert code == 2
    assert err.startswith(f"edgerm-master: config {config}: not valid TOML (")
    assert err.endswith("): fix the syntax")


def test_an_unknown_key_names_the_file_and_the_key(tmp_path: Path) -> None:
    config = tmp_path / "master.toml"
    config.write_text("heartbeat = 500\n")
    code, err = run_master("--config", str(config))
    assert code == 2
    assert err == (f"edgerm-master: config {config}: unknown key 'heartbeat' (docs/master.md "
                   "lists the keys)")


def test_an_unusable_data_dir(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    code, err = run_master("--data-dir", str(tmp_path / "file" / "m"), "--ws-port", "0",
                           "--coap-port", "0")
    assert code == 1
    assert err.startswith(f"edgerm-master: data dir {tmp_path / 'file' / 'm'}: ")
    assert err.endswith("--data-dir must be a writable directory with free space")
