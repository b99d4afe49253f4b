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
        "ws://127.0.0.1:7000", "ft", "ot", ("ws://127.0.0.1:7000",))
    monkeypatch.setenv("EDGERM_MASTER", "ws://10.0.0.1:5690")
    monkeypatch.setenv("EDGERM_TOKEN", "envtok")
    target = cli_target.resolve_target(parse(["agents"]))
    assert (target.master, target.framework_token) == ("ws://10.0.0.1:5690", "envtok")
    target = cli_target.resolve_target(parse(["agents", "--master", "ws://h:1", "--token", "flag"]))
    assert (target.master, target.framework_token) == ("ws://h:1", "flag")


def test_several_masters_repeated_or_comma_separated(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 12: --master repeatable and a comma list, EDGERM_MASTER and the cluster file's
    `masters` too; every address is checked before anything is sent."""
    monkeypatch.setenv("EDGERM_HOME", str(tmp_path))
    for var in ("EDGERM_MASTER", "EDGERM_TOKEN", "EDGERM_OPERATOR_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    parse = cli_main.build_parser().parse_args
    target = cli_target.resolve_target(parse(["agents", "--master", "ws://a:1,ws://b:2",
                                              "--master", "ws://c:3"]))
    assert (target.master, target.masters) == ("ws://a:1", ("ws://a:1", "ws://b:2", "ws://c:3"))
    monkeypatch.setenv("EDGERM_MASTER", "ws://d:4, ws://e:5")
    assert cli_target.resolve_target(parse(["agents"])).masters == ("ws://d:4", "ws://e:5")
    monkeypatch.delenv("EDGERM_MASTER")
    (tmp_path / "cluster.json").write_text(json.dumps({"masters": ["ws://f:6", "ws://g:7"]}))
    assert cli_target.resolve_target(parse(["agents"])).masters == ("ws://f:6", "ws://g:7")
    with pytest.raises(cli_target.TargetError, match="coap://x:1"):
        cli_target.resolve_target(parse(["agents", "--master", "ws://a:1,coap://x:1"]))


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
