"""`edgerm run` (edgerm_cli.run) against the scripted fake master, over a real WebSocket."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest
import trio

import edgerm_cli as cli
import edgerm_cli.main as cli_main
import edgerm_cli.run as cli_run
from edgerm.wire import pb


def run_args(master, *extra: str) -> object:
    return cli_main.build_parser().parse_args(
        ["run", "--master", master.url, "--token", "fw-token", "--offer-timeout", "2", *extra])


async def run(master, *extra: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = await cli_run.run_command(run_args(master, *extra), out, err)
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
    assert cli_run.format_output(struct.pack("<d", 21.25)) == "21.25"
    assert cli_run.format_output(b"abc", "hex") == "616263"
    assert cli_run.format_output(b"21.5", "text") == "21.5"
    # A reading whose low bytes happen to be printable UTF-8 (seen in CI) is still a number.
    noisy = bytes.fromhex("d6b150236b243540")
    assert noisy.decode() == "\u05b1P#k$5@"
    assert cli_run.format_output(noisy) == f"{struct.unpack('<d', noisy)[0]:g}"
    assert 21 < float(cli_run.format_output(noisy)) < 22
    assert cli_run.format_output(b"8 chars\n") == "8 chars"
    assert cli_run.format_output(b"hello!!!") == "hello!!!"
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
    assert docker.timeout_s == 0 and launch.spec.resources.mem_mb == cli_run.DOCKER_DEFAULT_MEM_MB
    assert not fake_master.calls_of("upload")


async def test_run_docker_sends_its_time_limit(fake_master) -> None:
    fake_master.offers_on_subscribe = [fake_master.offer(executors=(pb.DOCKER,))]
    code, _, err = await run(fake_master, "--docker", "busybox", "--timeout", "2", "--",
                             "sleep", "30")
    assert code == 0, err
    assert fake_master.calls_of("accept")[0].accept.launch[0].spec.docker.timeout_s == 2


def test_a_negative_timeout_is_a_usage_error(tmp_path: Path) -> None:
    err = io.StringIO()
    # No token either: the command's own arguments are checked first, whatever the environment.
    args = cli_main.build_parser().parse_args(["run", "--docker", "busybox", "--timeout", "-1"])
    assert trio.run(cli_run.run_command, args, io.StringIO(), err) == cli.EXIT_USAGE
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
    assert cli_run.wasm_initial_pages(wasm_module(b"\x00\x01")) == 1
    assert cli_run.wasm_initial_pages(wasm_module(b"\x01\x03\x10")) == 3      # min 3, max 16
    assert cli_run.wasm_initial_pages(wasm_module(b"\x00\x80\x01")) == 128    # LEB128
    # Imported: a function import first ("env" "f" func type 0), then "env" "m" memory min 2.
    imports = b"\x02" + b"\x03env\x01f\x00\x00" + b"\x03env\x01m\x02\x00\x02"
    assert cli_run.wasm_initial_pages(wasm_module(imports=imports)) == 2
    assert cli_run.wasm_initial_pages(b"\0asm\1\0\0\0") == 0               # no memory
    assert cli_run.wasm_initial_pages(b"not wasm") is None
    assert cli_run.wasm_initial_pages(wasm_module(b"\x00\x01")[:-1]) is None   # truncated
    examples = Path(__file__).resolve().parents[2] / "examples" / "wasm" / "build"
    if (examples / "hello.wasm").exists():
        assert cli_run.wasm_initial_pages((examples / "hello.wasm").read_bytes()) == 1


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
    args = cli_main.build_parser().parse_args(["run", "--master", fake_master.url,
                                               "--token", "nope", "--wasm", str(wasm_file)])
    err = io.StringIO()
    assert await cli_run.run_command(args, io.StringIO(), err) == cli.EXIT_MASTER
    assert "UNAUTHENTICATED" in err.getvalue()
