"""`edgerm masters` (edgerm_cli.masters) against real master services on loopback: a leader, a
standby naming it, and an address where nothing listens."""

from __future__ import annotations

import io
import json
import socket
from pathlib import Path

import trio

import edgerm_cli as cli
import edgerm_cli.main as cli_main
from edgerm_cli.masters import masters_command
from edgerm_master.config import MasterConfig
from edgerm_master.members import MemberInfo, Role
from edgerm_master.service import MasterService


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def service(path: Path) -> MasterService:
    return MasterService(MasterConfig(coap_port=0, ws_port=0, host="127.0.0.1",
                                      data_dir=str(path), operator_tokens=["op"]))


async def test_masters_shows_roles_and_the_leader(tmp_path: Path) -> None:
    leader, standby = service(tmp_path / "l"), service(tmp_path / "s")
    async with trio.open_nursery() as nursery:
        _, lws = await nursery.start(leader.run)
        _, sws = await nursery.start(standby.run)
        lurl, surl = f"ws://127.0.0.1:{lws[1]}", f"ws://127.0.0.1:{sws[1]}"
        dead = f"ws://127.0.0.1:{free_port()}"
        standby.set_role(Role.STANDBY, MemberInfo("m1", {"ws": lurl}))
        argv = ["masters", "--master", f"{lurl},{surl}", "--master", dead,
                "--operator-token", "op"]
        out = io.StringIO()
        assert await masters_command(cli_main.build_parser().parse_args(argv), out) == 0
        lines = out.getvalue().splitlines()
        assert lines[0].split()[:2] == ["NAME", "ROLE"]
        assert "leader" in lines[1] and lurl in lines[1]
        assert "standby" in lines[2] and lines[2].count(lurl) == 1 and surl in lines[2]
        assert "unreachable" in lines[3]
        out = io.StringIO()
        assert await masters_command(cli_main.build_parser().parse_args([*argv, "--json"]),
                                     out) == 0
        doc = json.loads(out.getvalue())
        assert doc["leader"] == lurl
        assert [m["role"] for m in doc["masters"]] == ["leader", "standby", "unreachable"]
        assert doc["masters"][1]["leader"] == lurl
        nursery.cancel_scope.cancel()


async def test_no_master_answering_is_a_clear_error(capsys: object) -> None:
    argv = ["masters", "--master", f"ws://127.0.0.1:{free_port()}", "--operator-token", "op"]
    code = await masters_command(cli_main.build_parser().parse_args(argv), io.StringIO())
    assert code == cli.EXIT_MASTER
    err = capsys.readouterr().err  # type: ignore[attr-defined]
    assert "no master answered" in err and "--master" in err
