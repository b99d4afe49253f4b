"""Where the master is and which tokens to use (edgerm_cli.target)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import edgerm_cli.main as cli_main
import edgerm_cli.target as cli_target


def test_target_comes_from_flags_then_env_then_the_local_cluster_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGERM_HOME", str(tmp_path))
    for var in ("EDGERM_MASTER", "EDGERM_TOKEN", "EDGERM_OPERATOR_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    parse = cli_main.build_parser().parse_args
    assert cli_target.resolve_target(parse(["agents"])).master == cli_target.DEFAULT_MASTER
    (tmp_path / "cluster.json").write_text(json.dumps({
        "master": "ws://127.0.0.1:7000", "framework_token": "ft", "operator_token": "ot"}))
    assert cli_target.resolve_target(parse(["agents"])) == cli_target.Target(
        "ws://127.0.0.1:7000", "ft", "ot")
    monkeypatch.setenv("EDGERM_MASTER", "ws://10.0.0.1:5690")
    monkeypatch.setenv("EDGERM_TOKEN", "envtok")
    target = cli_target.resolve_target(parse(["agents"]))
    assert (target.master, target.framework_token) == ("ws://10.0.0.1:5690", "envtok")
    target = cli_target.resolve_target(parse(["agents", "--master", "ws://h:1", "--token", "flag"]))
    assert (target.master, target.framework_token) == ("ws://h:1", "flag")


def test_local_cluster_file_is_found_in_the_current_directory_then_home(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `python -m edgerm_cli.cluster` keeps cluster.json in ./.edgerm by default: with no EDGERM_HOME
    # the CLI looks there first, then in ~/.edgerm.
    monkeypatch.delenv("EDGERM_HOME", raising=False)
    for var in ("EDGERM_MASTER", "EDGERM_TOKEN", "EDGERM_OPERATOR_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    home, work = tmp_path / "home", tmp_path / "work"
    (home / ".edgerm").mkdir(parents=True)
    (work / ".edgerm").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    (home / ".edgerm" / "cluster.json").write_text(json.dumps({"master": "ws://home:1"}))
    parse = cli_main.build_parser().parse_args
    assert cli_target.resolve_target(parse(["agents"])).master == "ws://home:1"
    (work / ".edgerm" / "cluster.json").write_text(json.dumps({"master": "ws://here:1"}))
    assert cli_target.resolve_target(parse(["agents"])).master == "ws://here:1"
    # One another user left in a shared directory is not trusted.
    mine = (work / ".edgerm" / "cluster.json").stat().st_uid
    monkeypatch.setattr(cli_target.os, "getuid", lambda: mine + 1)
    assert cli_target.resolve_target(parse(["agents"])).master == "ws://home:1"
    monkeypatch.undo()
    monkeypatch.setenv("EDGERM_HOME", str(home / ".edgerm"))
    monkeypatch.chdir(work)
    assert cli_target.resolve_target(parse(["agents"])).master == "ws://home:1"
