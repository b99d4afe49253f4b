"""The `edgerm` CLI against the scripted fake master: `run` end to end over a real WebSocket,
and the listings of the state resource."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import pytest
import trio

from edgerm import cli
from edgerm.wire import pb


def run_args(master, *extra: str) -> object:
    return cli.build_parser().parse_args(
        ["run", "--master", master.url, "--token", "fw-token", "--offer-timeout", "2", *extra])


async def run(master, *extra: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = await cli.run_command(run_args(master, *extra), out, err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def wasm_file(tmp_path: Path) -> Path:
    path = tmp_path / "task.wasm"
    path.write_bytes(b"\0asm\1\0\0\0")
    return path


async def test_run_wasm_prints_progress_and_output_and_exits_0(fake_master, wasm_file) -> None:
    fake_master.offers_on_subscribe = [
        fake_master.offer(offer_id="o-nosensor", devices=()),
        fake_master.offer(offer_id="o-ok", agent_name="pi-9")]
    fake_master.script = lambda info: fake_master.TaskScript(outputs=[b"temp=21.5\n", b"\x01\xff"])
    code, out, err = await run(fake_master, "--wasm", str(wasm_file), "--device", "temp",
                               "--arg", "3", "--env", "PERIOD_MS=10", "--task-id", "t-cli")
    assert code == cli.EXIT_FINISHED, err
    assert out.splitlines() == ["temp=21.5", "01ff"]
    assert cli.format_output(struct.pack("<d", 21.25)) == "21.25"
    assert cli.format_output(b"abc", "hex") == "616263"
    assert cli.format_output(b"21.5", "text") == "21.5"
    # A reading whose low bytes happen to be printable UTF-8 (seen in CI) is still a number.
    noisy = bytes.fromhex("d6b150236b243540")
    assert noisy.decode() == "\u05b1P#k$5@"
    assert cli.format_output(noisy) == f"{struct.unpack('<d', noisy)[0]:g}"
    assert 21 < float(cli.format_output(noisy)) < 22
    assert cli.format_output(b"8 chars\n") == "8 chars"
    assert cli.format_output(b"hello!!!") == "hello!!!"
    for state in ("STAGING", "RUNNING", "FINISHED"):
        assert f"task t-cli  {state}" in err
    assert "uploaded task.wasm (8 bytes" in err
    assert "launched task t-cli on agent 1 pi-9" in err
    [accept] = fake_master.calls_of("accept")
    assert list(accept.accept.offer_ids) == ["o-ok"]
    wasm = accept.accept.launch[0].spec.wasm
    assert list(wasm.args) == ["3"] and wasm.env[0].value == "10"
    assert fake_master.calls_of("decline")[0].decline.offer_ids == ["o-nosensor"]
    assert fake_master.calls_of("teardown")


async def test_run_failed_task_exits_nonzero_with_its_reason(fake_master, wasm_file) -> None:
    fake_master.offers_on_subscribe = [fake_master.offer()]
    fake_master.script = lambda info: fake_master.TaskScript(
        final=pb.FAILED, reason=pb.TRAPPED, message="wasm trap: unreachable", exit_code=0)
    code, _, err = await run(fake_master, "--wasm", str(wasm_file))
    assert code == cli.EXIT_TASK_FAILED
    assert "FAILED  (TRAPPED)" in err and "wasm trap: unreachable" in err
    assert "exit code" not in err       # a trap is no exit: its exit_code 0 means "none"


async def test_a_timeout_shows_no_exit_code_and_a_real_exit_does(fake_master, wasm_file) -> None:
    fake_master.offers_on_subscribe = [fake_master.offer()]
    fake_master.script = lambda info: fake_master.TaskScript(
        final=pb.FAILED, reason=pb.TIMEOUT, message="timeout after 1 s")
    code, _, err = await run(fake_master, "--wasm", str(wasm_file), "--timeout", "1")
    assert code == cli.EXIT_TASK_FAILED and "FAILED  (TIMEOUT)" in err
    assert "exit code" not in err
    assert fake_master.calls_of("accept")[0].accept.launch[0].spec.wasm.timeout_s == 1
    fake_master.calls.clear()
    fake_master.offers_on_subscribe = [fake_master.offer()]
    fake_master.script = lambda info: fake_master.TaskScript(
        final=pb.FAILED, reason=pb.EXITED_NONZERO, exit_code=3)
    code, _, err = await run(fake_master, "--wasm", str(wasm_file))
    assert code == cli.EXIT_TASK_FAILED and "exit code 3" in err


async def test_run_without_a_fitting_offer_says_why(fake_master, wasm_file) -> None:
    fake_master.offers_on_subscribe = [fake_master.offer(agent_name="pi-1")]
    code, _, err = await run(fake_master, "--wasm", str(wasm_file), "--device", "humidity",
                             "--offer-timeout", "0.3")
    assert code == cli.EXIT_NO_OFFER
    assert "agent 1 pi-1: device 'humidity' not offered" in err
    assert not fake_master.calls_of("accept")


async def test_run_docker_sends_the_command(fake_master) -> None:
    fake_master.offers_on_subscribe = [fake_master.offer(executors=(pb.DOCKER,))]
    code, _, err = await run(fake_master, "--docker", "busybox", "--", "echo", "hi")
    assert code == 0, err
    launch = fake_master.calls_of("accept")[0].accept.launch[0]
    docker = launch.spec.docker
    assert docker.image == "busybox" and list(docker.command) == ["echo", "hi"]
    assert docker.timeout_s == 0 and launch.spec.resources.mem_mb == cli.DOCKER_DEFAULT_MEM_MB
    assert not fake_master.calls_of("upload")


async def test_run_docker_sends_its_time_limit(fake_master) -> None:
    fake_master.offers_on_subscribe = [fake_master.offer(executors=(pb.DOCKER,))]
    code, _, err = await run(fake_master, "--docker", "busybox", "--timeout", "2", "--",
                             "sleep", "30")
    assert code == 0, err
    assert fake_master.calls_of("accept")[0].accept.launch[0].spec.docker.timeout_s == 2


def test_a_negative_timeout_is_a_usage_error(tmp_path: Path) -> None:
    err = io.StringIO()
    args = cli.build_parser().parse_args(["run", "--docker", "busybox", "--timeout", "-1"])
    assert trio.run(cli.run_command, args, io.StringIO(), err) == cli.EXIT_USAGE
    assert "--timeout -1" in err.getvalue()


def wasm_module(memory: bytes = b"", imports: bytes = b"") -> bytes:
    """A module with only an import section and/or a memory section (`limits` bytes)."""
    out = b"\0asm\1\0\0\0"
    if imports:
        out += bytes([2, len(imports)]) + imports
    if memory:
        body = b"\x01" + memory
        out += bytes([5, len(body)]) + body
    return out


def test_a_wasm_modules_initial_memory_is_read() -> None:
    assert cli.wasm_initial_pages(wasm_module(b"\x00\x01")) == 1
    assert cli.wasm_initial_pages(wasm_module(b"\x01\x03\x10")) == 3      # min 3, max 16
    assert cli.wasm_initial_pages(wasm_module(b"\x00\x80\x01")) == 128    # LEB128
    # Imported: a function import first ("env" "f" func type 0), then "env" "m" memory min 2.
    imports = b"\x02" + b"\x03env\x01f\x00\x00" + b"\x03env\x01m\x02\x00\x02"
    assert cli.wasm_initial_pages(wasm_module(imports=imports)) == 2
    assert cli.wasm_initial_pages(b"\0asm\1\0\0\0") == 0               # no memory
    assert cli.wasm_initial_pages(b"not wasm") is None
    assert cli.wasm_initial_pages(wasm_module(b"\x00\x01")[:-1]) is None   # truncated
    examples = Path(__file__).resolve().parents[2] / "examples" / "wasm" / "build"
    if (examples / "hello.wasm").exists():
        assert cli.wasm_initial_pages((examples / "hello.wasm").read_bytes()) == 1


async def test_a_one_page_wasm_task_fits_a_microcontroller_by_default(
        fake_master, tmp_path: Path) -> None:
    # A Zephyr board offers a 64 KiB slot; the module needs one page: no --mem needed.
    path = tmp_path / "one-page.wasm"
    path.write_bytes(wasm_module(b"\x01\x01\x01"))
    fake_master.offers_on_subscribe = [fake_master.offer(agent_name="nrf-1", mem_mb=0.0625)]
    code, _, err = await run(fake_master, "--wasm", str(path))
    assert code == cli.EXIT_FINISHED, err
    assert fake_master.calls_of("accept")[0].accept.launch[0].spec.resources.mem_mb == 0.0625


async def test_why_an_agent_does_not_fit_is_said_at_once(fake_master, wasm_file) -> None:
    fake_master.offers_on_subscribe = [
        fake_master.offer(agent_id=2, agent_name="micro-1", mem_mb=0.0625),
        fake_master.offer(agent_name="pi-1")]
    code, _, err = await run(fake_master, "--wasm", str(wasm_file), "--mem", "32")
    assert code == cli.EXIT_FINISHED, err
    assert "agent 2 micro-1 does not fit: mem_mb: needs 32, offered 0.0625" in err


async def test_run_with_a_wrong_token_exits_4(fake_master, wasm_file) -> None:
    args = cli.build_parser().parse_args(["run", "--master", fake_master.url, "--token", "nope",
                                          "--wasm", str(wasm_file)])
    err = io.StringIO()
    assert await cli.run_command(args, io.StringIO(), err) == cli.EXIT_MASTER
    assert "UNAUTHENTICATED" in err.getvalue()


def test_bad_env_and_stray_command_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["run", "--wasm", "x.wasm", "--", "echo"])
    assert info.value.code == cli.EXIT_USAGE
    with pytest.raises(ValueError, match="NAME=VALUE"):
        cli.parse_env(["novalue"])


def cluster_state() -> pb.ClusterState:
    state = pb.ClusterState(now=1000.0, version="test")
    agent = state.agents.add(agent_id=1, name="pi-1", state="active", last_seen=998.0,
                             transport="websocket", executors=[pb.WASM, pb.DOCKER])
    agent.total.cpus, agent.total.mem_mb = 4, 1024
    agent.used.cpus = 0.5
    agent.total.devices.add(name="temp", kind=pb.SENSOR)
    agent.attributes.add(name="os", text="linux")
    state.frameworks.add(framework_id="fw-1", name="sampler", connected=True, tasks=1,
                         weight=1, dominant_share=0.125)
    state.tasks.add(task_id="t1", framework_id="fw-1", agent_id=1, name="sample",
                    state=pb.RUNNING, executor=pb.WASM)
    offer = state.offers.add(offer_id="o1", agent_id=1, agent_name="pi-1", expires_in_s=4)
    offer.resources.cpus = 3.5
    # As the master lists them: the agent's id only; its name and executors are in `agents`.
    state.offers.add(offer_id="o2", agent_id=1, expires_in_s=4)
    return state


async def test_listings_as_tables_and_json(fake_master) -> None:
    fake_master.state = cluster_state()
    outputs = {}
    for what in ("agents", "frameworks", "tasks", "offers"):
        out = io.StringIO()
        args = cli.build_parser().parse_args([what, "--master", fake_master.url,
                                              "--operator-token", "op-token"])
        assert await cli.list_command(args, out) == 0
        outputs[what] = out.getvalue().splitlines()
    assert outputs["agents"][0].split()[:3] == ["ID", "NAME", "STATE"]
    assert outputs["agents"][1].split()[:8] == ["1", "pi-1", "active", "websocket", "0.5/4",
                                                "0/1024", "temp", "WASM,DOCKER"]
    assert "os=linux" in outputs["agents"][1]
    assert outputs["frameworks"][1].split() == ["fw-1", "sampler", "-", "yes", "1", "1", "0.125"]
    assert outputs["tasks"][1].split()[:6] == ["t1", "fw-1", "1", "sample", "WASM", "RUNNING"]
    assert outputs["offers"][1].startswith("o1")
    assert outputs["offers"][2].split()[:3] == ["o2", "1", "pi-1"]
    assert outputs["offers"][2].split()[-2:] == ["WASM,DOCKER", "4.0s"]
    out = io.StringIO()
    args = cli.build_parser().parse_args(["tasks", "--json", "--master", fake_master.url,
                                          "--operator-token", "op-token"])
    assert await cli.list_command(args, out) == 0
    assert json.loads(out.getvalue()) == [{"task_id": "t1", "framework_id": "fw-1",
                                           "agent_id": 1, "name": "sample", "state": "RUNNING",
                                           "executor": "WASM"}]


async def test_listing_with_a_wrong_operator_token_exits_4(fake_master, capsys) -> None:
    args = cli.build_parser().parse_args(["agents", "--master", fake_master.url,
                                          "--operator-token", "wrong"])
    assert await cli.list_command(args, io.StringIO()) == cli.EXIT_MASTER
    assert "UNAUTHENTICATED: wrong operator token" in capsys.readouterr().err


def test_target_comes_from_flags_then_env_then_the_local_cluster_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGERM_HOME", str(tmp_path))
    for var in ("EDGERM_MASTER", "EDGERM_TOKEN", "EDGERM_OPERATOR_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    parse = cli.build_parser().parse_args
    assert cli.resolve_target(parse(["agents"])).master == cli.DEFAULT_MASTER
    (tmp_path / "cluster.json").write_text(json.dumps({
        "master": "ws://127.0.0.1:7000", "framework_token": "ft", "operator_token": "ot"}))
    assert cli.resolve_target(parse(["agents"])) == cli.Target("ws://127.0.0.1:7000", "ft", "ot")
    monkeypatch.setenv("EDGERM_MASTER", "ws://10.0.0.1:5690")
    monkeypatch.setenv("EDGERM_TOKEN", "envtok")
    target = cli.resolve_target(parse(["agents"]))
    assert (target.master, target.framework_token) == ("ws://10.0.0.1:5690", "envtok")
    target = cli.resolve_target(parse(["agents", "--master", "ws://h:1", "--token", "flag"]))
    assert (target.master, target.framework_token) == ("ws://h:1", "flag")


def test_local_cluster_file_is_found_in_the_current_directory_then_home(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `python -m edgerm.cluster` keeps cluster.json in ./.edgerm by default: with no EDGERM_HOME
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
    parse = cli.build_parser().parse_args
    assert cli.resolve_target(parse(["agents"])).master == "ws://home:1"
    (work / ".edgerm" / "cluster.json").write_text(json.dumps({"master": "ws://here:1"}))
    assert cli.resolve_target(parse(["agents"])).master == "ws://here:1"
    # One another user left in a shared directory is not trusted.
    mine = (work / ".edgerm" / "cluster.json").stat().st_uid
    monkeypatch.setattr(cli.os, "getuid", lambda: mine + 1)
    assert cli.resolve_target(parse(["agents"])).master == "ws://home:1"
    monkeypatch.undo()
    monkeypatch.setenv("EDGERM_HOME", str(home / ".edgerm"))
    monkeypatch.chdir(work)
    assert cli.resolve_target(parse(["agents"])).master == "ws://home:1"
