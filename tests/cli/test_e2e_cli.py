"""`edgerm run` and the listings as a user runs them: a subprocess against the real master and a
real Linux agent, configured through the environment."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
from typing import Any

import trio

from edgerm.framework import OffersEvent
from edgerm_cli import listing as cli_listing
from edgerm_cli import main as cli_main

from .conftest import OPERATOR_TOKEN, WASM_DIR


async def edgerm(cluster: Any, *args: str) -> subprocess.CompletedProcess[bytes]:
    return await trio.run_process([sys.executable, "-m", "edgerm_cli", *args],
                                  env=cluster.env(), capture_stdout=True, capture_stderr=True,
                                  check=False)


async def test_run_wasm_end_to_end(real_cluster, wasm_modules) -> None:
    done = await edgerm(real_cluster, "run", "--wasm", str(WASM_DIR / "build" / "hello.wasm"),
                        "--arg", "hello", "--arg", "edge", "--task-id", "cli-hello")
    err = done.stderr.decode()
    assert done.returncode == 0, err
    assert done.stdout.decode().splitlines() == ["hello", "edge"]
    assert "task cli-hello  RUNNING" in err and "task cli-hello  FINISHED" in err
    assert "launched task cli-hello on agent" in err and real_cluster.agent_name in err


async def test_run_sampler_prints_readings(real_cluster, wasm_modules) -> None:
    done = await edgerm(real_cluster, "run", "--wasm", str(WASM_DIR / "build" / "sampler.wasm"),
                        "--device", "temp", "--arg", "temp", "--arg", "2", "-q")
    assert done.returncode == 0, done.stderr.decode()
    readings = [float(x) for x in done.stdout.decode().split()]
    assert len(readings) == 2 and all(20 <= r <= 22 for r in readings)


async def test_run_failing_task_exits_1(real_cluster, wasm_modules) -> None:
    done = await edgerm(real_cluster, "run", "--wasm", str(WASM_DIR / "build" / "fail.wasm"))
    err = done.stderr.decode()
    assert done.returncode == 1, err
    assert "FAILED  (EXITED_NONZERO)" in err and "exit code 3" in err


async def test_a_trap_and_a_timeout_show_their_reason_and_no_exit_code(
        real_cluster, wasm_modules) -> None:
    done = await edgerm(real_cluster, "run", "--wasm", str(WASM_DIR / "build" / "trap.wasm"))
    err = done.stderr.decode()
    assert done.returncode == 1, err
    assert "FAILED  (TRAPPED)" in err and "exit code" not in err
    done = await edgerm(real_cluster, "run", "--wasm", str(WASM_DIR / "build" / "spin.wasm"),
                        "--timeout", "1")
    err = done.stderr.decode()
    assert done.returncode == 1, err
    assert "FAILED  (TIMEOUT)" in err and "exit code" not in err


async def test_a_refused_upload_leaves_no_framework_behind(real_cluster, tmp_path) -> None:
    bogus = tmp_path / "not.wasm"
    bogus.write_text("not a WASM module\n")
    done = await edgerm(real_cluster, "run", "--wasm", str(bogus), "--framework-name",
                        "refused-upload")
    assert done.returncode == 4, done.stderr.decode()
    assert "the master refused" in done.stderr.decode() and "\\0asm" in done.stderr.decode()
    state = await cli_listing.fetch_state(real_cluster.url, OPERATOR_TOKEN)
    assert [f for f in state.frameworks if f.name == "refused-upload"] == []


async def test_offers_list_their_agents_executors(real_cluster, wasm_modules) -> None:
    # Offers exist while a framework holds them.
    async with real_cluster.connect(name="holder") as fw:
        with trio.fail_after(20):
            async for ev in fw.events():
                if isinstance(ev, OffersEvent) and len(ev.offers) == 2:
                    break
        out = io.StringIO()
        args = cli_main.build_parser().parse_args(["offers", "--master", real_cluster.url,
                                              "--operator-token", OPERATOR_TOKEN])
        assert await cli_listing.list_command(args, out) == 0
        header, *rows = out.getvalue().splitlines()
        assert header.split() == ["OFFER", "AGENT", "RESOURCES", "DEVICES", "EXECUTORS",
                                  "EXPIRES"]
        assert len(rows) == 2, out.getvalue()
        names = {real_cluster.agent_name, real_cluster.second_agent}
        for row in rows:
            assert row.split()[2] in names, row
            assert row.split()[-2] == "WASM", row
        await fw.teardown()


async def test_run_without_a_matching_agent_exits_3(real_cluster, wasm_modules) -> None:
    done = await edgerm(real_cluster, "run", "--wasm", str(WASM_DIR / "build" / "hello.wasm"),
                        "--device", "camera", "--offer-timeout", "2")
    assert done.returncode == 3
    assert "device 'camera' not offered" in done.stderr.decode()


async def test_listings(real_cluster, wasm_modules) -> None:
    done = await edgerm(real_cluster, "agents")
    assert done.returncode == 0, done.stderr.decode()
    header, *rows = done.stdout.decode().splitlines()
    assert header.split()[:3] == ["ID", "NAME", "STATE"]
    assert any(real_cluster.agent_name in row and "active" in row for row in rows)
    done = await edgerm(real_cluster, "agents", "--json")
    agents = {a["name"]: a for a in json.loads(done.stdout)}
    assert set(agents) == {real_cluster.agent_name, real_cluster.second_agent}
    devices = {d["name"] for d in agents[real_cluster.agent_name]["total"]["devices"]}
    assert devices == {"temp", "humidity"}
    # The other listings in-process (a Python start-up each is the slow part).
    for what in ("frameworks", "tasks", "offers"):
        out = io.StringIO()
        args = cli_main.build_parser().parse_args([what, "--master", real_cluster.url,
                                              "--operator-token", OPERATOR_TOKEN])
        assert await cli_listing.list_command(args, out) == 0
        assert out.getvalue().split()[0] in ("ID", "TASK", "OFFER")
    out = io.StringIO()
    args = cli_main.build_parser().parse_args(["tasks", "--json", "--master", real_cluster.url,
                                          "--operator-token", OPERATOR_TOKEN])
    assert await cli_listing.list_command(args, out) == 0
    for task in json.loads(out.getvalue()):
        assert task["task_id"] and task["state"] in ("FINISHED", "FAILED", "KILLED", "RUNNING",
                                                     "STARTING", "STAGING")


async def test_listing_with_a_wrong_operator_token_fails(real_cluster, wasm_modules) -> None:
    done = await edgerm(real_cluster, "agents", "--operator-token", "wrong")
    assert done.returncode == 4
    assert "UNAUTHENTICATED" in done.stderr.decode()


async def test_ctrl_c_kills_the_task_and_exits_130(real_cluster, wasm_modules) -> None:
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "edgerm_cli", "run", "--wasm",
         str(WASM_DIR / "build" / "spin.wasm"), "--task-id", "cli-spin"],
        env=real_cluster.env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = b""
    try:
        with trio.fail_after(30):
            while b"cli-spin  RUNNING" not in err:
                chunk = await proc.stderr.receive_some(4096)
                assert chunk, err.decode()
                err += chunk
            proc.send_signal(signal.SIGINT)
            while chunk := await proc.stderr.receive_some(4096):
                err += chunk
            code = await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = err.decode()
    assert code == 130, text
    assert "interrupted: killing task cli-spin" in text
    assert "cli-spin  KILLED  (KILL_REQUESTED)" in text
