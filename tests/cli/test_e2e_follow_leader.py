"""Issue 12: `edgerm run` and the listings given several masters (a subprocess, as a user runs
it) start at a standby — a real master process refusing with NOT_LEADER naming the leader —
and work with the leader; a leader that is not among the given masters is not followed."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from edgerm_cli import EXIT_MASTER
from edgerm_master.testing_io import MasterProcess, standby_process

from .conftest import WASM_DIR


@pytest.fixture
def standby(tmp_path: Path, real_cluster: Any) -> Iterator[MasterProcess]:
    s = standby_process(str(tmp_path / "standby"), real_cluster.master)
    yield s
    s.stop()


async def edgerm(cluster: Any, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = cluster.env()
    del env["EDGERM_MASTER"]
    return await trio.run_process([sys.executable, "-m", "edgerm_cli", *args], env=env,
                                  capture_stdout=True, capture_stderr=True, check=False)


async def test_run_and_listings_follow_the_leader(real_cluster: Any, standby: MasterProcess,
                                                  wasm_modules: dict[str, bytes]) -> None:
    at_standby = f"ws://{standby.ws[0]}:{standby.ws[1]}"
    done = await edgerm(real_cluster, "run", "--master", f"{at_standby},{real_cluster.url}",
                        "--wasm", str(WASM_DIR / "build" / "hello.wasm"), "--arg", "ha")
    err = done.stderr.decode()
    assert done.returncode == 0, err
    assert done.stdout.decode().splitlines() == ["ha"]
    assert f"subscribed to {real_cluster.url} as framework" in err
    done = await edgerm(real_cluster, "agents", "--json", "--master", at_standby,
                        "--master", real_cluster.url)
    assert done.returncode == 0, done.stderr.decode()
    assert real_cluster.agent_name in {a["name"] for a in json.loads(done.stdout)}


async def test_a_leader_not_given_is_not_followed(real_cluster: Any,
                                                  standby: MasterProcess) -> None:
    done = await edgerm(real_cluster, "agents", "--master",
                        f"ws://{standby.ws[0]}:{standby.ws[1]}")
    err = done.stderr.decode()
    assert done.returncode == EXIT_MASTER, err
    assert "NOT_LEADER" in err and real_cluster.url in err   # said, not followed
    assert done.stdout == b""
