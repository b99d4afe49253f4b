"""Argument parsing and dispatch of the `edgerm` command (edgerm_cli.main, and
`python -m edgerm_cli`, edgerm_cli/__main__.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import edgerm_cli as cli
import edgerm_cli.main as cli_main
import edgerm_cli.run as cli_run


def test_bad_env_and_stray_command_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as info:
        cli_main.main(["run", "--wasm", "x.wasm", "--", "echo"])
    assert info.value.code == cli.EXIT_USAGE
    with pytest.raises(ValueError, match="NAME=VALUE"):
        cli_run.parse_env(["novalue"])


def test_python_m_edgerm_cli_is_the_edgerm_command() -> None:
    done = subprocess.run([sys.executable, "-m", "edgerm_cli", "agents", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: edgerm agents")
    done = subprocess.run([sys.executable, "-m", "edgerm_cli", "nonsense"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == cli.EXIT_USAGE and "invalid choice" in done.stderr
