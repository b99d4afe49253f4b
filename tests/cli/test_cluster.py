"""The local cluster command (edgerm_cli.cluster): what it tells its user."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from edgerm_cli import cluster


def test_the_cli_hint_says_how_to_reach_the_cluster(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    hello = tmp_path / "hello.wasm"
    # scripts/cluster.sh made a virtualenv: `edgerm` is there once it is activated.
    monkeypatch.setenv("EDGERM_CLI_ACTIVATE", str(tmp_path / ".venv" / "bin" / "activate"))
    hint = cluster.cli_hint((tmp_path / ".edgerm").resolve(), hello)
    assert "in this directory, first `. .venv/bin/activate`, then try `edgerm agents`" in hint
    assert "`edgerm run --wasm hello.wasm --arg hi`" in hint
    # No `edgerm` anywhere: the module; another data directory: EDGERM_HOME.
    monkeypatch.delenv("EDGERM_CLI_ACTIVATE")
    monkeypatch.setenv("PATH", str(tmp_path))
    hint = cluster.cli_hint(tmp_path / "data", None)
    assert f"first `export EDGERM_HOME={tmp_path / 'data'}`" in hint
    assert f"`{sys.executable} -m edgerm_cli agents`" in hint and "run --wasm" not in hint


def test_a_gateway_port_of_0_is_refused_with_why(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cluster.main(["--gateway", "--gateway-port", "0"])
    assert exited.value.code == 2
    assert "--gateway-port must be a port number (1-65535): the MicroPython agent is told it " \
        "before the gateway binds" in capsys.readouterr().err
